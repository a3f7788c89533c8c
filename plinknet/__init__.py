"""P-LinkNet: LinkNet34 with a pyramid pooling module for building extraction (Ding et al., 2020).

One file per concern, in the order of the paper:

* ``model`` (the networks), ``loss`` (Dice + BCE), ``metrics`` (confusion counts, IoU and friends);
* ``data`` (Inria tiles, checks, crops, the device-side batch), ``download`` (the archive),
  ``synthetic`` (the offline sample and the Inria-size rehearsal set), ``lab`` (its labels'
  metrics: recall by building size, false positives on look-alikes);
* ``train`` (the recipe and the loop), ``config`` (checked options), ``distributed`` (torchrun);
* ``evaluate`` (whole tiles), ``predict`` (scenes of any size), ``scenes`` (their files),
  ``backends`` (PyTorch or ONNX Runtime);
* ``ablation`` (the multi-seed comparison and its statistics), ``protocol`` (what the paper's
  numbers can be), ``provenance`` (where a number came from);
* ``book`` and ``plots`` (the Jupyter Book's prose and figures), ``bench`` and
  ``predict_bench`` (benchmarks), ``cli`` (the ``plinknet`` command).
"""

from plinknet.loss import DiceBCELoss
from plinknet.metrics import BinaryConfusion
from plinknet.model import LinkNet34, ModelConfig, PLinkNet, PyramidPooling

__all__ = ["BinaryConfusion", "DiceBCELoss", "LinkNet34", "ModelConfig", "PLinkNet", "PyramidPooling"]
__version__ = "0.1.0"
