"""Tiny scenes for the prediction tests: smooth blobs, written as GeoTIFFs in a UTM CRS."""

import numpy as np
import rasterio
from rasterio.transform import from_origin

CRS = "EPSG:32616"
TRANSFORM = from_origin(620000.0, 3350000.0, 0.3, 0.3)  # 0.3 m pixels, as Inria's


def blobs(height: int, width: int, seed: int = 0, count: int = 12) -> np.ndarray:
    """(height, width, 3) uint8 smooth blobs, so a good tiled prediction should not show seams."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    image = np.zeros((height, width, 3))
    for _ in range(count):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, 30)
        image += rng.uniform(40, 120, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)[..., None]
    return np.clip(image + 60, 0, 255).astype(np.uint8)


def write_scene(path, image: np.ndarray, crs=CRS, **profile):
    """Write an (H, W, bands) image as a GeoTIFF with ``TRANSFORM``; extra creation options in ``profile``."""
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1], count=image.shape[2],
                       dtype=image.dtype, crs=crs, transform=TRANSFORM, **profile) as dst:  # fmt: skip
        dst.write(image.transpose(2, 0, 1))
    return path
