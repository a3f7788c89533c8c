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

import glob
import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp
from rasterio.enums import MaskFlags
from rasterio.windows import Window

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


# --------------------------------------------------------------------------- finding scenes, naming outputs


def find_scenes(inputs: list[str | os.PathLike]) -> list[Path]:
    """Raster files named by ``inputs``: files, folders (their rasters) and glob patterns, sorted, once each.

    Raises:
        FileNotFoundError: an input that names nothing, or a folder or pattern without rasters.
    """
    found: list[Path] = []
    for item in map(str, inputs):
        if any(ch in item for ch in "*?["):
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


# --------------------------------------------------------------------------- GeoTIFF output, streamed


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        tiled = height >= BLOCK and width >= BLOCK
        profile = {"driver": "GTiff", "height": height, "width": width, "count": 1, "dtype": "uint8", "crs": crs,
                   "transform": transform, "nodata": nodata, "compress": "deflate", "tiled": tiled,
                   "BIGTIFF": "IF_SAFER"}  # fmt: skip
        if tiled:
            profile.update(blockxsize=BLOCK, blockysize=BLOCK)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            self.dataset = rasterio.open(self.partial, "w", **profile)
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
        self.dataset.write(rows, 1, window=Window(0, self.row, self.width, len(rows)))
        self.row += len(rows)

    def commit(self) -> Path:
        if self.row != self.height:
            raise RuntimeError(f"{self.path}: {self.row} of {self.height} rows written")
        self.dataset.close()
        os.replace(self.partial, self.path)
        return self.path

    def discard(self) -> None:
        if not self.dataset.closed:
            self.dataset.close()
        self.partial.unlink(missing_ok=True)


# --------------------------------------------------------------------------- GeoJSON polygons


def _ring_area(ring: list) -> float:
    x, y = np.asarray(ring, dtype=np.float64).T
    x, y = x - x[0], y - y[0]  # UTM coordinates are ~1e6 m: products of raw ones cancel away square metres
    return 0.5 * abs(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def polygon_area(geometry: dict) -> float:
    """Planar area of a GeoJSON Polygon (outer ring less holes), in squared coordinate units."""
    outer, *holes = geometry["coordinates"]
    return _ring_area(outer) - sum(_ring_area(h) for h in holes)


def _right_hand(rings: list) -> list:
    """Rings oriented as RFC 7946 requires: the exterior counterclockwise, holes clockwise (lon/lat axes)."""

    def signed(ring):
        x, y = np.asarray(ring, dtype=np.float64).T
        return np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])

    return [r if (signed(r) > 0) == (i == 0) else r[::-1] for i, r in enumerate(rings)]


def _douglas_peucker(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Keep the points of an open polyline (n, 2) that lie farther than ``tolerance`` from the simplified line."""
    if len(points) < 3:
        return points
    start, end = points[0], points[-1]
    direction = end - start
    length = math.hypot(*direction)
    offsets = points[1:-1] - start
    if length == 0:
        distances = np.hypot(offsets[:, 0], offsets[:, 1])
    else:
        distances = np.abs(direction[0] * offsets[:, 1] - direction[1] * offsets[:, 0]) / length
    i = int(np.argmax(distances)) + 1
    if distances[i - 1] <= tolerance:
        return np.stack([start, end])
    return np.concatenate([_douglas_peucker(points[: i + 1], tolerance)[:-1], _douglas_peucker(points[i:], tolerance)])


def simplify_ring(ring: list, tolerance: float) -> list | None:
    """Douglas-Peucker on a closed ring, split at its point farthest from the first; None if it collapses."""
    points = np.asarray(ring, dtype=np.float64)
    far = int(np.argmax(np.hypot(*(points - points[0]).T)))
    if far == 0:
        return None
    halves = [_douglas_peucker(points[: far + 1], tolerance), _douglas_peucker(points[far:], tolerance)]
    kept = np.concatenate([halves[0][:-1], halves[1]])
    return kept.tolist() if len(kept) >= 4 else None


def _features(shapes, transform_area, crs, simplify: float | None, wgs84: bool) -> Iterator[dict]:
    """GeoJSON features of the building (value 255, or 1) shapes, with ``area_m2``."""
    for geometry, value in shapes:
        if value not in (1, 255):
            continue
        area = transform_area(geometry)
        if simplify:
            rings = [simplify_ring(r, simplify) for r in geometry["coordinates"]]
            if rings[0] is not None:
                geometry = {"type": "Polygon", "coordinates": [r for r in rings if r is not None]}
        if wgs84:
            geometry = rasterio.warp.transform_geom(crs, "EPSG:4326", geometry, precision=7)
            geometry = {"type": "Polygon", "coordinates": _right_hand([[list(p) for p in r]
                                                                       for r in geometry["coordinates"]])}  # fmt: skip
        yield {"type": "Feature", "properties": {"building": 1, "area_m2": area}, "geometry": geometry}


def _area_function(crs):
    """Geometry -> area in m2 for a CRS: linear units for projected CRSs, an equal-area projection for others."""
    if crs is None:
        return lambda geometry: None
    if crs.is_projected:
        factor = crs.linear_units_factor[1] ** 2
        return lambda geometry: round(polygon_area(geometry) * factor, 3)
    return lambda geometry: round(polygon_area(rasterio.warp.transform_geom(crs, "EPSG:6933", geometry)), 3)


def _collection_header(crs, wgs84: bool) -> dict:
    if wgs84:
        if crs is None:
            raise ValueError("--geojson-wgs84 needs a georeferenced scene; this one has no CRS")
        return {"type": "FeatureCollection"}
    header = {"type": "FeatureCollection"}
    if crs is not None:  # RFC 7946 assumes WGS84; GDAL/QGIS read this member for other CRSs
        header["crs"] = {"type": "name", "properties": {"name": crs.to_string()}}
    return header


def polygons_from_array(mask: np.ndarray, crs, transform, simplify: float | None = None, wgs84: bool = False) -> dict:
    """Building outlines of an in-memory {0,1} mask as a GeoJSON FeatureCollection (see :func:`write_polygons`)."""
    collection = _collection_header(crs, wgs84)
    mask = mask.astype(np.uint8)
    shapes = rasterio.features.shapes(mask, mask=mask > 0, transform=transform)
    collection["features"] = list(_features(shapes, _area_function(crs), crs, simplify, wgs84))
    return collection


def write_polygons(mask_path: Path, output: Path, simplify: float | None = None, wgs84: bool = False) -> Path:
    """Polygonise a written 0/255 mask GeoTIFF into GeoJSON, streaming features to ``output``.

    GDAL's polygoniser reads the mask from the file line by line, so the mask is never held
    in memory; it does keep every polygon of the scene until it hands them over (roughly 100
    bytes per vertex: ~100 MB for a city mosaic of a million buildings). Properties:
    ``area_m2`` (of the predicted pixels, before simplification; null without CRS).

    Args:
        mask_path: a mask written by :class:`RasterWriter` (255 building).
        output: the GeoJSON file, written under a temporary name and renamed.
        simplify: Douglas-Peucker tolerance in map units (None: exact pixel outlines).
        wgs84: write RFC 7946 lon/lat (EPSG:4326) instead of the scene's CRS.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    with rasterio.open(mask_path) as src:
        header = json.dumps(_collection_header(src.crs, wgs84))
        band = rasterio.band(src, 1)
        shapes = rasterio.features.shapes(band, mask=band, transform=src.transform)
        try:
            with open(partial, "w") as file:
                file.write(header[:-1] + ', "features": [')
                for n, feature in enumerate(_features(shapes, _area_function(src.crs), src.crs, simplify, wgs84)):
                    file.write((",\n" if n else "\n") + json.dumps(feature))
                file.write("\n]}\n")
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    os.replace(partial, output)
    return output
