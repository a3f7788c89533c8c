"""Large-scene prediction: overlapping windows blended with weights that fade towards window edges.

    plinknet predict --checkpoint runs/plinknet/best.pt scene.tif buildings.tif --geojson buildings.geojson

The output GeoTIFF keeps the input's CRS and transform, so a GIS overlays it on the scene.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import torch
import torch.nn.functional as F
from rasterio.windows import Window
from tqdm import tqdm

from plinknet.data import normalize
from plinknet.model import padded_size
from plinknet.train import autocast, load_checkpoint, resolve_device


@dataclass
class PredictConfig:
    """How a large scene is cut into windows."""

    window: int = 512  # the training crop size: what the network saw
    overlap: int | None = None  # pixels shared by neighbouring windows (None: a quarter window); blending hides seams
    batch_size: int = 8  # windows per forward pass
    threshold: float = 0.5  # the paper's

    def __post_init__(self):
        if self.overlap is None:
            self.overlap = self.window // 4
        if not 0 <= self.overlap < self.window:
            raise ValueError(f"overlap must be in [0, window), got overlap {self.overlap} for window {self.window}")


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows of ``window`` px covering ``length`` px; the last is flush with the end."""
    if length <= window:
        return [0]
    stride = max(1, window - overlap)
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def blend_weights(window: int, overlap: int) -> torch.Tensor:
    """(window, window) weights: 1 in the middle, a linear ramp down to a small floor over ``overlap`` px."""
    ramp = torch.ones(window)
    if overlap > 0:
        edge = torch.linspace(0.05, 1.0, min(overlap, window // 2))
        ramp[: len(edge)] = edge
        ramp[-len(edge):] = edge.flip(0)
    return ramp[:, None] * ramp[None, :]


class SceneReader:
    """Reads (3, h, w) uint8 windows of an RGB raster, or of an in-memory (H, W, 3) array."""

    def __init__(self, source: str | Path | np.ndarray):
        self.array = source if isinstance(source, np.ndarray) else None
        self.dataset = None if self.array is not None else rasterio.open(source)
        if self.array is not None:
            self.height, self.width = self.array.shape[:2]
        else:
            self.height, self.width = self.dataset.height, self.dataset.width

    def read(self, row: int, col: int, h: int, w: int) -> np.ndarray:  # -> (h, w, 3) uint8
        if self.array is not None:
            return self.array[row : row + h, col : col + w]
        return self.dataset.read((1, 2, 3), window=Window(col, row, w, h)).transpose(1, 2, 0)

    def close(self) -> None:
        if self.dataset is not None:
            self.dataset.close()


@torch.no_grad()
def predict_scene(
    model: torch.nn.Module,
    source: str | Path | np.ndarray,
    config: PredictConfig | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> np.ndarray:
    """Building probabilities (H, W) float32 for a whole scene, window by window.

    Args:
        model: a network returning logits (B, 1, h, w); put in eval mode here.
        source: a path to a 3-band raster (read window by window: a 5000x5000 tile needs
            about 200 MB for the two float32 accumulators), or an (H, W, 3) uint8 array.
        config: window size, overlap, batch size.
        device: ``"auto"`` (CUDA with bf16 when available) or a torch device.
        progress: show a tqdm bar over windows.
    """
    config = config or PredictConfig()
    device = resolve_device(str(device))
    model = model.to(device).eval()
    reader = SceneReader(source)
    height, width = reader.height, reader.width
    window = padded_size(min(config.window, max(height, width)))  # small scenes: one padded window
    overlap = min(config.overlap, window // 2)
    weights = blend_weights(window, overlap).to(device)
    weights_np = weights.cpu().numpy()
    logit_sum = np.zeros((height, width), dtype=np.float32)
    weight_sum = np.zeros((height, width), dtype=np.float32)
    positions = [
        (r, c)
        for r in window_starts(height, window, overlap)
        for c in window_starts(width, window, overlap)
    ]
    bar = tqdm(total=len(positions), desc="windows", unit="win", disable=not progress, leave=False)
    try:
        for i in range(0, len(positions), config.batch_size):
            chunk = positions[i : i + config.batch_size]
            tiles, sizes = [], []
            for r, c in chunk:
                pixels = reader.read(r, c, min(window, height - r), min(window, width - c))
                h, w = pixels.shape[:2]
                tile = normalize(pixels)  # (3, h, w)
                tiles.append(F.pad(tile, (0, window - w, 0, window - h), mode="constant", value=0.0))
                sizes.append((h, w))
            batch = torch.stack(tiles).to(device)  # (b, 3, window, window)
            with autocast(device):
                logits = model(batch)[:, 0].float()  # (b, window, window)
            weighted = (logits * weights).cpu().numpy()
            for (r, c), (h, w), lw in zip(chunk, sizes, weighted):
                logit_sum[r : r + h, c : c + w] += lw[:h, :w]
                weight_sum[r : r + h, c : c + w] += weights_np[:h, :w]
            bar.update(len(chunk))
    finally:
        bar.close()
        reader.close()
    logit_sum /= weight_sum
    return torch.sigmoid(torch.from_numpy(logit_sum)).numpy()


def write_prediction(
    probabilities: np.ndarray,
    reference: str | Path,
    output: str | Path,
    as_probabilities: bool = False,
    threshold: float = 0.5,
) -> Path:
    """Write a mask (uint8 0/255, or probabilities scaled to 0-255) with ``reference``'s CRS and transform."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(reference) as src:
        profile = {
            "driver": "GTiff",
            "height": src.height,
            "width": src.width,
            "count": 1,
            "dtype": "uint8",
            "crs": src.crs,
            "transform": src.transform,
            "compress": "lzw",
            "tiled": src.width >= 256 and src.height >= 256,
        }
    if as_probabilities:
        data = np.round(probabilities * 255).astype(np.uint8)
    else:
        data = ((probabilities > threshold) * 255).astype(np.uint8)
    with rasterio.open(output, "w", **profile) as dst:
        dst.write(data, 1)
        dst.update_tags(1, content="building probability x 255" if as_probabilities else "building mask 0/255")
    return output


def building_polygons(mask: np.ndarray, reference: str | Path) -> dict:
    """Building outlines of a {0,1} mask as a GeoJSON FeatureCollection in ``reference``'s CRS."""
    with rasterio.open(reference) as src:
        transform, crs = src.transform, src.crs
    mask = mask.astype(np.uint8)
    features = [
        {"type": "Feature", "properties": {"building": 1}, "geometry": geometry}
        for geometry, value in rasterio.features.shapes(mask, mask=mask > 0, transform=transform)
        if value == 1
    ]
    collection = {"type": "FeatureCollection", "features": features}
    if crs is not None:  # RFC 7946 assumes WGS84; GDAL/QGIS read this member for other CRSs
        collection["crs"] = {"type": "name", "properties": {"name": crs.to_string()}}
    return collection


def predict_file(
    checkpoint: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    probabilities: bool = False,
    geojson: str | Path | None = None,
    config: PredictConfig | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """The ``plinknet predict`` command: checkpoint + GeoTIFF in, georeferenced mask (and polygons) out."""
    input_path = Path(input_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"input raster {input_path} does not exist")
    try:
        with rasterio.open(input_path) as src:
            bands = src.count
    except rasterio.errors.RasterioIOError as err:
        raise ValueError(f"{input_path} is not a raster GDAL can read") from err
    if bands < 3:
        raise ValueError(f"{input_path} has {bands} band(s); an RGB image (3 bands, uint8) is expected")
    model, _ = load_checkpoint(checkpoint)
    config = config or PredictConfig()
    prob = predict_scene(model, input_path, config, device=device, progress=progress)
    out = write_prediction(prob, input_path, output_path, probabilities, config.threshold)
    if geojson is not None:
        collection = building_polygons(prob > config.threshold, input_path)
        Path(geojson).write_text(json.dumps(collection))
    return out
