"""P-LinkNet: LinkNet34 with a pyramid pooling module for building extraction (Ding et al., 2020).

One file per concern: ``model`` (the networks), ``loss`` (Dice + BCE), ``metrics`` (confusion
counts, IoU and friends), ``data`` (the Inria dataset), ``synthetic`` (the offline sample),
``train``, ``evaluate``, ``predict`` (large scenes) and ``bench``; ``cli`` is the command.
"""

from plinknet.loss import DiceBCELoss
from plinknet.metrics import BinaryConfusion
from plinknet.model import LinkNet34, ModelConfig, PLinkNet, PyramidPooling

__all__ = ["BinaryConfusion", "DiceBCELoss", "LinkNet34", "ModelConfig", "PLinkNet", "PyramidPooling"]
__version__ = "0.1.0"
