"""Scene prediction of any size: overlapping windows, blended, streamed band by band to a GeoTIFF.

    plinknet predict --checkpoint runs/plinknet/best.pt scene.tif buildings.tif --geojson buildings.geojson
    plinknet predict --checkpoint runs/plinknet/best.pt mosaics/ 'tiles/*.tif' --out-dir predictions/

How a scene is cut. Windows are the size of the training crop, because the pyramid pooling
pools over the whole window: its context should be the one the network learnt from. They
share at least ``overlap`` pixels and are spread evenly, so the spare coverage of a scene
that is not a multiple of the stride widens every overlap instead of adding windows. Each
window's logits are weighted by a ramp that fades towards its edges over the overlap (where
the network sees least context), summed, and divided by the summed weights: no seams.

The default overlap, window/16 (32 px at 512), is a choice for speed that the paper leaves
open. Overlap costs windows: a 5000 px tile takes 11 x 11 windows at 32 px, 13 x 13 at a
quarter window (the former default), 1.4 times the work. Spread evenly, the 32 px minimum
becomes 75 px on a 5000 px tile and 85 px on a 3072 px scene, and the blended map stays
within a few hundredths of one blended over half-window overlaps (``tests/test_predict.py``).

Bounded memory. The scene is read one band of rows at a time (one row of windows; the next
band is read in a background thread while this one is computed). Blended logits are kept
only for the rows still open, ``window x width x 8`` bytes (33 MB for an 8000 px wide
scene), and finished rows go straight to the output file. Memory grows with the scene's
width through these buffers, never with its height or area. Windows whose pixels are all
nodata are skipped.

Where the network runs is :mod:`plinknet.infer.backends`: ONNX Runtime on the CPU (about twice
eager PyTorch), PyTorch with bf16 on CUDA, where the blending happens on the GPU too. The
files in and out are :mod:`plinknet.infer.scenes`.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
import torch
from tqdm import tqdm

from plinknet.config import check, coerce_fields
from plinknet.data.tiles import GDAL_CACHE_BYTES  # GDAL's default (5% of RAM) would grow with the scene
from plinknet.device import resolve_device
from plinknet.files import remove, temporary_name
from plinknet.infer.backends import BACKENDS, MEAN_RGB, Network
from plinknet.infer.polygons import polygons_from_array, write_polygons
from plinknet.infer.scenes import (
    MASK_NODATA,
    PROBABILITY_NODATA,
    RasterWriter,
    SceneReader,
    encode_mask,
    encode_probabilities,
    find_scenes,
    is_prediction,
    refuse_overwriting,
    scene_outputs,
)
from plinknet.model import padded_size

__all__ = ["PredictConfig", "SceneReader", "blend_weights", "building_polygons", "predict_file", "predict_scene",
           "predict_scenes", "window_starts", "write_prediction"]  # fmt: skip

DEFAULT_WINDOW = 512  # the paper's training crop, for networks that come without a checkpoint
DEFAULT_THRESHOLD = 0.5  # the paper's binarisation threshold, for networks that come without a recipe
LARGE_SCENE_WINDOWS = 2000  # from this many windows on, say the size and the estimated time before starting


@dataclass
class PredictConfig:
    """How a scene is cut into windows and run; one field per ``plinknet predict`` option."""

    window: int | None = None  # window side in px; None: the checkpoint's training crop (512 without one)
    overlap: int | None = None  # least px shared by neighbouring windows; None: window/16 (see the module doc)
    batch_size: int | None = None  # windows per forward pass; None: 16 on CUDA, 2 on the CPU
    threshold: float | None = None  # probability above which a pixel is a building; None: the recipe's (0.5 default)
    backend: str = "auto"  # auto (ONNX Runtime on the CPU when installed, else PyTorch), onnx or torch

    def __post_init__(self):
        coerce_fields(self)
        check(self.window is None or self.window >= 32, "window", "at least 32 px", self.window)
        if self.overlap is None and self.window is not None:
            self.overlap = self.window // 16
        check(self.overlap is None or self.overlap >= 0, "overlap", "0 or more", self.overlap)
        if self.window is not None and self.overlap is not None:
            check(self.overlap < self.window, "overlap", f"smaller than the window ({self.window} px)", self.overlap)
        check(self.batch_size is None or self.batch_size >= 1, "batch_size", "at least 1", self.batch_size)
        check(self.threshold is None or 0 < self.threshold < 1, "threshold", "strictly between 0 and 1",
              self.threshold)  # fmt: skip
        check(self.backend in BACKENDS, "backend", " or ".join(BACKENDS), self.backend)

    def for_checkpoint(self, crop_size: int | None, threshold: float | None = None) -> PredictConfig:
        """This config with what is unset taken from the training recipe.

        The window becomes the training crop ``crop_size`` (512 when None) and the threshold the recipe's
        ``threshold`` (the paper's 0.5 when None).
        """
        config = self if self.window is not None else replace(self, window=crop_size or DEFAULT_WINDOW)
        if config.threshold is None:
            config = replace(config, threshold=threshold if threshold is not None else DEFAULT_THRESHOLD)
        return config


# --------------------------------------------------------------------------- windows and their weights


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Starts of the fewest ``window`` px windows covering ``length`` px with at least ``overlap`` px shared.

    The windows are spread evenly: the first starts at 0, the last ends flush with ``length``.
    """
    if length <= window:
        return [0]
    count = max(2, math.ceil((length - overlap) / (window - overlap)))
    return [round(i * (length - window) / (count - 1)) for i in range(count)]


def _ramp(window: int, overlap: int) -> np.ndarray:
    ramp = np.ones(window, np.float32)
    n = min(overlap, window // 2)
    if n > 0:
        edge = np.linspace(0.05, 1.0, n, dtype=np.float32)
        ramp[:n], ramp[-n:] = edge, edge[::-1]
    return ramp


def blend_weights(window: int, overlap: int, overlap_x: int | None = None) -> np.ndarray:
    """(window, window) float32 weights: 1 in the middle, a linear ramp down to 0.05 over the overlap."""
    return _ramp(window, overlap)[:, None] * _ramp(window, overlap if overlap_x is None else overlap_x)[None, :]


@dataclass
class Tiling:
    """Where the windows of one scene go: rows x cols starts of ``window`` px windows, and their weights."""

    window: int
    rows: list[int]
    cols: list[int]
    weights: np.ndarray  # (window, window) float32

    @classmethod
    def plan(cls, height: int, width: int, window: int, overlap: int) -> Tiling:
        window = padded_size(min(window, max(height, width)))  # a small scene: one window, padded
        overlap = min(overlap, window // 2)
        rows, cols = window_starts(height, window, overlap), window_starts(width, window, overlap)

        def shared(starts):  # the least overlap actually used, which the ramps may span
            return min((window - (b - a) for a, b in zip(starts, starts[1:])), default=0)

        return cls(window, rows, cols, blend_weights(window, shared(rows), shared(cols)))

    @property
    def windows(self) -> int:
        return len(self.rows) * len(self.cols)


# --------------------------------------------------------------------------- the streaming predictor


class _Blender:
    """Weighted logit sums and weight sums of the rows under one band of windows, on the backend's device."""

    def __init__(self, tiling: Tiling, width: int, device: torch.device):
        self.on_device = device.type != "cpu"
        shape = (tiling.window, width)
        if self.on_device:
            self.weights = torch.from_numpy(tiling.weights).to(device)
            self.logit_sum, self.weight_sum = torch.zeros(shape, device=device), torch.zeros(shape, device=device)
        else:
            self.weights = tiling.weights
            self.logit_sum, self.weight_sum = np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def add(self, col: int, logits) -> None:  # logits: (window, window), numpy or a device tensor
        w = min(self.weights.shape[1], self.logit_sum.shape[1] - col)
        self.logit_sum[:, col : col + w] += logits[:, :w] * self.weights[:, :w]
        self.weight_sum[:, col : col + w] += self.weights[:, :w]

    def pop(self, rows: int) -> np.ndarray:
        """Blended logits (rows, W) of the first ``rows`` rows (NaN where no window counted); shift them out."""
        if self.on_device:
            logits = (self.logit_sum[:rows] / self.weight_sum[:rows]).cpu().numpy()
            self.logit_sum, self.weight_sum = (torch.cat([t[rows:], torch.zeros_like(t[:rows])])
                                               for t in (self.logit_sum, self.weight_sum))  # fmt: skip
            return logits
        with np.errstate(invalid="ignore", divide="ignore"):
            logits = self.logit_sum[:rows] / self.weight_sum[:rows]  # (rows, W); NaN where no weight
        for a in (self.logit_sum, self.weight_sum):
            a[: len(a) - rows] = a[rows:]  # numpy copies overlapping slices correctly
            a[len(a) - rows :] = 0
        return logits


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities of logits, without overflow; NaN stays NaN."""
    with np.errstate(invalid="ignore"):
        return np.exp(-np.logaddexp(np.float32(0), -logits))


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def iter_logits(network: Network, reader: SceneReader, config: PredictConfig, progress: bool = True,
                tiling: Tiling | None = None) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
    """Yield ``(row, logits)`` top to bottom: (h, W) float32 rows of the blended logits, NaN at nodata.

    Holds the rows of one band of windows at a time (see the module docstring).
    """
    height, width = reader.height, reader.width
    tiling = tiling or Tiling.plan(height, width, config.window or DEFAULT_WINDOW, config.overlap or 0)
    window, rows = tiling.window, tiling.rows
    backend = network.backend(window)
    batch_size = config.batch_size or (16 if network.device.type == "cuda" else 2)
    blender = _Blender(tiling, width, network.device)
    bar = tqdm(total=tiling.windows, desc="windows", unit="win", disable=not progress, leave=False)
    with bar, ThreadPoolExecutor(1) as pool, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        upcoming = pool.submit(reader.read, rows[0], window)
        for i, row in enumerate(rows):
            pixels, valid = upcoming.result()  # (h, W, 3) uint8, (h, W) bool or None
            if i + 1 < len(rows):
                upcoming = pool.submit(reader.read, rows[i + 1], window)
            if valid is not None:
                pixels[~valid] = MEAN_RGB  # what the network sees there matters little, but not black borders
            cols = [c for c in tiling.cols if valid is None or valid[:, c : c + window].any()]
            bar.update(len(tiling.cols) - len(cols))
            for chunk in _batches(cols, batch_size):
                batch = np.empty((len(chunk), window, window, 3), np.uint8)
                for k, c in enumerate(chunk):
                    tile = pixels[:, c : c + window]
                    if tile.shape[:2] != (window, window):  # a scene smaller than the window: pad
                        batch[k] = MEAN_RGB  # ~0 once normalised
                    batch[k, : tile.shape[0], : tile.shape[1]] = tile
                for c, logits in zip(chunk, backend(batch)):  # (window, window) each
                    blender.add(c, logits)
                bar.update(len(chunk))
            done = (rows[i + 1] if i + 1 < len(rows) else height) - row
            logits = blender.pop(done)
            if valid is not None:
                logits[~valid[:done]] = np.nan
            yield row, logits


def iter_probabilities(network: Network, reader: SceneReader, config: PredictConfig, progress: bool = True,
                       tiling: Tiling | None = None) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
    """Yield ``(row, probabilities)`` top to bottom, as :func:`iter_logits` yields logits."""
    for row, logits in iter_logits(network, reader, config, progress, tiling):
        yield row, sigmoid(logits)


@torch.no_grad()
def predict_scene(
    model: torch.nn.Module,
    source: str | Path | np.ndarray,
    config: PredictConfig | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    *,
    scale: tuple[float, float] | None = None,
) -> np.ndarray:
    """Building probabilities (H, W) float32 of a whole scene, in memory (NaN where the scene has nodata).

    For scenes larger than memory, :func:`predict_file` streams to a GeoTIFF instead.

    Args:
        model: a network returning logits (B, 1, h, w); put in eval mode here.
        source: a raster path (RGB or RGBA; nodata and alpha respected) or an (H, W, 3|4) uint8 array.
        config: window, overlap, batch size, backend; ``window`` None means 512.
        device: ``"auto"`` (CUDA with bf16 when available) or a torch device.
        progress: a tqdm bar over windows.
        scale: ``(low, high)`` raster values mapped to 0..255 (16-bit imagery).
    """
    config = (config or PredictConfig()).for_checkpoint(None)
    network = Network(model=model, device=resolve_device(str(device)), backend=config.backend)
    reader = SceneReader(source, scale=scale)
    try:
        out = np.empty((reader.height, reader.width), np.float32)
        for row, prob in iter_probabilities(network, reader, config, progress):
            out[row : row + len(prob)] = prob
    finally:
        reader.close()
    return out


# --------------------------------------------------------------------------- files


def _mask_from_logits(logits: np.ndarray, threshold: float, masked: bool) -> np.ndarray:
    """As ``encode_mask(sigmoid(logits), threshold)``, without computing a sigmoid per pixel."""
    out = (logits > math.log(threshold / (1 - threshold))).astype(np.uint8) * np.uint8(255)
    if masked:
        out[np.isnan(logits)] = MASK_NODATA
    return out


def _notice(reader: SceneReader, tiling: Tiling, backend_name: str, output: Path) -> None:
    size = reader.height * reader.width
    free = shutil.disk_usage(output.parent if output.parent.exists() else Path.cwd()).free
    print(f"plinknet predict: {reader.name} is {reader.width} x {reader.height} px: {tiling.windows} windows of "
          f"{tiling.window} px on {backend_name}; the output takes up to {size / 1e9:.1f} GB before compression "
          f"({free / 1e9:.0f} GB free there). A time estimate follows the first row of windows.",
          file=sys.stderr)  # fmt: skip


def predict_file(
    checkpoint: str | Path | None,
    input_path: str | Path,
    output_path: str | Path,
    probabilities: bool = False,
    geojson: str | Path | None = None,
    config: PredictConfig | None = None,
    device: str = "auto",
    progress: bool = True,
    *,
    scale: tuple[float, float] | None = None,
    simplify: float | None = None,
    geojson_wgs84: bool = False,
    network: Network | None = None,
) -> Path:
    """The ``plinknet predict`` command for one scene: a georeferenced mask (and polygons), streamed.

    Args:
        checkpoint: a plinknet checkpoint (or None with ``network``).
        input_path: an RGB(A) raster of any size.
        output_path: the GeoTIFF: mask 0/255 (nodata 127), or with ``probabilities`` round(p x 254)
            (nodata 255); tiled, compressed, with the scene's CRS and transform.
        geojson: also write building polygons here (see :func:`plinknet.infer.polygons.write_polygons`).
        config: window (None: the checkpoint's training crop), overlap, batch size, threshold, backend.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        progress: a tqdm bar over windows.
        scale: ``(low, high)`` raster values mapped to 0..255, for 16-bit imagery.
        simplify: polygon simplification tolerance in map units.
        geojson_wgs84: polygons in RFC 7946 lon/lat instead of the scene's CRS.
        network: a :class:`Network` reused across scenes (``predict_scenes``).

    Raises:
        ValueError: an output path that is the input scene or the checkpoint, or a bad input.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    geojson = Path(geojson) if geojson is not None else None
    protected = {"input scene": [input_path], **({"checkpoint": [Path(checkpoint)]} if checkpoint else {})}
    refuse_overwriting([output_path, geojson], protected)
    config = config or PredictConfig()
    reader = SceneReader(input_path, scale=scale)
    writers = []
    mask_path = temporary_name(output_path.with_name(f"{output_path.stem}.mask.tif")) if probabilities else output_path
    try:
        if geojson_wgs84 and geojson is not None and reader.crs is None:
            raise ValueError(f"--geojson-wgs84 needs a georeferenced scene; {input_path} has no CRS")
        network = network or Network(checkpoint, device=resolve_device(device), backend=config.backend)
        config = config.for_checkpoint(network.crop_size, network.threshold)
        tiling = Tiling.plan(reader.height, reader.width, config.window, config.overlap)
        tags = {**output_tags(network, config, scale), "plinknet_window": tiling.window,
                "plinknet_checkpoint": Path(checkpoint).name if checkpoint else "",
                "plinknet_rank": os.environ.get("RANK", "0")}  # fmt: skip
        shape = (reader.height, reader.width, reader.crs, reader.transform)
        if probabilities:
            writers.append((RasterWriter(output_path, *shape, PROBABILITY_NODATA,
                                         {**tags, "content": "building probability x 254; 255 nodata"}),
                            lambda logits: encode_probabilities(sigmoid(logits))))  # fmt: skip
        if not probabilities or geojson is not None:  # polygons are traced from a mask file
            writers.append((RasterWriter(mask_path, *shape, MASK_NODATA,
                                         {**tags, "content": "building mask 0/255; 127 nodata"}),
                            lambda logits: _mask_from_logits(logits, config.threshold, reader.masked)))  # fmt: skip
        if tiling.windows >= LARGE_SCENE_WINDOWS:
            _notice(reader, tiling, network.backend(tiling.window).name, output_path)
        started = time.perf_counter()
        for row, logits in iter_logits(network, reader, config, progress, tiling):
            for writer, encode in writers:
                writer.write(encode(logits))
            if row == 0 and tiling.windows >= LARGE_SCENE_WINDOWS:
                minutes = (time.perf_counter() - started) * len(tiling.rows) / 60
                print(f"plinknet predict: {input_path}: about {minutes:.0f} min at this pace", file=sys.stderr)
        for writer, _ in writers:
            writer.commit()
        if geojson is not None:
            write_polygons(mask_path, geojson, simplify, geojson_wgs84)
    finally:
        for writer, _ in writers:
            writer.discard()
        if mask_path != output_path:
            remove(mask_path)
        reader.close()
    return output_path


def predict_scenes(
    checkpoint: str | Path,
    inputs: list[str | Path],
    out_dir: str | Path,
    probabilities: bool = False,
    geojson: bool = False,
    config: PredictConfig | None = None,
    device: str = "auto",
    progress: bool = True,
    *,
    overwrite: bool = False,
    scale: tuple[float, float] | None = None,
    simplify: float | None = None,
    geojson_wgs84: bool = False,
) -> dict[str, list[Path]]:
    """``plinknet predict INPUTS... --out-dir DIR``: one output per scene, resumable, split among torchrun ranks.

    Inputs are files, folders and glob patterns (:func:`plinknet.infer.scenes.find_scenes`). Each
    scene ``S`` gives ``DIR/S_buildings.tif`` (``S_probability.tif``) and, with ``geojson``,
    ``DIR/S_buildings.geojson``. Outputs are written under temporary names and renamed when
    complete, so an existing output is complete and is skipped unless ``overwrite``.

    Under ``torchrun --nproc_per_node=N`` rank ``r`` predicts scenes ``r, r + N, ...`` on
    ``cuda:LOCAL_RANK`` (or on its share of the CPU cores): the ranks need no process group.

    Returns:
        ``{"written": [...], "skipped": [...]}``: this rank's output rasters.
    """
    found = find_scenes(inputs)
    scenes = [scene for scene in found if not is_prediction(scene)]  # outputs are never inputs
    if not scenes:
        raise FileNotFoundError(f"{', '.join(map(str, inputs))} holds only plinknet outputs, no scene to predict")
    plans = scene_outputs(scenes, Path(out_dir), probabilities, geojson)
    refuse_overwriting([p[k] for p in plans for k in ("raster", "geojson")],
                       {"input scene": scenes, "checkpoint": [Path(checkpoint)]})  # fmt: skip
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    config = config or PredictConfig()
    network = Network(checkpoint, device=resolve_device(device), backend=config.backend)
    config = config.for_checkpoint(network.crop_size, network.threshold)
    if not overwrite:
        _refuse_stale_outputs([p["raster"] for p in plans], output_tags(network, config, scale), Path(out_dir))
    result: dict[str, list[Path]] = {"written": [], "skipped": [], "ignored": [p for p in found if p not in scenes]}
    mine = plans[rank::world_size]
    desc = "scenes" if world_size == 1 else f"scenes (rank {rank}/{world_size})"
    for plan in tqdm(mine, desc=desc, unit="scene", disable=not progress):
        raster, polygons = plan["raster"], plan["geojson"]
        if not overwrite and raster.exists() and (polygons is None or polygons.exists()):
            result["skipped"].append(raster)
            continue
        if not overwrite and raster.exists() and not probabilities:  # the mask is there: trace it only
            write_polygons(raster, polygons, simplify, geojson_wgs84)
        else:
            predict_file(checkpoint, plan["scene"], raster, probabilities, polygons, config, device, progress=False,
                         scale=scale, simplify=simplify, geojson_wgs84=geojson_wgs84, network=network)  # fmt: skip
        result["written"].append(raster)
    return result


def output_tags(network: Network, config: PredictConfig, scale: tuple[float, float] | None) -> dict[str, str]:
    """What an output depends on, as GeoTIFF tags: the checkpoint's content, window, overlap, threshold and scale.

    A resumed ``predict --out-dir`` skips an output only when these match (see :func:`_refuse_stale_outputs`).
    """
    return {"plinknet_checkpoint_sha256": network.key, "plinknet_window_asked": str(config.window),
            "plinknet_overlap": str(config.overlap), "plinknet_threshold": repr(float(config.threshold)),
            "plinknet_scale": "none" if scale is None else f"{float(scale[0])!r} {float(scale[1])!r}"}  # fmt: skip


def _refuse_stale_outputs(rasters: list[Path], expected: dict[str, str], out_dir: Path) -> None:
    """Raise ValueError, before any work, when an existing output was made otherwise than asked now.

    Such an output would be reported as done while holding another checkpoint's (or window's, overlap's,
    threshold's, scale's) masks; plinknet never replaces it silently either: the user chooses.
    """
    stale = []
    for raster in rasters:
        if not raster.exists():
            continue
        try:
            with rasterio.open(raster) as src:
                tags = src.tags()
        except rasterio.errors.RasterioIOError as error:
            stale.append(f"{raster.name} is unreadable ({str(error).splitlines()[0]})")
            continue
        differ = [f"{key.removeprefix('plinknet_')} {tags.get(key, 'unrecorded')} (now {value})"
                  for key, value in expected.items() if tags.get(key) != value]  # fmt: skip
        if differ:
            stale.append(f"{raster.name} was made with {', '.join(differ)}")
    if stale:
        more = f"; and {len(stale) - 3} more" if len(stale) > 3 else ""
        raise ValueError(f"{out_dir} holds outputs made otherwise than asked: {'; '.join(stale[:3])}{more}. "
                         f"Use --overwrite to replace them, or another --out-dir")  # fmt: skip


# --------------------------------------------------------------------------- whole arrays (notebooks, evaluate)


def write_prediction(
    probabilities: np.ndarray,
    reference: str | Path,
    output: str | Path,
    as_probabilities: bool = False,
    threshold: float = 0.5,
) -> Path:
    """Write in-memory probabilities (NaN: nodata) as :func:`predict_file` does, with ``reference``'s CRS and transform.

    A mask is 0/255 with nodata 127; probabilities are round(p x 254) with nodata 255.
    """
    with rasterio.open(reference) as src:
        shape = (src.height, src.width, src.crs, src.transform)
    if probabilities.shape != shape[:2]:
        raise ValueError(f"probabilities are {probabilities.shape} but {reference} is {shape[:2]}")
    if as_probabilities:
        writer = RasterWriter(output, *shape, PROBABILITY_NODATA, {"content": "building probability x 254; 255 nodata"})
        data = encode_probabilities(probabilities)
    else:
        writer = RasterWriter(output, *shape, MASK_NODATA, {"content": "building mask 0/255; 127 nodata"})
        data = encode_mask(probabilities, threshold)
    try:
        writer.write(data)
        return writer.commit()
    finally:
        writer.discard()


def building_polygons(mask: np.ndarray, reference: str | Path, simplify: float | None = None,
                      wgs84: bool = False) -> dict:  # fmt: skip
    """Building outlines of a {0,1} mask as a GeoJSON FeatureCollection in ``reference``'s CRS (or WGS84).

    Each feature has ``area_m2``; ``simplify`` is a Douglas-Peucker tolerance in map units.
    """
    with rasterio.open(reference) as src:
        crs, transform = src.crs, src.transform
    return polygons_from_array(np.nan_to_num(mask).astype(np.uint8), crs, transform, simplify, wgs84)
