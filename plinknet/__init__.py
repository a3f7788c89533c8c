"""P-LinkNet: LinkNet34 with a pyramid pooling module for building extraction (Ding et al., 2020).

The method, one idea per module, in the order of the paper:

* :mod:`~plinknet.model` (the two networks), :mod:`~plinknet.loss` (Dice + BCE),
  :mod:`~plinknet.metrics` (confusion counts, IoU and the rest);
* :mod:`plinknet.data` (Inria tiles, checks, crops, the device-side batch, the download);
* :mod:`plinknet.train` (the recipe, the run folder, the loop), :mod:`~plinknet.distributed` (torchrun);
* :mod:`plinknet.infer` (whole-tile evaluation, scenes of any size, GeoTIFF and GeoJSON out);
* helpers they share: :mod:`~plinknet.config`, :mod:`~plinknet.device`, :mod:`~plinknet.checkpoint`,
  :mod:`~plinknet.files`, :mod:`~plinknet.provenance`; the command: :mod:`~plinknet.cli`.

Around it, never imported by it (``lint-imports`` checks): :mod:`plinknet.study` (the ablation,
its statistics, the paper's metric, the lab), :mod:`plinknet.synthetic` (the offline sample) and
:mod:`plinknet.bench` (every benchmark). The book's helpers live beside the notebooks, in
``book/plinknet_book``.
"""

import importlib

from plinknet.loss import DiceBCELoss
from plinknet.metrics import BinaryConfusion
from plinknet.model import LinkNet34, ModelConfig, PLinkNet, PyramidPooling

# imported when first asked for: `import plinknet` stays light (no rasterio, no GDAL)
_LAZY = {
    "InriaDataset": "plinknet.data",
    "DataConfig": "plinknet.data",
    "TrainConfig": "plinknet.train",
    "PredictConfig": "plinknet.infer",
    "predict_file": "plinknet.infer",
    "predict_scene": "plinknet.infer",
    "evaluate_checkpoint": "plinknet.infer",
}

__all__ = ["BinaryConfusion", "DiceBCELoss", "LinkNet34", "ModelConfig", "PLinkNet", "PyramidPooling", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'plinknet' has no attribute {name!r}")
