"""A synthetic aerial-imagery sample in the Inria layout, so that the book runs offline.

The Inria Aerial Image Labeling dataset is about 20 GB and cannot be fetched everywhere the
book is built. This module draws small look-alike tiles instead: 0.3 m RGB orthophotos of
five invented city styles with building footprint masks, written as GeoTIFFs in exactly the
folder layout and file naming of Inria, so every other part of ``plinknet`` reads them
unchanged, plus lab labels that Inria does not have::

    <out>/AerialImageDataset/train/images/<city><n>.tif   3-band uint8 RGB, LZW, 0.3 m
    <out>/AerialImageDataset/train/gt/<city><n>.tif       1-band uint8, 0 background, 255 building
    <out>/AerialImageDataset/train/lab/<city><n>_instances.tif    uint32 building ids 1..K, 0 none
    <out>/AerialImageDataset/train/lab/<city><n>_distractors.tif  uint8 LOOKALIKE_KINDS code, 0 none
    <out>/AerialImageDataset/train/lab/<city><n>_instances.csv    id, area_px, area_m2

Tiles 1..``val_tiles`` of each city are validation and the following ones training, as in
the usual Inria split (1-5 validation, 6-36 training). Numbers measured on this sample say
nothing about the paper: it only exercises the code.

What makes it more than coloured rectangles, and what a network has to learn:
  * buildings from 4 m sheds to 100 m warehouses, which is what the pyramid pooling of
    P-LinkNet is for; flat, gable and hip roofs whose faces are lit by the tile's sun,
    and shadows cast by buildings, trees and cars along that one sun direction;
  * distractors that need context: parking lots and paved courtyards as bright and flat as
    roofs but casting no shadow, swimming pools, fields, roads with kerbs and markings;
  * trees with textured canopies that overhang roofs. The mask keeps the whole building
    footprint under a canopy, as Inria's masks (drawn from cadastral footprints) do;
  * multi-scale ground texture, a light sensor blur and noise.

The lab labels (used by :mod:`plinknet.lab`) record what was drawn: every building is one
instance (a house with its garage wing, a roof with its rooftop units, a palace round its
courtyard), and its footprint pixels in the tile carry its id, so the instances together
are exactly the mask. Look-alike regions carry a code of ``LOOKALIKE_KINDS`` (parking lots,
paved courtyards and squares, farm and chalet yards, pools; see there which are left out and
why); they never overlap a building. Every city has large buildings and look-alikes:
gridtown its warehouses and car parks, farmland its barns and farmyards, alpine its big
chalets and their yards; suburbia got big-box stores and schools on their car parks, and the
old town palaces round paved courtyards, for the lab (the other cities' tiles are unchanged).

Time budget: the default sample (5 cities x 6 tiles of 1000 x 1000 pixels, 30 Mpx, about
90 MB) is sized so that the book trains two segmentation networks on it on 2 CPU cores in
a few minutes each, the whole book build (install included) staying under 20 minutes.
Generating it takes about 15 s on 2 CPU cores (numpy and Pillow, one core, no GPU).
Building pixels: about 9 % (farmland, alpine), 16.5 % (suburbia), 23 % (gridtown) and
33.5 % (oldtown), 18 % overall; Inria's is about 15 %.

:func:`generate_inria_scale` (``plinknet synth --inria-scale``) writes a second, much bigger
set for rehearsing paper-scale training and measuring data loading: Inria's 5 x 36 tiles of
5000 x 5000 pixels, uncompressed (about 18 GB, under 2 minutes on 2 CPU cores), each tile a
mosaic of a few patches drawn once per city. Its pixels are only plausible; it has no lab
labels.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw
from rasterio.transform import Affine
from tqdm import tqdm

SYNTHETIC_CITIES = ("gridtown", "suburbia", "farmland", "alpine", "oldtown")
# dense grid, suburban, rural, alpine, old town; lowercase letters only (files are <city><n>.tif)

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

# Distractor regions recorded in <stem>_distractors.tif: flat, open, man-made ground that a
# network seeing only a small window could take for a flat roof, and that only context (no
# shadow, cars, the block around it) tells apart. Left out on purpose: roads, driveways and
# tracks (long and thin, a different confusion), lawns and garden courts (no roof looks like
# grass) and farmland's fields (they are that city's background: most of its pixels, and
# counting them would drown every other kind).
PARKING, COURTYARD, YARD, POOL = 1, 2, 3, 4
LOOKALIKE_KINDS = {
    PARKING: "parking",  # asphalt lots with stall lines and parked cars, often beside big roofs
    COURTYARD: "courtyard",  # paved courtyards of perimeter and old-town blocks, old-town squares
    YARD: "yard",  # paved or gravel yards of farms and chalets, between and around buildings
    POOL: "pool",  # swimming pools with their concrete coping: small flat rectangles in gardens
}


@dataclass
class SyntheticConfig:
    """Size and layout of the synthetic sample written by :func:`generate`."""

    tile_size: int = 1000  # 300 m at 0.3 m; not a multiple of 32, like Inria's 5000
    val_tiles: int = 2  # tiles 1..val_tiles of each city (Inria: tiles 1-5 are validation)
    train_tiles: int = 5  # tiles 6..5+train_tiles (Inria: 6-36 train); 6 picks best.pt, 7-10 train
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


@dataclass
class SyntheticTile:
    """One drawn tile: the image and mask that are written, and the lab labels behind them."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8 in {0, 1}: building footprints
    instances: np.ndarray  # (H, W) uint32 building instance ids 1..K, 0 none; (instances > 0) == mask
    distractors: np.ndarray  # (H, W) uint8 LOOKALIKE_KINDS codes, 0 none; never on a building


def generate(
    out_dir, seed: int = 0, config: SyntheticConfig | None = None, progress: bool = True
) -> Path:
    """Write the synthetic sample in the Inria layout, with the lab labels of every tile.

    Args:
        out_dir: folder that receives ``AerialImageDataset/train/{images,gt,lab}``.
        seed: the same seed writes the same pixels.
        config: sizes and cities; ``SyntheticConfig()`` when None.
        progress: show a progress bar over tiles.

    Returns:
        The path of ``<out_dir>/AerialImageDataset``.
    """
    config = config or SyntheticConfig()
    root = Path(out_dir) / "AerialImageDataset"
    for folder in ("images", "gt", "lab"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    jobs = [(city, n) for city in config.cities for n in config.tile_numbers()]
    for city, n in tqdm(jobs, desc="synthetic tiles", unit="tile", disable=not progress):
        tile = draw_tile(city, seed * 10_000 + n, config.tile_size, config.resolution)
        profile = _profile(city, n, config.tile_size, config.resolution)
        _write_pair(root / "train", f"{city}{n}", tile.image, tile.mask, profile)
        _write_lab(root / "train" / "lab", f"{city}{n}", tile, profile, config.resolution)
    return root


def ensure_sample(out_dir, seed: int = 0, config: SyntheticConfig | None = None) -> Path:
    """Generate the sample into ``out_dir`` unless it is there already; return its AerialImageDataset path.

    It is written into a temporary sibling folder and renamed at the end, so an interrupted
    run never leaves a half sample that would later be taken for a whole one.
    """
    out_dir = Path(out_dir)
    root = out_dir / "AerialImageDataset"
    if (root / "train" / "images").is_dir():
        return root
    return _write_atomically(out_dir, lambda partial: generate(partial, seed, config))


MANIFEST = "plinknet-synth.json"  # in AerialImageDataset/, written last: what the sample is and every file it holds


def _manifest(seed: int, config: SyntheticConfig) -> dict:
    return {"kind": "synthetic", "seed": seed, "config": {**asdict(config), "cities": list(config.cities)}}


def _sample_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_sample(out_dir, seed: int = 0, config: SyntheticConfig | None = None, overwrite: bool = False,
                 progress: bool = True) -> tuple[Path, bool]:  # fmt: skip
    """``plinknet synth``: the sample in ``out_dir``, never mixed with another; returns (AerialImageDataset, written).

    A folder that already holds the complete sample of the same seed and sizes is left as it is (``written`` is
    False). A folder holding anything else (another sample, an incomplete one, other files) is refused, or with
    ``overwrite`` its AerialImageDataset is replaced whole. The sample is written beside the folder and moved in
    when complete, with a manifest of its parameters and files.

    Raises:
        FileExistsError: ``out_dir`` holds something else; the message says what.
    """
    config = config or SyntheticConfig()
    out_dir = Path(out_dir)
    root = out_dir / "AerialImageDataset"
    wanted = _manifest(seed, config)
    others = sorted(p.name for p in out_dir.iterdir() if p.name != "AerialImageDataset") if out_dir.is_dir() else []
    if others:
        raise FileExistsError(f"{out_dir} holds other files ({', '.join(others[:5])}); plinknet synth writes only "
                              f"into an empty folder or one holding a sample: choose another --out")  # fmt: skip
    if root.exists():
        manifest_path = root / MANIFEST
        found = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
        if found is not None and {k: found.get(k) for k in wanted} == wanted:
            missing = sorted(set(found.get("files", [])) - set(_sample_files(root)))
            extra = sorted(set(_sample_files(root)) - set(found.get("files", [])))
            if not missing and not extra:
                return root, False
            why = f"an incomplete or altered sample ({len(missing)} file(s) missing, {len(extra)} not of the sample)"
        elif found is not None:
            differ = [f"{k} {found['config'].get(k)!r} (asked {v!r})" for k, v in wanted["config"].items()
                      if found["config"].get(k) != v]  # fmt: skip
            if found.get("seed") != seed:
                differ.insert(0, f"seed {found.get('seed')} (asked {seed})")
            why = f"another sample: {', '.join(differ)}"
        else:
            why = "files without a plinknet manifest (an older or interrupted sample, or other data)"
        if not overwrite:
            raise FileExistsError(f"{root} holds {why}; use --overwrite to replace it whole, or another --out")

    def write(partial: Path) -> None:
        sample = generate(partial, seed, config, progress)
        (sample / MANIFEST).write_text(json.dumps({**wanted, "files": _sample_files(sample)}, indent=1))

    if root.exists():  # --overwrite: the new sample is complete before the old one goes
        old = out_dir / ".AerialImageDataset.replaced"
        partial = out_dir.with_name(out_dir.name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        write(partial)
        os.replace(root, old)
        os.replace(partial / "AerialImageDataset", root)
        shutil.rmtree(old)
        shutil.rmtree(partial)
        return root, True
    return _write_atomically(out_dir, write), True


def _write_atomically(out_dir: Path, write) -> Path:
    """Run ``write(partial)`` on a fresh ``<out_dir>.partial`` and move its AerialImageDataset in."""
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists():  # left by an interrupted run
        shutil.rmtree(partial)
    write(partial)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.replace(partial / "AerialImageDataset", out_dir / "AerialImageDataset")
    shutil.rmtree(partial)
    return out_dir / "AerialImageDataset"


@dataclass
class InriaScaleConfig:
    """Size of the Inria-size rehearsal set written by :func:`generate_inria_scale`.

    The defaults give Inria's labelled part: 5 cities x 36 tiles of 5000 x 5000 pixels.
    """

    tile_size: int = 5000  # pixels on a side, as Inria (1.5 km at 0.3 m)
    tiles_per_city: int = 36  # as Inria: tiles 1-5 validation, 6-36 training
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
    are no lab labels. It is written into ``<out_dir>.partial`` and moved into place at the
    end, so an interrupted run is never taken for a complete one.

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
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists():  # left by an interrupted run; its space counts as free
        shutil.rmtree(partial)
    _check_free_space(out_dir, config.bytes_needed())
    return _write_atomically(out_dir, lambda p: _write_inria_scale(p, seed, config, progress))


def _check_free_space(out_dir: Path, needed: int) -> None:
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    margin = 256 * 2**20  # headers, the file system's own bookkeeping
    if free < needed + margin:
        raise OSError(
            f"not enough disk space in {existing} for the rehearsal set: it needs "
            f"{needed / 1e9:.1f} GB and {free / 1e9:.1f} GB are free; free some or choose another --out"
        )


def _write_inria_scale(out_dir: Path, seed: int, config: InriaScaleConfig, progress: bool):
    train = Path(out_dir) / "AerialImageDataset" / "train"
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


def generate_tile(
    city: str, seed: int, size: int, resolution: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one tile of one city style: :func:`draw_tile` without the lab labels.

    Returns:
        ``image`` (size, size, 3) uint8 RGB and ``mask`` (size, size) uint8 in {0, 1}.
    """
    tile = draw_tile(city, seed, size, resolution)
    return tile.image, tile.mask


def _profile(city: str, n: int, size: int, resolution: float, compress: bool = True) -> dict:
    """GeoTIFF creation options of tile ``n`` of ``city``, but its band count and dtype."""
    crs, east, north = CITY_CRS[city]
    east += (n - 1) * size * resolution  # tiles of a city lie side by side, west to east
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "crs": crs,
        "transform": Affine(resolution, 0, east, 0, -resolution, north),  # north-up
    }
    if compress:
        profile.update(compress="lzw", tiled=True, blockxsize=256, blockysize=256)
    return profile  # else uncompressed and striped, GDAL's defaults


def _write_pair(folder: Path, stem: str, image, mask, profile: dict):
    with rasterio.open(
        folder / "images" / f"{stem}.tif", "w", count=3, dtype="uint8", photometric="RGB", **profile
    ) as f:
        f.write(image.transpose(2, 0, 1))
    with rasterio.open(folder / "gt" / f"{stem}.tif", "w", count=1, dtype="uint8", **profile) as f:
        f.write(mask[None] * np.uint8(255))


def _write_lab(folder: Path, stem: str, tile: SyntheticTile, profile: dict, resolution: float):
    """``<stem>_instances.tif``, ``<stem>_distractors.tif`` and ``<stem>_instances.csv``."""
    with rasterio.open(folder / f"{stem}_instances.tif", "w", count=1, dtype="uint32", **profile) as f:
        f.write(tile.instances[None])
    with rasterio.open(folder / f"{stem}_distractors.tif", "w", count=1, dtype="uint8", **profile) as f:
        f.write(tile.distractors[None])
    areas = np.bincount(tile.instances.ravel())[1:]
    rows = [f"{i},{a},{a * resolution**2:.2f}" for i, a in enumerate(areas, start=1)]
    (folder / f"{stem}_instances.csv").write_text("\n".join(["id,area_px,area_m2", *rows]) + "\n")


# ----------------------------------------------------------------------------- palettes
# sRGB in [0, 1], picked by eye against Inria crops (Inria tiles average about 0.45).
ROOF_COLOURS = {
    "terracotta": [(0.58, 0.40, 0.32), (0.52, 0.35, 0.28), (0.62, 0.46, 0.38), (0.48, 0.36, 0.31)],
    "grey": [(0.55, 0.55, 0.54), (0.47, 0.47, 0.48), (0.62, 0.61, 0.59)],
    "dark": [(0.25, 0.25, 0.27), (0.30, 0.28, 0.27), (0.33, 0.30, 0.28)],
    "brown": [(0.42, 0.34, 0.29), (0.48, 0.40, 0.34), (0.38, 0.30, 0.27)],
    "white": [(0.84, 0.84, 0.82), (0.78, 0.78, 0.76), (0.90, 0.89, 0.86)],
    "metal": [(0.70, 0.72, 0.73), (0.60, 0.63, 0.66), (0.55, 0.25, 0.21), (0.36, 0.45, 0.40)],
}
ASPHALT = (0.34, 0.35, 0.36)
CONCRETE = (0.64, 0.63, 0.60)
CAR_COLOURS = [
    (0.85, 0.85, 0.85),
    (0.12, 0.12, 0.13),
    (0.55, 0.56, 0.58),
    (0.55, 0.12, 0.10),
    (0.15, 0.22, 0.40),
    (0.75, 0.75, 0.73),
    (0.30, 0.30, 0.32),
]
TREE_COLOURS = {
    "broadleaf": [(0.22, 0.30, 0.16), (0.27, 0.33, 0.19), (0.20, 0.26, 0.15), (0.30, 0.35, 0.22)],
    "bare": [(0.36, 0.34, 0.29), (0.32, 0.31, 0.27), (0.40, 0.37, 0.31)],
    "conifer": [(0.17, 0.24, 0.16), (0.20, 0.27, 0.18), (0.15, 0.21, 0.15)],
}
# Ground: (grass, dry grass, soil) blended by low-frequency noise, per city style.
GROUND = {
    "gridtown": [(0.36, 0.40, 0.27), (0.50, 0.49, 0.40), (0.55, 0.52, 0.46)],
    "suburbia": [(0.36, 0.40, 0.25), (0.50, 0.48, 0.36), (0.52, 0.46, 0.38)],
    "farmland": [(0.38, 0.43, 0.27), (0.55, 0.52, 0.38), (0.50, 0.43, 0.34)],
    "alpine": [(0.33, 0.43, 0.22), (0.42, 0.47, 0.28), (0.45, 0.42, 0.34)],
    "oldtown": [(0.60, 0.57, 0.52), (0.54, 0.52, 0.48), (0.50, 0.46, 0.41)],
}


@dataclass
class _Surface:
    colour: tuple[float, float, float]
    height: float = 0.0  # metres above ground, for shadows
    building: bool = False  # counted in the mask
    noise: float = 0.05  # per-pixel grain
    blotch: float = 0.05  # stains at a few metres
    stripe: float = 0.0  # amplitude of periodic lines (crop rows, metal ribs)
    stripe_dir: tuple[float, float] = (1.0, 0.0)  # intensity varies along this pixel direction
    stripe_period: float = 4.0  # pixels
    ground: bool = False  # take the ground texture instead of colour
    instance: int = 0  # building instance drawn with this surface (lab labels); 0: not a building
    lookalike: int = 0  # LOOKALIKE_KINDS code of the distractor region it belongs to; 0: none


class _Scene:
    """Paint-order drawing of surfaces (labels), trees and their shadows on one tile."""

    def __init__(self, size: int, resolution: float, sun, rng, city: str):
        self.size, self.res, self.rng, self.city = size, resolution, rng, city
        self.extent = size * resolution  # metres on a side
        azimuth, elevation = map(math.radians, sun)
        # unit vector towards the sun in pixel axes (x east, y south)
        self.sun_dir = (math.sin(azimuth), -math.cos(azimuth))
        self.sun_elev = elevation
        self.angle = 0.0  # layout rotation about the tile centre, radians
        self.surfaces = [_Surface(GROUND[city][0], ground=True)]
        self.labels = Image.new("I", (size, size), 0)
        self.draw = ImageDraw.Draw(self.labels)
        self.trees = Image.new("L", (size, size), 0)
        self.tree_draw = ImageDraw.Draw(self.trees)
        self.tree_types = [(TREE_COLOURS["broadleaf"][0], 8.0)]
        self.kind_index = {}
        for kind, colours in TREE_COLOURS.items():
            start = len(self.tree_types)
            for _ in range(40):
                c = np.array(colours[rng.integers(len(colours))]) * rng.uniform(0.85, 1.15)
                h = rng.uniform(10, 18) if kind == "conifer" else rng.uniform(5, 12)
                self.tree_types.append((tuple(c), h))
            self.kind_index[kind] = (start, len(self.tree_types))
        self.occupied = []  # (x, y, radius) in metres, to keep objects apart
        self.instance_count = 0  # building instances drawn so far (ids 1, 2, ...)
        self.lookalike_code = 0  # surfaces drawn now belong to this distractor kind

    # ------------------------------------------------------------------ geometry helpers
    def px(self, pts) -> list[tuple[float, float]]:
        """Metres in the (rotated) layout frame -> pixel coordinates."""
        c, s, h = math.cos(self.angle), math.sin(self.angle), self.extent / 2
        return [
            (((x - h) * c - (y - h) * s + h) / self.res, ((x - h) * s + (y - h) * c + h) / self.res)
            for x, y in pts
        ]

    def free(self, x, y, r) -> bool:
        return all((x - a) ** 2 + (y - b) ** 2 > (r + q) ** 2 for a, b, q in self.occupied)

    def occupy(self, x, y, r):
        self.occupied.append((x, y, r))

    def inside(self, x, y, margin=0.0) -> bool:
        """Whether a layout point falls on the tile (after rotation), give or take margin metres."""
        ((u, v),) = self.px([(x, y)])
        m = margin / self.res
        return -m <= u <= self.size + m and -m <= v <= self.size + m

    def surface(self, colour, **kw) -> int:
        """A new surface id; non-building surfaces inherit the current look-alike kind."""
        assert kw.get("building", False) == (kw.get("instance", 0) > 0), "building <=> instance"
        if not kw.get("building", False):
            kw.setdefault("lookalike", self.lookalike_code)
        self.surfaces.append(_Surface(tuple(float(c) for c in colour), **kw))
        return len(self.surfaces) - 1

    def new_instance(self) -> int:
        """The id of a new building instance."""
        self.instance_count += 1
        return self.instance_count

    @contextmanager
    def lookalike(self, code: int):
        """Surfaces drawn inside this block belong to distractor kind ``code`` (LOOKALIKE_KINDS)."""
        outer, self.lookalike_code = self.lookalike_code, code
        try:
            yield
        finally:
            self.lookalike_code = outer

    def jitter(self, colour, amount=0.06):
        """The colour a little lighter or darker, and very slightly tinted."""
        factor = self.rng.uniform(1 - amount, 1 + amount) * self.rng.uniform(0.98, 1.02, 3)
        return tuple(np.clip(np.array(colour) * factor, 0, 1))

    # ------------------------------------------------------------------ primitives
    def polygon(self, pts, sid):
        self.draw.polygon(self.px(pts), fill=sid)

    def quad(self, cx, cy, length, width, angle, sid):
        self.polygon(_rect(cx, cy, length, width, angle), sid)

    def line(self, pts, width, sid):
        self.draw.line(self.px(pts), fill=sid, width=max(1, round(width / self.res)), joint="curve")
        r = width / 2 / self.res  # round caps
        for x, y in self.px([pts[0], pts[-1]]):
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill=sid)

    def disc(self, cx, cy, r, sid):
        ((x, y),) = self.px([(cx, cy)])
        r /= self.res
        self.draw.ellipse([x - r, y - r, x + r, y + r], fill=sid)

    def tree(self, cx, cy, r, kind="broadleaf"):
        lo, hi = self.kind_index[kind]
        t = int(self.rng.integers(lo, hi))
        rng = self.rng
        n = 1 if kind == "conifer" else 1 + int(r / 2)
        for _ in range(n):
            a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.45 * r) if n > 1 else 0.0
            ((x, y),) = self.px([(cx + d * math.cos(a), cy + d * math.sin(a))])
            q = (r - d) * rng.uniform(0.75, 1.0) / self.res
            self.tree_draw.ellipse([x - q, y - q, x + q, y + q], fill=t)

    def car(self, cx, cy, angle):
        colour = CAR_COLOURS[self.rng.integers(len(CAR_COLOURS))]
        self.quad(cx, cy, 4.5, 1.9, angle, self.surface(colour, height=1.5, noise=0.02, blotch=0))
        c, s = math.cos(angle), math.sin(angle)  # dark windscreen
        glass = self.surface((0.12, 0.13, 0.15), height=1.5, noise=0.02, blotch=0)
        self.quad(cx + 0.6 * c, cy + 0.6 * s, 1.1, 1.6, angle, glass)

    def building(
        self,
        cx,
        cy,
        length,
        width,
        angle,
        roof="gable",
        colour=None,
        height=6.0,
        palette="grey",
        clutter=True,
        instance=None,
    ) -> int:
        """A rectangular building; its ridge (if any) runs along ``length``.

        Returns its instance id; pass it as ``instance`` to draw a wing of the same building.
        """
        corners = _rect(cx, cy, length, width, angle)
        colour = colour or self.jitter(self.pick(palette))
        metal = palette == "metal" or self.rng.random() < 0.1
        return self.roof(corners, roof, colour, height, clutter, metal, instance)

    def pick(self, palette):
        options = ROOF_COLOURS[palette]
        return options[self.rng.integers(len(options))]

    def roof(self, quad, roof, colour, height, clutter=True, metal=False, instance=None) -> int:
        """A building on a quadrilateral p00, p10, p11, p01; the ridge runs along p00 -> p10.

        Every surface of it (faces, parapet, rooftop units) carries one instance id: ``instance``
        when given (a wing of an existing building), else a new one, which is returned.
        """
        instance = instance or self.new_instance()
        p00, p10, p11, p01 = (np.array(p, float) for p in quad)

        def at(u, v):  # bilinear point in the quad
            return tuple(
                (1 - u) * (1 - v) * p00 + u * (1 - v) * p10 + u * v * p11 + (1 - u) * v * p01
            )

        ridge = np.array(self.px([at(1, 0.5)])[0]) - np.array(self.px([at(0, 0.5)])[0])
        u_dir = tuple(ridge / (np.linalg.norm(ridge) + 1e-9))
        ribs = 0.08 if metal and roof != "flat" else 0.0
        kw = {
            "height": height,
            "building": True,
            "noise": 0.04,
            "blotch": 0.06,
            "stripe": ribs,
            "stripe_dir": u_dir,
            "stripe_period": 3.0,
            "instance": instance,
        }
        if roof == "flat":
            self.polygon(quad, self.surface(np.array(colour) * 0.85, **kw))  # parapet
            inset = (
                min(0.8 / max(np.linalg.norm(p10 - p00), 1), 0.1),
                min(0.8 / max(np.linalg.norm(p01 - p00), 1), 0.1),
            )
            a, b = inset
            inner = [at(a, b), at(1 - a, b), at(1 - a, 1 - b), at(a, 1 - b)]
            self.polygon(inner, self.surface(colour, **kw))
            area = np.linalg.norm(p10 - p00) * np.linalg.norm(p01 - p00)
            if clutter:  # rooftop units: small, raised, so they cast small shadows
                for _ in range(self.rng.poisson(area / 400)):
                    u, v = self.rng.uniform(0.15, 0.85, 2)
                    x, y = at(u, v)
                    size = self.rng.uniform(1.5, 4.0)
                    unit = self.surface(
                        self.jitter((0.70, 0.70, 0.70), 0.15),
                        height=height + 1.2,
                        building=True,
                        noise=0.03,
                        instance=instance,
                    )
                    angle = math.atan2(u_dir[1], u_dir[0]) - self.angle  # back to layout frame
                    self.quad(x, y, size, size * self.rng.uniform(0.5, 1), angle, unit)
            return instance
        v_px = np.array(self.px([at(0.5, 1)])[0]) - np.array(self.px([at(0.5, 0)])[0])
        v_dir = v_px / (np.linalg.norm(v_px) + 1e-9)
        pitch = math.radians(self.rng.uniform(25, 45))

        def face(normal, pts):
            light = self._facet_light(normal, pitch)
            self.polygon(pts, self.surface(np.clip(np.array(colour) * light, 0, 1), **kw))

        if roof == "gable":
            face(-v_dir, [at(0, 0), at(1, 0), at(1, 0.5), at(0, 0.5)])
            face(v_dir, [at(0, 0.5), at(1, 0.5), at(1, 1), at(0, 1)])
        else:  # hip: ridge shortened by half the width at each end
            length = np.linalg.norm(p10 - p00)
            width = np.linalg.norm(p01 - p00)
            r = min(0.45, 0.5 * width / max(length, 1e-6))
            u_vec = np.array(u_dir)
            face(-v_dir, [at(0, 0), at(1, 0), at(1 - r, 0.5), at(r, 0.5)])
            face(v_dir, [at(r, 0.5), at(1 - r, 0.5), at(1, 1), at(0, 1)])
            face(-u_vec, [at(0, 0), at(r, 0.5), at(0, 1)])
            face(u_vec, [at(1, 0), at(1, 1), at(1 - r, 0.5)])
        return instance

    def _facet_light(self, normal_px, pitch):
        """Lambert brightness of a roof face relative to flat ground, sun from ``self.sun_dir``."""
        nx, ny = normal_px
        sx, sy = self.sun_dir
        ce, se = math.cos(self.sun_elev), math.sin(self.sun_elev)
        dot = math.sin(pitch) * (nx * sx + ny * sy) * ce + math.cos(pitch) * se
        return float(np.clip(dot / se, 0.35, 1.4) ** 0.8)

    def road(self, pts, width, kerb=1.5, marking=True, colour=ASPHALT):
        if kerb > 0:  # kerb and pavement on both sides
            pavement = self.surface(self.jitter(CONCRETE), noise=0.04, blotch=0.04)
            self.line(pts, width + 2 * kerb, pavement)
        self.line(pts, width, self.surface(self.jitter(colour, 0.04), noise=0.05, blotch=0.08))
        if marking:
            paint = self.surface((0.85, 0.84, 0.78), noise=0.03, blotch=0.0)
            pts = _resample(pts, 3.0)
            for a, b in zip(pts[0::2], pts[1::2]):
                self.line([a, b], 0.3, paint)

    def parking(self, cx, cy, length, width, angle, fill=0.6):
        """An asphalt lot with painted stalls and parked cars: roof-like, but no shadow."""
        with self.lookalike(PARKING):
            self._parking(cx, cy, length, width, angle, fill)

    def _parking(self, cx, cy, length, width, angle, fill):
        asphalt = self.surface(self.jitter(ASPHALT, 0.1), noise=0.05, blotch=0.08)
        self.quad(cx, cy, length, width, angle, asphalt)
        paint = self.surface((0.82, 0.82, 0.78), noise=0.02, blotch=0.0)
        c, s = math.cos(angle), math.sin(angle)
        for row in np.arange(-width / 2 + 3, width / 2 - 2.9, 6.0 if width < 14 else 15.0):
            for k in np.arange(-length / 2 + 1.5, length / 2 - 1.5, 2.6):
                x, y = cx + k * c - row * s, cy + k * s + row * c
                self.line([(x - 2.5 * s, y + 2.5 * c), (x + 2.5 * s, y - 2.5 * c)], 0.3, paint)
                if self.rng.random() < fill:
                    tilt = self.rng.normal(0, 0.05)
                    self.car(x + 1.3 * c, y + 1.3 * s, angle + math.pi / 2 + tilt)

    def pool(self, cx, cy, length, width, angle):
        coping = self.surface(self.jitter(CONCRETE), noise=0.03, lookalike=POOL)
        self.quad(cx, cy, length + 1.6, width + 1.6, angle, coping)
        water = self.surface(
            self.jitter((0.32, 0.66, 0.74), 0.08), noise=0.03, blotch=0.08, lookalike=POOL
        )
        self.quad(cx, cy, length, width, angle, water)

    # ------------------------------------------------------------------ rendering
    def render(self) -> SyntheticTile:
        n, rng = self.size, self.rng
        labels = np.asarray(self.labels, dtype=np.int32)
        s = self.surfaces
        colour = np.array([x.colour for x in s], np.float32)
        height = np.array([x.height for x in s], np.float32)
        building = np.array([x.building for x in s])

        img = colour[labels]  # (n, n, 3)
        ground = np.array([x.ground for x in s])[labels]
        img[ground] = self._ground_texture()[ground]
        fine, blotch = _noise(rng, n, 1), _noise(rng, n, 12 * 0.3 / self.res)
        grain = np.array([x.noise for x in s], np.float32)[labels] * fine
        grain += np.array([x.blotch for x in s], np.float32)[labels] * blotch
        img *= (1 + grain)[..., None]

        amp = np.array([x.stripe for x in s], np.float32)[labels]
        if amp.any():
            yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
            d = np.array([x.stripe_dir for x in s], np.float32)[labels]
            period = np.array([x.stripe_period for x in s], np.float32)[labels]
            phase = 2 * np.pi * (xx * d[..., 0] + yy * d[..., 1]) / period
            img *= (1 + amp * np.sin(phase))[..., None]

        roof = building[labels]
        edge = np.zeros_like(roof)  # eaves, ridges and the seams between buildings read as lines
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        edge[1:, :] |= labels[1:, :] != labels[:-1, :]
        img[edge & roof] *= 0.82

        # Trees: a dome per canopy, lit from the sun side, grainy, darker at the rim.
        kinds = np.asarray(self.trees, dtype=np.int32)
        soft = _blur((kinds > 0).astype(np.float32), 1.0)
        canopy = soft + 0.25 * _noise(rng, n, 1.5) * (soft > 0.05) > 0.5  # ragged rims
        dome = _blur((kinds > 0).astype(np.float32), 2.5 * 0.3 / self.res)
        gy, gx = np.gradient(dome)
        sx, sy = self.sun_dir
        shade = np.clip(1 - 6.0 * (gx * sx + gy * sy), 0.5, 1.5) * (0.6 + 0.4 * dome)
        shade *= 1 + 0.25 * _noise(rng, n, 1.2) + 0.15 * _noise(rng, n, 4)
        tree_colour = np.array([c for c, _ in self.tree_types], np.float32)
        img[canopy] = (tree_colour[kinds] * shade[..., None])[canopy]

        h = height[labels]
        tree_h = np.array([t for _, t in self.tree_types], np.float32)[kinds] * (0.5 + 0.5 * dome)
        h = np.where(canopy, np.maximum(h, tree_h), h)
        cast = _cast_shadow(h, self.sun_dir, math.tan(self.sun_elev) * self.res)
        shadow = _blur((cast > h + 0.3).astype(np.float32), 0.7)
        img *= 1 - shadow[..., None] * np.array([0.58, 0.56, 0.50], np.float32)

        if self.city == "alpine":  # hillshade of a smooth terrain, same sun
            img *= self._hillshade()[..., None]

        grey = img.mean(axis=2, keepdims=True)
        img = grey + 0.8 * (img - grey)  # aerial photos are less saturated than paint
        img = _blur(img, 0.5 * 0.3 / self.res)  # optics
        img = img * rng.uniform(0.92, 1.08) + rng.uniform(-0.02, 0.02)  # exposure per tile
        img += 0.012 * rng.standard_normal(img.shape, dtype=np.float32)  # sensor noise
        image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        instances = np.array([x.instance for x in s], np.uint32)[labels]
        distractors = np.array([x.lookalike for x in s], np.uint8)[labels]
        return SyntheticTile(image, roof.astype(np.uint8), _renumber(instances), distractors)

    def _ground_texture(self):
        n, rng = self.size, self.rng
        grass, dry, soil = (np.array(c, np.float32) for c in GROUND[self.city])
        k = 0.3 / self.res
        m1 = _smoothstep(0.4 * _noise(rng, n, 60 * k) + 0.25 * _noise(rng, n, 15 * k) + 0.5)
        m2 = _smoothstep(0.5 * _noise(rng, n, 25 * k) + 0.15 * _noise(rng, n, 5 * k) - 0.1)
        tex = grass * (1 - m1)[..., None] + dry * m1[..., None]
        tex = tex * (1 - m2)[..., None] + soil * m2[..., None]
        bright = (
            1
            + 0.10 * _noise(rng, n, 3 * k)
            + 0.07 * _noise(rng, n, 1)
            + 0.06 * _noise(rng, n, 30 * k)
        )
        return tex * bright[..., None]

    def _hillshade(self):
        k = 0.3 / self.res
        dem = 25.0 * _noise(self.rng, self.size, 400 * k)  # metres
        dem += 6.0 * _noise(self.rng, self.size, 120 * k)
        gy, gx = np.gradient(dem, self.res)
        sx, sy = self.sun_dir
        ce, se = math.cos(self.sun_elev), math.sin(self.sun_elev)
        lit = (-(gx * sx + gy * sy) * ce + se) / np.sqrt(1 + gx**2 + gy**2)
        return np.clip(lit / se, 0.75, 1.2).astype(np.float32)


# ----------------------------------------------------------------------------- numerics
def _renumber(instances):
    """Ids 1..K in drawing order for the K instances left visible (later roofs cover earlier ones)."""
    visible = np.unique(instances)
    lookup = np.zeros(int(visible[-1]) + 1, np.uint32)
    lookup[visible] = np.arange(len(visible), dtype=np.uint32) + (visible[0] != 0)
    return lookup[instances]


def _rect(cx, cy, length, width, angle):
    """Corners p00, p10, p11, p01 of a rectangle; p00 -> p10 runs along ``length`` at ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = np.array([c, s]) * length / 2, np.array([-s, c]) * width / 2
    m = np.array([cx, cy])
    return [tuple(m - u - v), tuple(m + u - v), tuple(m + u + v), tuple(m - u + v)]


def _resample(pts, step):
    """Points every ``step`` metres along a polyline."""
    pts = np.asarray(pts, float)
    seg = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    t = np.arange(0, seg[-1], step)
    return list(zip(np.interp(t, seg, pts[:, 0]), np.interp(t, seg, pts[:, 1])))


def _noise(rng, n, cell):
    """Smooth zero-mean noise of about unit variance with features ``cell`` pixels wide."""
    if cell <= 1:
        return rng.standard_normal((n, n), dtype=np.float32)
    k = math.ceil(n / cell) + 3
    small = Image.fromarray(rng.standard_normal((k, k), dtype=np.float32), "F")
    big = np.asarray(small.resize((int(k * cell), int(k * cell)), Image.BICUBIC))
    out = big[:n, :n]
    return (out - out.mean()) / (out.std() + 1e-6)


def _smoothstep(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _box(a, r, axis):
    """Mean over a window of 2r+1 along one axis, edges repeated."""
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float32)
    hi = np.take(c, np.arange(2 * r + 1, c.shape[axis]), axis=axis)
    lo = np.take(c, np.arange(0, c.shape[axis] - 2 * r - 1), axis=axis)
    return (hi - lo) / (2 * r + 1)


def _blur(a, sigma):
    """Approximate Gaussian blur of the first two axes: three box filters each way."""
    r = round((math.sqrt(4 * sigma**2 + 1) - 1) / 2)  # three boxes of 2r+1 have variance ~ sigma^2
    if r < 1:  # small sigma: a 3-tap kernel (w, 1 - 2w, w) of variance 2w each way
        w = min(sigma**2 / 2, 1 / 3)
        for axis in (0, 1):
            p = np.pad(a, [(1, 1) if i == axis else (0, 0) for i in range(a.ndim)], mode="edge")
            m = a.shape[axis]
            a = (1 - 2 * w) * a + w * (
                np.take(p, range(m), axis) + np.take(p, range(2, m + 2), axis)
            )
        return a
    for axis in (0, 1):
        for _ in range(3):
            a = _box(a, r, axis)
    return a


def _cast_shadow(h, toward_sun, drop):
    """Height of the sun ray's shadow above each pixel: max over k of h(p + k d) - k drop."""
    n = h.shape[0]
    cast = h.copy()
    dx, dy = toward_sun
    steps = int(h.max() / drop) + 1
    for k in range(1, steps + 1):
        ox, oy = round(k * dx), round(k * dy)
        if abs(ox) >= n or abs(oy) >= n:
            break
        dst = cast[max(0, -oy) : n - max(0, oy), max(0, -ox) : n - max(0, ox)]
        src = h[max(0, oy) : n + min(0, oy), max(0, ox) : n + min(0, ox)]
        np.maximum(dst, src - k * drop, out=dst)
    return cast


# ----------------------------------------------------------------------------- layouts
def _gridtown(scene: _Scene, rng):
    """Chicago-like: a street grid; perimeter blocks with courtyards, row houses, warehouses."""
    scene.angle = 0.0 if rng.random() < 0.6 else rng.uniform(-math.pi / 4, math.pi / 4)
    e = scene.extent
    lo, hi = -0.25 * e - 150, 1.25 * e + 150  # the rotated grid must still cover the tile

    def cuts(block):
        edges, x = [], lo + rng.uniform(0, block[1])
        while x < hi:
            w = rng.uniform(12, 20)
            edges.append((x, w))
            x += w + rng.uniform(*block)
        return edges

    xs, ys = cuts((70, 130)), cuts((60, 110))
    for x, w in xs:
        scene.road([(x, lo), (x, hi)], w - 5, kerb=2.5)
    for y, w in ys:
        scene.road([(lo, y), (hi, y)], w - 5, kerb=2.5)
    for (x0, wx0), (x1, wx1) in itertools.pairwise(xs):
        for (y0, wy0), (y1, wy1) in itertools.pairwise(ys):
            a, b = x0 + wx0 / 2 + 1, x1 - wx1 / 2 - 1  # the block between two streets each way
            c, d = y0 + wy0 / 2 + 1, y1 - wy1 / 2 - 1
            if b - a < 20 or d - c < 20 or not scene.inside((a + b) / 2, (c + d) / 2, 120):
                continue
            kind = rng.choice(
                ["perimeter", "rows", "warehouse", "parking", "park"], p=[0.3, 0.3, 0.2, 0.1, 0.1]
            )
            _grid_block(scene, rng, kind, a, b, c, d)
            for x in np.arange(a + 4, b - 2, rng.uniform(8, 14)):  # street trees
                for y in (c - 2, d + 2):
                    if rng.random() < 0.35:
                        scene.tree(x, y, rng.uniform(2.5, 4.5))


def _grid_block(scene, rng, kind, a, b, c, d):
    cx, cy, lx, ly = (a + b) / 2, (c + d) / 2, b - a, d - c

    def palette():
        return rng.choice(["grey", "dark", "white", "brown"], p=[0.35, 0.3, 0.2, 0.15])

    if kind == "perimeter":
        depth = rng.uniform(11, 17)
        paving = scene.jitter(CONCRETE, 0.1)
        grass = rng.random() < 0.4  # a lawn is no look-alike; a paved courtyard is
        yard = scene.surface(
            paving,
            noise=0.05,
            blotch=0.08,
            ground=grass,
            lookalike=0 if grass else COURTYARD,
        )
        scene.quad(cx, cy, lx, ly, 0, yard)
        for side in range(4):
            horizontal = side < 2
            span = lx if horizontal else ly - 2 * depth
            x = a if horizontal else (a + depth / 2 if side == 2 else b - depth / 2)
            pos = a if horizontal else c + depth
            end = pos + span
            while pos < end - 3:
                seg = min(end - pos, rng.uniform(12, 40))
                mid = pos + seg / 2
                h = rng.uniform(8, 20)
                if horizontal:
                    y = c + depth / 2 if side == 0 else d - depth / 2
                    scene.building(mid, y, seg, depth, 0, roof="flat", palette=palette(), height=h)
                else:
                    scene.building(
                        x, mid, seg, depth, math.pi / 2, roof="flat", palette=palette(), height=h
                    )
                pos += seg
        for _ in range(rng.integers(0, 4)):
            scene.tree(
                rng.uniform(a + depth + 3, b - depth - 3),
                rng.uniform(c + depth + 3, d - depth - 3),
                rng.uniform(2.5, 5),
            )
        for _ in range(rng.integers(0, 4)):
            scene.car(
                rng.uniform(a + depth + 3, b - depth - 3),
                rng.uniform(c + depth + 3, d - depth - 3),
                rng.uniform(0, math.pi),
            )
    elif kind == "rows":
        alley = 5.0
        scene.quad(
            cx, cy, lx, alley, 0, scene.surface(scene.jitter(ASPHALT), noise=0.05, blotch=0.1)
        )
        lot = rng.uniform(7.5, 10)
        for front, sign in ((c, 1), (d, -1)):
            for x in np.arange(a + lot / 2, b - lot / 2, lot):
                if rng.random() < 0.08:
                    continue
                deep, wide = rng.uniform(12, 20), lot - rng.uniform(1.2, 2.5)
                setback = rng.uniform(2, 5)
                roof = rng.choice(["flat", "gable"], p=[0.6, 0.4])
                scene.building(
                    x,
                    front + sign * (setback + deep / 2),
                    deep,
                    wide,
                    math.pi / 2,
                    roof=roof,
                    palette=palette(),
                    height=rng.uniform(6, 11),
                )
                if rng.random() < 0.5:  # garage on the alley
                    g = rng.uniform(5, 6.5)
                    scene.building(
                        x,
                        cy - sign * (alley / 2 + g / 2 + 0.5),
                        g,
                        g,
                        0,
                        roof="flat",
                        palette="grey",
                        height=3,
                        clutter=False,
                    )
                if rng.random() < 0.5:
                    scene.tree(
                        x + rng.uniform(-3, 3),
                        front + sign * (setback + deep + 3 + rng.uniform(0, 6)),
                        rng.uniform(2, 5),
                    )
    elif kind == "warehouse":
        scene.parking(cx, cy, lx, ly, 0, fill=0.4)
        wl, ww = rng.uniform(0.6, 0.95) * lx, rng.uniform(0.5, 0.85) * ly
        scene.building(
            a + wl / 2 + 1,
            c + ww / 2 + 1,
            wl,
            ww,
            0,
            roof="flat",
            palette=rng.choice(["white", "metal", "grey"]),
            height=rng.uniform(7, 12),
        )
    elif kind == "parking":
        scene.parking(cx, cy, lx, ly, 0, fill=rng.uniform(0.3, 0.9))
    else:  # park
        for _ in range(int(lx * ly / 120)):
            scene.tree(rng.uniform(a, b), rng.uniform(c, d), rng.uniform(2.5, 6))
        scene.line([(a, c), (b, d)], 3, scene.surface(scene.jitter(CONCRETE), noise=0.04))


def _curve(rng, x0, y0, angle, length, wiggle):
    """A gently winding polyline of the given length starting at (x0, y0)."""
    t = np.arange(0, length, 4.0)
    phase, wavelength = rng.uniform(0, 2 * math.pi), rng.uniform(150, 400)
    bend = wiggle * np.sin(2 * np.pi * t / wavelength + phase)
    c, s = math.cos(angle), math.sin(angle)
    return list(zip(x0 + t * c - bend * s, y0 + t * s + bend * c))


def _distance_to(pts, lines):
    """Distance from each point to the nearest polyline vertex (polylines sampled every 4 m)."""
    verts = np.concatenate([np.asarray(line) for line in lines])
    p = np.asarray(pts)
    return np.sqrt(((p[:, None, :] - verts[None]) ** 2).sum(-1)).min(1)


def _along_roads(rng, roads, spacing, house):
    """Call ``house(x, y, angle, side)`` at lots spaced along both sides of each road."""
    for line in roads:
        pts = np.asarray(line)
        for i in range(1, len(pts) - 1, max(1, int(spacing / 4))):
            tx, ty = pts[i + 1] - pts[i - 1]
            angle = math.atan2(ty, tx)
            for side in (-1, 1):
                house(pts[i][0], pts[i][1], angle, side)


def _suburbia(scene: _Scene, rng):
    """Austin-like: winding streets, detached houses with gardens, pools, sheds and many trees."""
    e = scene.extent
    scene.angle = rng.uniform(-math.pi, math.pi)
    spacing = rng.uniform(75, 95)
    roads = [
        _curve(rng, -0.3 * e, y, rng.normal(0, 0.1), 1.6 * e, rng.uniform(5, 25))
        for y in np.arange(-0.2 * e + rng.uniform(0, spacing), 1.2 * e, spacing)
    ]
    roads.append(_curve(rng, rng.uniform(0.2, 0.8) * e, -0.3 * e, math.pi / 2, 1.6 * e, 15))
    width = rng.uniform(7, 9)
    for line in roads:
        scene.road(line, width, kerb=0.6, marking=rng.random() < 0.3)
    sites = _shopping_sites(scene, rng)

    def on_site(x, y, margin):
        return any(abs(x - a) < u + margin and abs(y - b) < v + margin for a, b, u, v in sites)

    def house(x, y, angle, side):
        nx, ny = -math.sin(angle), math.cos(angle)
        w, l = rng.uniform(9, 14), rng.uniform(12, 22)
        setback = width / 2 + rng.uniform(6, 11)
        hx, hy = x + side * nx * (setback + w / 2), y + side * ny * (setback + w / 2)
        if not scene.inside(hx, hy, 30) or not scene.free(hx, hy, l / 2 + 2):
            return
        if _distance_to([(hx, hy)], roads)[0] < width / 2 + w / 2 + 3:
            return
        if on_site(hx, hy, l / 2 + 2):
            return
        scene.occupy(hx, hy, l / 2 + 2)
        off = l / 2 - 2  # driveway to one end of the house
        dx, dy = x + off * math.cos(angle), y + off * math.sin(angle)
        scene.line(
            [(dx, dy), (dx + side * nx * setback, dy + side * ny * setback)],
            3.5,
            scene.surface(scene.jitter(CONCRETE), noise=0.04),
        )
        roof = rng.choice(["hip", "gable", "flat"], p=[0.5, 0.4, 0.1])
        palette = rng.choice(["grey", "dark", "brown", "white"], p=[0.35, 0.3, 0.25, 0.1])
        house_id = scene.building(
            hx, hy, l, w, angle, roof=roof, palette=palette, height=rng.uniform(4, 7)
        )
        if rng.random() < 0.35:  # an extension or garage wing: part of the same building
            scene.building(
                hx + 0.4 * l * math.cos(angle) - side * nx * 0.2 * w,
                hy + 0.4 * l * math.sin(angle) - side * ny * 0.2 * w,
                rng.uniform(5, 8),
                rng.uniform(5, 8),
                angle + math.pi / 2,
                roof=roof,
                palette=palette,
                height=3.5,
                instance=house_id,
            )
        back = setback + w + rng.uniform(5, 9)
        bx, by = x + side * nx * back, y + side * ny * back
        along = rng.uniform(-0.3, 0.3) * l
        bx, by = bx + along * math.cos(angle), by + along * math.sin(angle)
        if on_site(bx, by, 6):
            pass  # the back of this garden is the neighbouring car park
        elif rng.random() < 0.25:
            scene.pool(bx, by, rng.uniform(6, 10), rng.uniform(3, 5), angle + rng.normal(0, 0.1))
        elif rng.random() < 0.4:  # shed
            s = rng.uniform(3, 5)
            scene.building(
                bx,
                by,
                s,
                s * rng.uniform(0.7, 1),
                angle,
                roof=rng.choice(["flat", "gable"]),
                palette=rng.choice(["metal", "grey", "white"]),
                height=2.5,
                clutter=False,
            )
        for _ in range(rng.poisson(4)):  # yard trees, some over the roof
            r = rng.uniform(2.5, 7.0)
            t = rng.uniform(-0.2, 1.6) * back
            a = rng.uniform(-0.8, 0.8) * spacing / 2
            scene.tree(
                x + side * nx * t + a * math.cos(angle),
                y + side * ny * t + a * math.sin(angle),
                r,
                "bare" if rng.random() < 0.3 else "broadleaf",
            )

    _along_roads(rng, roads, 24, house)


def _shopping_sites(scene: _Scene, rng) -> list[tuple[float, float, float, float]]:
    """Big flat-roofed stores and schools on their car parks, across the streets they open on.

    They are the suburb's large buildings (1,300-5,000 m^2) and its parking-lot look-alikes,
    one or two per 300 m tile. Drawn before the houses, which keep off them. Returns each
    site as (x, y, half length, half depth) in the layout frame, where streets run along x.
    """
    e, sites = scene.extent, []
    for _ in range(rng.poisson(1.5 * (e / 300) ** 2)):
        x, y = rng.uniform(0.2, 0.8, 2) * e
        length, depth = rng.uniform(80, 130), rng.uniform(55, 75)
        if any(abs(x - a) < length / 2 + u + 10 and abs(y - b) < depth / 2 + v + 10 for a, b, u, v in sites):
            continue
        sites.append((x, y, length / 2, depth / 2))
        scene.parking(x, y, length, depth, 0.0, fill=rng.uniform(0.3, 0.7))
        wl, wd = rng.uniform(0.45, 0.75) * length, rng.uniform(0.5, 0.7) * depth
        back = rng.choice([-1, 1]) * (depth - wd) / 2  # the store at the back, cars in front
        scene.building(
            x + rng.uniform(-0.5, 0.5) * (length - wl),
            y + back,
            wl,
            wd,
            0.0,
            roof="flat",
            palette=rng.choice(["white", "grey", "metal"]),
            height=rng.uniform(6, 10),
        )
    return sites


def _farmland(scene: _Scene, rng):
    """Kitsap-like: patchwork fields, a country road, farmyards with barns and sheds."""
    e = scene.extent
    scene.angle = rng.uniform(-math.pi / 3, math.pi / 3)
    lo, hi = -0.3 * e, 1.3 * e
    x = lo
    crops = [
        (0.40, 0.47, 0.26),
        (0.56, 0.52, 0.34),
        (0.47, 0.39, 0.30),
        (0.34, 0.42, 0.22),
        (0.62, 0.58, 0.44),
    ]
    while x < hi:
        w = rng.uniform(40, 120)
        y = lo
        while y < hi:
            ln = rng.uniform(60, 200)
            if scene.inside(x + w / 2, y + ln / 2, 150) and rng.random() < 0.85:
                colour = scene.jitter(crops[rng.integers(len(crops))], 0.08)
                rows = (1.0, 0.0) if rng.random() < 0.5 else (0.0, 1.0)
                c, s = math.cos(scene.angle), math.sin(scene.angle)
                stripe_dir = (rows[0] * c - rows[1] * s, rows[0] * s + rows[1] * c)
                field = scene.surface(
                    colour,
                    noise=0.04,
                    blotch=0.06,
                    stripe=rng.uniform(0.03, 0.12),
                    stripe_dir=stripe_dir,
                    stripe_period=rng.uniform(2.5, 8),
                )
                scene.quad(x + w / 2, y + ln / 2, w - 3, ln - 3, 0, field)
            y += ln
        x += w
    road = _curve(rng, lo, rng.uniform(0.2, 0.8) * e, rng.normal(0, 0.2), hi - lo, 20)
    scene.road(road, 6.0, kerb=0, marking=True)
    track = scene.surface(scene.jitter((0.58, 0.53, 0.45)), noise=0.08, blotch=0.1)
    for _ in range(rng.integers(1, 3)):
        scene.line(
            _curve(rng, rng.uniform(0, e), lo, math.pi / 2 + rng.normal(0, 0.3), hi - lo, 10),
            3.0,
            track,
        )
    for _ in range(rng.integers(4, 7)):
        _farmyard(scene, rng, *rng.uniform(0.1, 0.9, 2) * e)
    for x, y in _resample(road, 40):  # houses along the road
        if rng.random() < 0.3:
            angle = rng.uniform(0, math.pi)
            scene.building(
                x + rng.choice([-1, 1]) * 15,
                y + rng.choice([-1, 1]) * 15,
                rng.uniform(10, 16),
                rng.uniform(8, 11),
                angle,
                roof=rng.choice(["gable", "hip"]),
                palette=rng.choice(["grey", "dark", "brown"]),
                height=6,
            )
    for _ in range(rng.integers(1, 4)):  # hedgerows
        line = _curve(rng, *rng.uniform(0, e, 2), rng.uniform(0, math.pi), rng.uniform(60, 200), 3)
        for x, y in _resample(line, 4):
            scene.tree(x, y, rng.uniform(2, 4))


def _farmyard(scene, rng, cx, cy):
    angle = rng.uniform(0, math.pi)
    c, s = math.cos(angle), math.sin(angle)
    size = rng.uniform(50, 80)
    yard = scene.surface(scene.jitter((0.52, 0.50, 0.45)), noise=0.06, blotch=0.06, lookalike=YARD)
    scene.quad(cx, cy, size, size * 0.8, angle, yard)
    for _ in range(rng.integers(10, 16)):
        u, v = rng.uniform(-0.5, 0.5, 2) * size
        x, y = cx + u * c - v * s, cy + u * s + v * c
        big = rng.random() < 0.5
        ln = rng.uniform(25, 90) if big else rng.uniform(4, 12)
        wd = ln * rng.uniform(0.3, 0.6) if big else ln * rng.uniform(0.6, 1)
        if not scene.free(x, y, 0.3 * math.hypot(ln, wd)):
            continue
        scene.occupy(x, y, 0.3 * math.hypot(ln, wd))
        roof = (
            rng.choice(["gable", "flat"], p=[0.8, 0.2])
            if big
            else rng.choice(["gable", "flat", "hip"])
        )
        palette = rng.choice(["metal", "grey", "dark", "terracotta"], p=[0.4, 0.25, 0.15, 0.2])
        scene.building(
            x,
            y,
            ln,
            wd,
            angle + rng.choice([0, math.pi / 2]),
            roof=roof,
            palette=palette,
            height=rng.uniform(6, 11) if big else rng.uniform(2.5, 4),
            clutter=False,
        )
    if rng.random() < 0.6:  # silos: round, tall
        silo = scene.surface(
            scene.jitter((0.72, 0.73, 0.74)),
            height=14,
            building=True,
            noise=0.03,
            instance=scene.new_instance(),
        )
        scene.disc(cx + 0.45 * size * c, cy + 0.45 * size * s, rng.uniform(3, 5), silo)
    outline = _rect(cx, cy, size * 1.1, size * 0.9, angle)
    for x, y in _resample(outline + outline[:1], 6):
        if rng.random() < 0.4:  # a windbreak
            scene.tree(x, y, rng.uniform(3, 5))


def _alpine(scene: _Scene, rng):
    """Tyrol-like: meadows on slopes, forests, a winding road, a village of dark-roofed chalets."""
    e = scene.extent
    road = _curve(
        rng, -0.2 * e, rng.uniform(0.3, 0.7) * e, rng.normal(0, 0.3), 1.4 * e, rng.uniform(20, 50)
    )
    scene.road(road, 5.5, kerb=0, marking=False)
    village = np.asarray(road)[rng.integers(len(road) // 4, 3 * len(road) // 4)]
    spread = rng.uniform(40, 70)
    for k in range(rng.integers(70, 100)):
        x, y = village + rng.normal(0, spread, 2) if k % 4 else rng.uniform(0, e, 2)
        angle = rng.uniform(0, math.pi) if rng.random() < 0.3 else scene.angle + rng.normal(0, 0.2)
        big = rng.random() < 0.12
        ln, wd = (
            (rng.uniform(25, 45), rng.uniform(15, 22))
            if big
            else (rng.uniform(11, 20), rng.uniform(9, 14))
        )
        if not scene.free(x, y, 0.55 * ln) or _distance_to([(x, y)], [road])[0] < wd / 2 + 5:
            continue
        scene.occupy(x, y, 0.55 * ln)
        yard = scene.surface(
            scene.jitter((0.56, 0.54, 0.50)), noise=0.05, blotch=0.1, lookalike=YARD
        )
        scene.quad(x, y, ln + 6, wd + 6, angle, yard)
        scene.building(
            x,
            y,
            ln,
            wd,
            angle,
            roof="gable",
            palette=rng.choice(["dark", "brown", "grey"], p=[0.5, 0.35, 0.15]),
            height=rng.uniform(7, 10),
        )
        if rng.random() < 0.4:  # a woodshed or barn nearby
            sx, sy = x + rng.uniform(-1, 1) * ln, y + rng.uniform(-1, 1) * ln
            scene.occupy(sx, sy, 4)
            scene.building(
                sx,
                sy,
                rng.uniform(4, 7),
                rng.uniform(3, 5),
                angle,
                roof="gable",
                palette="brown",
                height=3,
                clutter=False,
            )
    forest = _noise(rng, 64, 12) > 0.6  # forest patches on a coarse grid, cleared around houses
    for i, j in zip(*np.nonzero(forest)):
        for _ in range(3):
            x, y = (j + rng.random()) * e / 64, (i + rng.random()) * e / 64
            if scene.free(x, y, 2):
                kind = "conifer" if rng.random() < 0.75 else "broadleaf"
                scene.tree(x, y, rng.uniform(2, 4), kind)


def _oldtown(scene: _Scene, rng):
    """Vienna-like: irregular dense blocks of terracotta roofs, narrow streets, inner courtyards."""
    e = scene.extent
    scene.angle = rng.uniform(-math.pi / 6, math.pi / 6)
    step = rng.uniform(60, 85)
    count = int(1.5 * e / step) + 2
    g = np.mgrid[0:count, 0:count].transpose(1, 2, 0)[..., ::-1] * step - 0.25 * e
    g = g + rng.normal(0, step * 0.12, g.shape)
    piazza = tuple(rng.integers(0, count - 1, 2))  # one block left open as a square
    for i in range(count - 1):
        for j in range(count - 1):
            quad = [g[i, j], g[i, j + 1], g[i + 1, j + 1], g[i + 1, j]]
            centre = np.mean(quad, axis=0)
            if not scene.inside(*centre, 100):
                continue
            street = rng.uniform(6, 11)
            quad = [tuple(p + (centre - p) * street / np.linalg.norm(centre - p)) for p in quad]
            if (i, j) == piazza:
                square = scene.surface(
                    scene.jitter((0.68, 0.64, 0.58)), noise=0.05, blotch=0.05, lookalike=COURTYARD
                )
                scene.polygon(quad, square)
                scene.building(
                    *centre, 40, 18, scene.angle + 0.05, roof="gable", palette="grey", height=20
                )
                continue
            if rng.random() < 0.06:  # about one palace per 300 m tile
                _old_palace(scene, rng, quad)
            else:
                _old_block(scene, rng, quad)


def _old_palace(scene, rng, quad):
    """One building round a whole block, with a paved courtyard: a large roof and its look-alike."""
    p00, p10, p11, p01 = (np.array(p) for p in quad)
    paving = scene.surface(
        scene.jitter((0.66, 0.63, 0.58), 0.06), noise=0.05, blotch=0.06, lookalike=COURTYARD
    )
    scene.polygon(quad, paving)

    def at(u, v):
        return (1 - u) * (1 - v) * p00 + u * (1 - v) * p10 + u * v * p11 + (1 - u) * v * p01

    lu, lv = np.linalg.norm(p10 - p00), np.linalg.norm(p01 - p00)
    depth = rng.uniform(12, 16)
    colour = scene.jitter(scene.pick(rng.choice(["grey", "terracotta"])), 0.05)
    height, palace = rng.uniform(18, 25), None
    # four wings along the street sides, (u along the street, v into the block), as in _old_block
    for row, across in (
        (lambda u, v: at(u, v), lv),
        (lambda u, v: at(1 - u, 1 - v), lv),
        (lambda u, v: at(v, 1 - u), lu),
        (lambda u, v: at(1 - v, u), lu),
    ):
        d = depth / across
        corners = [tuple(row(0, 0)), tuple(row(1, 0)), tuple(row(1, d)), tuple(row(0, d))]
        palace = scene.roof(corners, "gable", colour, height, instance=palace)


def _old_block(scene, rng, quad):
    p00, p10, p11, p01 = (np.array(p) for p in quad)
    paving = scene.jitter((0.55, 0.52, 0.47), 0.1)
    grass = rng.random() < 0.5  # a garden court is no look-alike; a paved one is
    court = scene.surface(
        paving,
        noise=0.06,
        blotch=0.1,
        ground=grass,
        lookalike=0 if grass else COURTYARD,
    )
    scene.polygon(quad, court)

    def at(u, v):
        return (1 - u) * (1 - v) * p00 + u * (1 - v) * p10 + u * v * p11 + (1 - u) * v * p01

    lu = np.linalg.norm(p10 - p00)
    lv = np.linalg.norm(p01 - p00)
    # four rows of houses along the block edges, each (u along the street, v into the block)
    rows = [
        lambda u, v: at(u, v),
        lambda u, v: at(1 - u, 1 - v),
        lambda u, v: at(v, 1 - u),
        lambda u, v: at(1 - v, u),
    ]
    lengths = [lu, lu, lv, lv]
    for row, length, across in zip(rows, lengths, [lv, lv, lu, lu]):
        u = 0.0
        while u < 1:
            w = rng.uniform(7, 16) / length
            depth = rng.uniform(8, 12) / across
            if rng.random() < 0.8:
                corners = [
                    tuple(row(u, 0)),
                    tuple(row(min(u + w, 1), 0)),
                    tuple(row(min(u + w, 1), depth)),
                    tuple(row(u, depth)),
                ]
                palette = rng.choice(["terracotta", "grey", "brown"], p=[0.7, 0.15, 0.15])
                roof = "gable" if rng.random() < 0.85 else "flat"
                scene.roof(
                    corners, roof, scene.jitter(scene.pick(palette), 0.08), rng.uniform(10, 18)
                )
            u += w
    for _ in range(rng.integers(0, 4)):
        scene.tree(*at(*rng.uniform(0.3, 0.7, 2)), rng.uniform(2, 4.5))


_LAYOUTS = {
    "gridtown": _gridtown,
    "suburbia": _suburbia,
    "farmland": _farmland,
    "alpine": _alpine,
    "oldtown": _oldtown,
}
