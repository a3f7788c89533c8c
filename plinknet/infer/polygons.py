"""Building polygons from a mask raster: GeoJSON with area_m2, simplified or in WGS84 on request."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp

from plinknet.files import atomic_path


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
    with rasterio.open(mask_path) as src, atomic_path(output) as partial:
        header = json.dumps(_collection_header(src.crs, wgs84))
        band = rasterio.band(src, 1)
        shapes = rasterio.features.shapes(band, mask=band, transform=src.transform)
        with open(partial, "w") as file:
            file.write(header[:-1] + ', "features": [')
            for n, feature in enumerate(_features(shapes, _area_function(src.crs), src.crs, simplify, wgs84)):
                file.write((",\n" if n else "\n") + json.dumps(feature))
            file.write("\n]}\n")
    return Path(output)

