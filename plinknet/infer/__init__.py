"""Using a trained network: whole scenes predicted window by window, written as GeoTIFF and GeoJSON, and scored.

- :mod:`~plinknet.infer.predict`: overlapping windows blended into one probability map;
- :mod:`~plinknet.infer.backends`: the network behind it (ONNX Runtime on CPU, PyTorch on GPU);
- :mod:`~plinknet.infer.scenes`: finding, reading and writing rasters safely;
- :mod:`~plinknet.infer.polygons`: building polygons from a mask;
- :mod:`~plinknet.infer.evaluate`: whole held-out tiles scored from their confusion counts.
"""

from plinknet.infer.evaluate import evaluate_checkpoint, evaluate_tiles
from plinknet.infer.predict import PredictConfig, predict_file, predict_scene, predict_scenes

__all__ = ["PredictConfig", "evaluate_checkpoint", "evaluate_tiles", "predict_file", "predict_scene", "predict_scenes"]
