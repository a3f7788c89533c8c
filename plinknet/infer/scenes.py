"""Scenes in and out: finding inputs, reading them band by band, writing GeoTIFF and GeoJSON safely.

What a GIS user can hand ``plinknet predict`` and what comes back:

- inputs: files, folders (their rasters, not recursive) and glob patterns; RGB or RGBA
  rasters of uint8 (16-bit imagery is refused by name unless ``scale`` maps it to 0-255).
  Pixels masked by the raster (a nodata value, an alpha band of 0, an internal mask) are
  nodata in the outputs; a raster without CRS gives a warning and pixel-coordinate outputs.
- outputs: tiled, DEFLATE-compressed GeoTIFFs with the input's CRS and transform and a nodata
  value; GeoJSON building polygons with ``area_m2``, optionally simplified or in WGS84
  (RFC 7946). Every output is written under a temporary name and renamed when complete, and
  a path that is also an input scene or the checkpoint is refused.
"""

from __future__ import annotations

import contextlib
import glob
import os
import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from plinknet.files import land, remove, temporary_name, write_failure

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")


MASK_NODATA = 127  # mask outputs: 0 background, 255 building, 127 nodata (`mask == 255` stays the building test)


PROBABILITY_NODATA = 255  # probability outputs: round(p * 254) in 0..254, 255 nodata


BLOCK = 256  # GeoTIFF tile size of the outputs


class NoCRSWarning(UserWarning):
    """A scene has no coordinate reference system: its outputs are in pixel coordinates."""


class SceneReader:
    """Reads bands of rows of an RGB(A) raster, or of an in-memory (H, W, 3|4) uint8 array.

    Args:
        source: a raster path or an (H, W, 3) / (H, W, 4) uint8 array (the 4th channel: alpha).
        scale: ``(low, high)``: map raster values low..high linearly to 0..255 (for 16-bit
            imagery); None accepts uint8 only.

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable file, fewer than 3 bands, or
            a dtype other than uint8 without ``scale``; each message names the file.
    """

    def __init__(self, source: str | os.PathLike | np.ndarray, scale: tuple[float, float] | None = None):
        self.scale = scale
        if scale is not None and not scale[1] > scale[0]:
            raise ValueError(f"scale (--scale) needs LOW < HIGH, got {scale[0]} {scale[1]}")
        self.dataset = None
        if isinstance(source, np.ndarray):
            if source.ndim != 3 or source.shape[2] not in (3, 4) or source.dtype != np.uint8:
                raise ValueError(f"expected an (H, W, 3) or (H, W, 4) uint8 image, got {source.shape} {source.dtype}")
            self.array, self.name, self.crs, self.transform = source, "array", None, rasterio.Affine.identity()
            self.height, self.width = source.shape[:2]
            self.masked = source.shape[2] == 4
            return
        path = Path(source)
        self.array, self.name = None, str(path)
        if not path.is_file():
            raise FileNotFoundError(f"input raster {path} does not exist")
        try:
            self.dataset = rasterio.open(path)
        except rasterio.errors.RasterioIOError as err:
            raise ValueError(f"{path} is not a raster GDAL can read") from err
        src = self.dataset
        if src.count < 3:
            self.close()
            raise ValueError(f"{path} has {src.count} band(s); an RGB image (3 bands, uint8) is expected")
        dtype = src.dtypes[0]
        if dtype != "uint8" and scale is None:
            self.close()
            raise ValueError(f"{path} holds {dtype} pixels; the network takes 8-bit RGB: pass --scale LOW HIGH "
                             f"to map LOW..HIGH to 0..255, or convert it (gdal_translate -ot Byte -scale)")  # fmt: skip
        self.height, self.width, self.crs, self.transform = src.height, src.width, src.crs, src.transform
        self.masked = any(flags != [MaskFlags.all_valid] for flags in src.mask_flag_enums[:3]) or (
            src.count >= 4 and src.colorinterp[3] == rasterio.enums.ColorInterp.alpha
        )
        if self.crs is None:
            warnings.warn(f"{path} has no CRS: outputs are in pixel coordinates", NoCRSWarning, stacklevel=2)

    def read(self, row: int, height: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``row`` .. ``row + height``: pixels (h, W, 3) uint8 and valid (h, W) bool (None: all valid)."""
        if self.array is not None:
            band = self.array[row : row + height]
            valid = band[..., 3] > 0 if self.masked else None
            return np.ascontiguousarray(band[..., :3]), valid
        window = Window(0, row, self.width, min(height, self.height - row))
        try:
            pixels = self.dataset.read((1, 2, 3), window=window)  # (3, h, W)
            valid = self.dataset.dataset_mask(window=window) > 0 if self.masked else None
        except rasterio.errors.RasterioError as error:  # GDAL's own message does not name the file
            raise ValueError(f"cannot read rows {row}-{row + window.height} of {self.name}: the file is damaged or "
                             f"truncated ({str(error).splitlines()[0]})") from None  # fmt: skip
        if self.scale is not None:
            low, high = self.scale
            pixels = np.clip((pixels.astype(np.float32) - low) * (255 / (high - low)), 0, 255).round()
        return np.ascontiguousarray(pixels.transpose(1, 2, 0), dtype=np.uint8), valid

    def close(self) -> None:
        if self.dataset is not None:
            self.dataset.close()


def find_scenes(inputs: list[str | os.PathLike]) -> list[Path]:
    """Raster files named by ``inputs``: files, folders (their rasters) and glob patterns, sorted, once each.

    A path that exists is taken as itself, even when its name holds ``*``, ``?`` or ``[``.

    Raises:
        FileNotFoundError: an input that names nothing, or a folder or pattern without rasters.
    """
    found: list[Path] = []
    for item in map(str, inputs):
        if not Path(item).exists() and any(ch in item for ch in "*?["):
            matches = [Path(p) for p in sorted(glob.glob(item, recursive=True)) if Path(p).is_file()]
        elif Path(item).is_dir():  # hidden files are partial outputs being written
            matches = sorted(p for p in Path(item).iterdir()
                             if p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith("."))  # fmt: skip
        elif Path(item).is_file():
            matches = [Path(item)]
        else:
            raise FileNotFoundError(f"input {item} does not exist")
        if not matches:
            raise FileNotFoundError(f"input {item} holds no raster ({', '.join(RASTER_SUFFIXES)})")
        found += matches
    unique = {p.resolve(): p for p in found}
    return sorted(unique.values(), key=lambda p: str(p))


def is_prediction(path: Path) -> bool:
    """True for a raster written by ``plinknet predict`` (its tags say so): an output, never an input scene."""
    try:
        with rasterio.open(path) as src:
            return "plinknet_window" in src.tags()
    except rasterio.errors.RasterioIOError:
        return False  # unreadable: left for the reader, which names the file


def scene_outputs(scenes: list[Path], out_dir: Path, probabilities: bool, geojson: bool) -> list[dict]:
    """Per scene ``{"scene", "raster", "geojson"}``: ``<stem>_buildings.tif`` (``_probability.tif``) in ``out_dir``.

    Raises:
        ValueError: two scenes whose outputs would share a name.
    """
    kind = "probability" if probabilities else "buildings"
    plans, seen = [], {}
    for scene in scenes:
        if scene.stem in seen:
            raise ValueError(f"{seen[scene.stem]} and {scene} would both write {out_dir / scene.stem}_{kind}.tif; "
                             f"predict them into different --out-dir folders")  # fmt: skip
        seen[scene.stem] = scene
        plans.append({"scene": scene, "raster": out_dir / f"{scene.stem}_{kind}.tif",
                      "geojson": out_dir / f"{scene.stem}_buildings.geojson" if geojson else None})  # fmt: skip
    return plans


def refuse_overwriting(outputs: list[Path | None], protected: dict[str, list[Path]]) -> None:
    """Raise ValueError when an output is also a protected file (an input scene, the checkpoint) or another output."""
    keep = {p.resolve(): (what, p) for what, paths in protected.items() for p in paths}
    for output in filter(None, outputs):
        hit = keep.get(Path(output).resolve())
        if hit:
            raise ValueError(f"refusing to write {output}: it is the {hit[0]} {hit[1]}; choose another output path")
        keep[Path(output).resolve()] = ("output", output)


def encode_mask(prob: np.ndarray, threshold: float) -> np.ndarray:
    """(h, W) probabilities (NaN: nodata) -> uint8 0 / 255, ``MASK_NODATA`` where NaN."""
    out = np.where(prob > threshold, 255, 0).astype(np.uint8)
    out[np.isnan(prob)] = MASK_NODATA
    return out


def encode_probabilities(prob: np.ndarray) -> np.ndarray:
    """(h, W) probabilities (NaN: nodata) -> uint8 round(p * 254), ``PROBABILITY_NODATA`` where NaN."""
    out = np.round(np.nan_to_num(prob) * 254).astype(np.uint8)
    out[np.isnan(prob)] = PROBABILITY_NODATA
    return out


class RasterWriter:
    """A 1-band uint8 GeoTIFF written top to bottom in row blocks under a temporary name.

    Rows are buffered to whole tile rows (``BLOCK``), so every tile is compressed once;
    :meth:`commit` renames the file to its final name, :meth:`discard` deletes it.
    """

    def __init__(self, path: str | os.PathLike, height: int, width: int, crs, transform, nodata: int, tags: dict):
        self.path = Path(path)
        self.partial = temporary_name(self.path)  # hidden: scene folders skip it as input
        tiled = height >= BLOCK and width >= BLOCK
        profile = {"driver": "GTiff", "height": height, "width": width, "count": 1, "dtype": "uint8", "crs": crs,
                   "transform": transform, "nodata": nodata, "compress": "deflate", "tiled": tiled,
                   "BIGTIFF": "IF_SAFER"}  # fmt: skip
        if tiled:
            profile.update(blockxsize=BLOCK, blockysize=BLOCK)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            try:
                self.dataset = rasterio.open(self.partial, "w", **profile)
            except Exception as error:
                raise (write_failure(error, self.path) or error) from error
        self.dataset.update_tags(**tags)
        self.height, self.width, self.row = height, width, 0
        self.pending: list[np.ndarray] = []

    def write(self, rows: np.ndarray) -> None:
        """Append (h, W) uint8 rows below those already written."""
        self.pending.append(rows)
        buffered = sum(len(p) for p in self.pending)
        if buffered >= BLOCK or self.row + buffered == self.height:
            block = np.concatenate(self.pending)
            keep = 0 if self.row + buffered == self.height else buffered % BLOCK
            self._write(block[: len(block) - keep])
            self.pending = [block[len(block) - keep :]] if keep else []

    def _write(self, rows: np.ndarray) -> None:
        try:
            self.dataset.write(rows, 1, window=Window(0, self.row, self.width, len(rows)))
        except Exception as error:
            self._raise_disk_full(error)
            raise
        self.row += len(rows)

    def commit(self) -> Path:
        if self.row != self.height:
            raise RuntimeError(f"{self.path}: {self.row} of {self.height} rows written")
        try:
            self.dataset.close()  # GDAL flushes its last blocks here
        except Exception as error:
            self._raise_disk_full(error)
            raise
        return land(self.partial, self.path)

    def _raise_disk_full(self, error: Exception) -> None:
        full = write_failure(error, self.path)
        if full is not None:
            self.discard()  # first: its bytes are what filled the disk
            raise full from error

    def discard(self) -> None:
        if not self.dataset.closed:
            with contextlib.suppress(Exception):  # on a full disk its last flush fails too: the file goes anyway
                self.dataset.close()
        remove(self.partial)

