"""An Inria-size dataset (180 tiles of 5000x5000) mosaicked from synthetic patches, for rehearsals."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from plinknet.files import atomic_folder
from plinknet.synthetic.tiles import SYNTHETIC_CITIES, draw_tile
from plinknet.synthetic.writer import _profile, _write_pair


@dataclass
class InriaScaleConfig:
    """Size of the Inria-size rehearsal set written by :func:`generate_inria_scale`.

    The defaults give Inria's labelled part: 5 cities x 36 tiles of 5000 x 5000 pixels.
    """

    tile_size: int = 5000  # pixels on a side, as Inria (1.5 km at 0.3 m)
    tiles_per_city: int = 36  # as Inria: tiles 1-5 validation, 6 selection, 7-36 training
    patch_size: int = 1250  # drawn patches, 4 x 4 to a tile; drawing dominates the cost per pixel
    patches_per_city: int = 8  # x 8 flips and rotations: 64 variants to pick 16 per tile from
    resolution: float = 0.3  # metres per pixel, as Inria
    cities: tuple[str, ...] = SYNTHETIC_CITIES  # five styles, like Inria's five cities

    def __post_init__(self):
        self.cities = tuple(self.cities)
        unknown = [c for c in self.cities if c not in SYNTHETIC_CITIES]
        if unknown:
            raise ValueError(f"unknown synthetic cities {unknown}; choose from {SYNTHETIC_CITIES}")
        if min(self.tile_size, self.tiles_per_city, self.patch_size, self.patches_per_city) < 1:
            raise ValueError("tile_size, tiles_per_city, patch_size and patches_per_city must be >= 1")

    def bytes_needed(self) -> int:
        """Disk space of the set: 3 image bands and 1 mask band of uint8 per pixel, uncompressed."""
        return len(self.cities) * self.tiles_per_city * self.tile_size**2 * 4


def generate_inria_scale(
    out_dir, seed: int = 0, config: InriaScaleConfig | None = None, progress: bool = True
) -> Path:
    """Write an Inria-size rehearsal set: 180 tiles of 5000 x 5000 pixels in the Inria layout.

    It is for rehearsing paper-scale training and measuring the loader's memory and speed
    with many workers, not for learning anything: its pixels only need to be plausible. To
    take minutes rather than hours, each city draws a few patches once (``draw_tile``) and
    every tile is a mosaic of them, each picked, rotated and flipped by a seeded RNG; the
    seams between patches show. Files are uncompressed and striped, like (as far as we know)
    the original Inria tiles, so writing is fast and reading cheap: about 18 GB in all. There
    are no lab labels. It is written into a hidden temporary folder and moved into place
    at the end (:func:`~plinknet.files.atomic_folder`), so an interrupted run is never taken
    for a complete one.

    Args:
        out_dir: folder that receives ``AerialImageDataset/train/{images,gt}``.
        seed: the same seed writes the same pixels.
        config: sizes; ``InriaScaleConfig()`` (the full set) when None.
        progress: show progress bars over patches and tiles.

    Returns:
        The path of ``<out_dir>/AerialImageDataset``.

    Raises:
        FileExistsError: ``out_dir`` already holds an AerialImageDataset.
        OSError: not enough free disk space for the set.
    """
    config = config or InriaScaleConfig()
    out_dir = Path(out_dir)
    if (out_dir / "AerialImageDataset").exists():
        raise FileExistsError(
            f"{out_dir / 'AerialImageDataset'} exists already; delete it to write the rehearsal set again"
        )
    _check_free_space(out_dir, config.bytes_needed())
    with atomic_folder(out_dir / "AerialImageDataset") as partial:  # removes what a killed run left first
        _write_inria_scale(partial, seed, config, progress)
    return out_dir / "AerialImageDataset"


def _check_free_space(out_dir: Path, needed: int) -> None:
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    margin = 256 * 2**20  # headers, the file system's own bookkeeping
    if free < needed + margin:
        raise OSError(
            f"not enough disk space in {existing} for the rehearsal set: it needs "
            f"{needed / 1e9:.1f} GB and {free / 1e9:.1f} GB are free; free some or choose another --out"
        )


def _write_inria_scale(root: Path, seed: int, config: InriaScaleConfig, progress: bool):
    train = root / "train"
    for folder in ("images", "gt"):
        (train / folder).mkdir(parents=True, exist_ok=True)
    drawn = [(city, k) for city in config.cities for k in range(config.patches_per_city)]
    patches = {}
    for city, k in tqdm(drawn, desc="drawing patches", unit="patch", disable=not progress):
        # seeds of their own, apart from the sample's tiles (seed * 10_000 + tile number)
        tile = draw_tile(city, seed * 10_000 + 5_000 + k, config.patch_size, config.resolution)
        patches[city, k] = (tile.image, tile.mask)
    jobs = [(city, n) for city in config.cities for n in range(1, config.tiles_per_city + 1)]
    for city, n in tqdm(jobs, desc="inria-scale tiles", unit="tile", disable=not progress):
        rng = np.random.default_rng([seed, SYNTHETIC_CITIES.index(city), n])
        image, mask = _mosaic([patches[city, k] for k in range(config.patches_per_city)], config.tile_size, rng)
        profile = _profile(city, n, config.tile_size, config.resolution, compress=False)
        _write_pair(train, f"{city}{n}", image, mask, profile)


def _mosaic(patches, size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A (size, size) image and mask tiled with patches, each picked, rotated and flipped at random."""
    image = np.empty((size, size, 3), np.uint8)
    mask = np.empty((size, size), np.uint8)
    step = patches[0][1].shape[0]
    for y in range(0, size, step):
        for x in range(0, size, step):
            k, turns, flip = rng.integers(len(patches)), rng.integers(4), rng.random() < 0.5
            for out, patch in zip((image, mask), patches[k]):
                patch = np.rot90(patch, turns)
                patch = patch[:, ::-1] if flip else patch
                out[y : y + step, x : x + step] = patch[: size - y, : size - x]
    return image, mask

