"""Write the tiny Inria fixture used by tests/test_data.py (seeded: same bytes every run).

Official layout, two cities, one validation tile (number 1) and one training tile (number 6)
each, 64 x 80 px, LZW-compressed like the real data::

    tests/data/inria/AerialImageDataset/train/images/{austin,tyrol-w}{1,6}.tif
    tests/data/inria/AerialImageDataset/train/gt/{austin,tyrol-w}{1,6}.tif

Images are blocky random colours with brighter "roofs"; masks are 0/255 rectangles. The
austin tiles carry a CRS and geotransform (EPSG:26914, 0.3 m, like the real tiles); the
tyrol-w tiles carry none, like the real crops in ../shared/data/inria-crops.

Run from anywhere: ``python tests/data/make_inria_fixture.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

HEIGHT, WIDTH = 64, 80  # not square, so that row/column mix-ups show
CITIES = ("austin", "tyrol-w")
NUMBERS = (1, 6)  # 1: validation, 6: training
OUT = Path(__file__).resolve().parent / "inria"


def make_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (H, W, 3) uint8 image and its (H, W) uint8 0/255 mask."""
    blocks = rng.integers(40, 140, size=(HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
    image = blocks.repeat(8, axis=0).repeat(8, axis=1)  # 8 x 8 px blocks compress well
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    for _ in range(4):
        top, left = rng.integers(0, HEIGHT - 12), rng.integers(0, WIDTH - 12)
        height, width = rng.integers(6, 12, size=2)
        mask[top : top + height, left : left + width] = 255
    image[mask == 255] += 100  # buildings are brighter; 139 + 100 fits in uint8
    return image, mask


def write(path: Path, array: np.ndarray, georeferenced: bool) -> None:
    bands = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (C, H, W)
    profile = {
        "driver": "GTiff",
        "height": array.shape[0],
        "width": array.shape[1],
        "count": bands.shape[0],
        "dtype": "uint8",
        "compress": "lzw",
    }
    if georeferenced:
        profile["crs"] = CRS.from_epsg(26914)
        profile["transform"] = Affine(0.3, 0, 616500.0, 0, -0.3, 3345000.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # tyrol-w: no CRS on purpose
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(bands)


def main(out: Path = OUT) -> Path:
    """Write the fixture under ``out`` and return its ``AerialImageDataset`` folder."""
    rng = np.random.default_rng(0)
    dataset = out / "AerialImageDataset"
    for city in CITIES:
        for number in NUMBERS:
            image, mask = make_pair(rng)
            name = f"{city}{number}.tif"
            write(dataset / "train" / "images" / name, image, georeferenced=city == "austin")
            write(dataset / "train" / "gt" / name, mask, georeferenced=city == "austin")
    return dataset


if __name__ == "__main__":
    print(f"wrote {main()}")
