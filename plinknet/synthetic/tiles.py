"""One synthetic tile: a city's layout drawn by the renderer, with its mask and lab labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plinknet.synthetic.layouts import _LAYOUTS
from plinknet.synthetic.render import SyntheticTile, _Scene

SYNTHETIC_CITIES = ("gridtown", "suburbia", "farmland", "alpine", "oldtown")


# A plausible projected CRS (UTM, WGS 84) and a top-left corner per city, in metres; the
# first four mimic Chicago, Austin, Kitsap County and Tyrol, the last Vienna.
CITY_CRS = {
    "gridtown": ("EPSG:32616", 447_000.0, 4_637_000.0),
    "suburbia": ("EPSG:32614", 620_000.0, 3_350_000.0),
    "farmland": ("EPSG:32610", 520_000.0, 5_270_000.0),
    "alpine": ("EPSG:32632", 650_000.0, 5_240_000.0),
    "oldtown": ("EPSG:32633", 600_000.0, 5_340_000.0),
}


# Sun (azimuth clockwise from north, elevation), in degrees, per city; tiles jitter it a little.
CITY_SUN = {
    "gridtown": (150.0, 50.0),
    "suburbia": (160.0, 42.0),
    "farmland": (140.0, 48.0),
    "alpine": (170.0, 38.0),
    "oldtown": (200.0, 55.0),
}


@dataclass
class SyntheticConfig:
    """Size and layout of the synthetic sample written by :func:`generate`."""

    tile_size: int = 1000  # 300 m at 0.3 m; not a multiple of 32, like Inria's 5000
    val_tiles: int = 2  # tiles 1..val_tiles of each city (Inria: tiles 1-5 are validation)
    train_tiles: int = 5  # tiles 6..5+train_tiles (Inria: 6-36); 6 picks best.pt, 7-10 train
    resolution: float = 0.3  # metres per pixel, as Inria
    cities: tuple[str, ...] = SYNTHETIC_CITIES  # one style each; five like Inria's five cities

    def __post_init__(self):
        self.cities = tuple(self.cities)
        unknown = [c for c in self.cities if c not in SYNTHETIC_CITIES]
        if unknown:
            raise ValueError(f"unknown synthetic cities {unknown}; choose from {SYNTHETIC_CITIES}")
        if not 1 <= self.val_tiles <= 5:
            raise ValueError(
                f"val_tiles must be 1..5 (Inria numbers validation tiles 1-5), got {self.val_tiles}"
            )
        if self.train_tiles < 1 or self.tile_size < 32:
            raise ValueError("need train_tiles >= 1 and tile_size >= 32")

    def tile_numbers(self) -> list[int]:
        """Validation tiles 1..val_tiles, then training tiles 6, 7, ..."""
        return list(range(1, self.val_tiles + 1)) + list(range(6, 6 + self.train_tiles))


def draw_tile(city: str, seed: int, size: int, resolution: float = 0.3) -> SyntheticTile:
    """Draw one tile of one city style, with its building instances and distractor regions.

    Args:
        city: one of ``SYNTHETIC_CITIES``.
        seed: the same (city, seed, size, resolution) gives the same arrays.
        size: pixels on a side.
        resolution: metres per pixel; the layouts are in metres.

    Returns:
        The image, the mask and the lab labels (see :class:`SyntheticTile`).
    """
    if city not in SYNTHETIC_CITIES:
        raise ValueError(f"unknown city style {city!r}; choose from {SYNTHETIC_CITIES}")
    rng = np.random.default_rng([SYNTHETIC_CITIES.index(city), seed])
    azimuth, elevation = CITY_SUN[city]
    sun = (azimuth + rng.uniform(-10, 10), elevation + rng.uniform(-5, 5))
    scene = _Scene(size, resolution, sun, rng, city)
    _LAYOUTS[city](scene, rng)
    return scene.render()


