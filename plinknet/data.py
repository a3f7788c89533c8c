"""The Inria Aerial Image Labeling data (Section 3.1 of the paper): tiles, checks, crops.

Official layout (what the archive unpacks to)::

    AerialImageDataset/train/images/<city><n>.tif   RGB uint8, 5000 x 5000, 0.3 m
    AerialImageDataset/train/gt/<city><n>.tif       1 band, 0 = background, 255 = building

36 tiles for each of austin, chicago, kitsap, tyrol-w and vienna. The paper does not state
its split; like the literature and torchgeo, tiles 1-5 of every city are the validation set
(25 tiles) and tiles 6-36 the training set (155 tiles). Both are cut into 512 x 512 crops:
100 per tile on a regular grid, 15,500 training and 2,500 validation crops, which matches the
paper's "over 10000 training and more than 2000 test pictures". Training crops are drawn at a
random place and scale with flips and 90-degree rotations (the paper's "horizontal flip,
vertical flip, transformation"); validation crops are the fixed grid.

Where the work happens, so that the loader can feed a GPU: DataLoader workers do integer work
only (windowed uint8 reads, flips and quarter turns); the float conversion, the scale resize
and the ImageNet normalisation run batched on the training device in :func:`prepare_batch`.
A uint8 crop is a quarter of the bytes of a float32 one on its way to the GPU.

The download lives in :mod:`plinknet.download`.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

INRIA_CITIES = ("austin", "chicago", "kitsap", "tyrol-w", "vienna")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the encoder is an ImageNet-pretrained ResNet34
IMAGENET_STD = (0.229, 0.224, 0.225)
VAL_TILE_NUMBERS = range(1, 6)  # tiles 1-5 of each city: validation (literature, torchgeo)
MASK_PADDING = 255  # value of mask pixels outside the tile (crops of small tiles): not scored
GDAL_CACHE_BYTES = 64 * 2**20  # GDAL block cache per process: bounded, whatever the dataset size

INRIA_HOMEPAGE = "https://project.inria.fr/aerialimagelabeling/"
_TILE_NAME = re.compile(r"^([a-z][a-z-]*?)(\d+)\.tif$")
_SPLITS = ("train", "select", "val", "all")


class InriaDataError(ValueError):
    """A dataset folder or file is missing, unreadable or not what Inria tiles look like."""


@dataclass
class DataConfig:
    """How the Inria tiles become training and validation crops."""

    root: str = "data"  # holds AerialImageDataset/ (or is it)
    crop_size: int = 512  # the paper trains on 512 x 512 inputs ("usually resize to 512x512")
    samples_per_tile: int | None = None  # None: the grid count, 100 per 5000 px tile -> 15,500
    scale_range: tuple[float, float] = (0.9, 1.1)  # the "transformation" augmentation, mild zoom
    select_tiles: tuple[int, ...] = ()  # tile numbers held out of training to pick best.pt on
    cache_dir: str | None = None  # decoded uint8 tiles as memory-mapped .npy, shared by workers
    seed: int = 0  # with the epoch and the index, fixes every random crop


@dataclass
class Tile:
    """One image/mask pair of the dataset."""

    name: str  # file stem, e.g. "tyrol-w12"
    city: str  # e.g. "tyrol-w"
    number: int  # e.g. 12
    image_path: Path
    mask_path: Path
    height: int
    width: int


# ---------------------------------------------------------------------------- tiles on disk


def _open(path: Path):
    """Open a raster, quietly accepting files without georeference (the real crops have none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def _header(path: Path) -> tuple[int, str, int, int]:
    """(band count, dtype, height, width) of a raster, read from its header only."""
    try:
        with _open(path) as src:
            return src.count, src.dtypes[0], src.height, src.width
    except RasterioIOError as error:
        raise InriaDataError(
            f"cannot read {path}: not a readable GeoTIFF ({error}); delete it and fetch it again"
        ) from None


def _dataset_dir(root: Path) -> Path:
    if (root / "AerialImageDataset").is_dir():
        return root / "AerialImageDataset"
    if root.name == "AerialImageDataset" or (root / "train").is_dir():
        return root
    raise InriaDataError(
        f"no Inria dataset in {root}: expected {root}/AerialImageDataset/train/{{images,gt}}/ "
        f"(or root pointing at AerialImageDataset itself); get it with download_inria() "
        f"or by hand from {INRIA_HOMEPAGE}"
    )


def _tif_names(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InriaDataError(
            f"missing folder {folder}: the official layout is "
            f"AerialImageDataset/train/images/<city><n>.tif with masks of the same name in "
            f"AerialImageDataset/train/gt/"
        )
    names = {}
    for path in sorted(folder.glob("*.tif")):
        if not _TILE_NAME.match(path.name):
            raise InriaDataError(
                f"unexpected file name {path}: tiles are named <city><number>.tif, "
                f"e.g. austin1.tif or tyrol-w12.tif"
            )
        names[path.name] = path
    return names


def split_of(number: int, select_tiles: tuple[int, ...] = ()) -> str:
    """``"val"`` for tiles 1-5, ``"select"`` for the numbers in ``select_tiles``, else ``"train"``."""
    if number in VAL_TILE_NUMBERS:
        return "val"
    return "select" if number in select_tiles else "train"


def find_tiles(root: str | os.PathLike, split: str, select_tiles: tuple[int, ...] = ()) -> list[Tile]:
    """List and check the image/mask pairs of one split.

    Every file's header is opened (cheap; no pixel is decoded) so that a broken dataset fails
    here, at construction, rather than in the middle of an epoch. :func:`check_tiles` reads
    every pixel.

    Args:
        root: folder holding ``AerialImageDataset/``, or that folder itself.
        split: ``"train"`` (tiles 6 and up of each city, less ``select_tiles``), ``"select"``
            (the ``select_tiles``), ``"val"`` (tiles 1-5) or ``"all"``.
        select_tiles: tile numbers (6 and up) held out of training to choose the best
            checkpoint on, so that the validation tiles, which are reported, play no part in
            training. The paper states no split; ``()`` keeps every tile 6-36 for training.

    Returns:
        The tiles sorted by (city, number). Cities are whatever the file names say.

    Raises:
        InriaDataError: missing folder, unpaired file, unreadable file, image not 3-band
            uint8, mask not 1-band, image/mask size mismatch, or no tile in the split.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    base = _dataset_dir(Path(root))
    images = _tif_names(base / "train" / "images")
    masks = _tif_names(base / "train" / "gt")
    for name in sorted(images.keys() ^ masks.keys()):
        have, lack = ("images", "gt") if name in images else ("gt", "images")
        raise InriaDataError(
            f"{base / 'train' / have / name} has no partner {base / 'train' / lack / name}: "
            f"every image needs a mask of the same name and vice versa"
        )

    bad_select = [n for n in select_tiles if n in VAL_TILE_NUMBERS]
    if bad_select:
        raise ValueError(f"select_tiles {bad_select} are validation tiles (1-5); choose numbers 6 and up")
    tiles = []
    for name, image_path in images.items():
        city, number = _TILE_NAME.match(name).groups()
        number = int(number)
        if split != "all" and split_of(number, tuple(select_tiles)) != split:
            continue
        mask_path = masks[name]
        bands, dtype, height, width = _header(image_path)
        if bands != 3 or dtype != "uint8":
            raise InriaDataError(
                f"{image_path} has {bands} band(s) of {dtype}; expected a 3-band uint8 RGB image"
            )
        mask_bands, mask_dtype, mask_height, mask_width = _header(mask_path)
        if mask_bands != 1 or not np.issubdtype(mask_dtype, np.integer):
            raise InriaDataError(
                f"{mask_path} has {mask_bands} band(s) of {mask_dtype}; expected a 1-band "
                f"integer mask (0/255 or 0/1)"
            )
        if (mask_height, mask_width) != (height, width):
            raise InriaDataError(
                f"{mask_path} is {mask_height} x {mask_width} px but its image {image_path} is "
                f"{height} x {width}; a mask must cover its image exactly"
            )
        tiles.append(Tile(name[:-4], city, number, image_path, mask_path, height, width))

    if not tiles:
        which = {"train": "numbered 6 and up (less select_tiles)", "val": "numbered 1-5",
                 "select": f"numbered {list(select_tiles)}", "all": "at all"}[split]  # fmt: skip
        raise InriaDataError(
            f"no tile for split {split!r} in {base / 'train' / 'images'}: "
            f"this split takes the tiles {which} of each city"
        )
    return sorted(tiles, key=lambda tile: (tile.city, tile.number))


def _check_mask(mask: np.ndarray, path: Path) -> np.ndarray:
    """Map a mask's 0/255 (Inria) or 0/1 values to uint8 {0, 1}; anything else is an error."""
    if mask.size and (mask.max() > 1 or mask.min() < 0):
        bad = (mask != 0) & (mask != 255)
        if bad.any():
            values = np.unique(mask[bad])[:5].tolist()
            if values == [1]:
                raise InriaDataError(f"{path} holds both 1 and 255: a mask is 0/255 (Inria) or 0/1 throughout; "
                                     f"fix or re-export this mask")  # fmt: skip
            raise InriaDataError(
                f"{path} holds value(s) {values}: masks must be 0/255 (Inria) or 0/1; "
                f"fix or re-export this mask"
            )
        return (mask == 255).astype(np.uint8)
    return mask.astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a whole image tile, for evaluation and prediction of whole tiles.

    Returns:
        (H, W, 3) uint8 array.
    """
    path = Path(path)
    bands, dtype, _, _ = _header(path)
    if bands != 3 or dtype != "uint8":
        raise InriaDataError(f"{path} has {bands} band(s) of {dtype}; expected 3-band uint8 RGB")
    return np.ascontiguousarray(_read_all(path).transpose(1, 2, 0))  # (H, W, 3)


def _read_all(path: Path) -> np.ndarray:
    """Every band of a raster, (bands, H, W); a damaged file is an InriaDataError naming it."""
    try:
        with _open(path) as src:
            return src.read()
    except RasterioIOError as error:  # GDAL's "Read failed" does not name the file
        raise InriaDataError(f"cannot read every pixel of {path} ({str(error).splitlines()[0]}); the file is "
                             f"damaged: delete it and fetch it again") from None  # fmt: skip


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a whole mask tile and map 0/255 (or 0/1) to {0, 1}.

    Returns:
        (H, W) uint8 array in {0, 1}.
    """
    path = Path(path)
    bands, _, _, _ = _header(path)
    if bands != 1:
        raise InriaDataError(f"{path} has {bands} bands; expected a 1-band mask")
    return _check_mask(_read_all(path)[0], path)


def normalize(image_uint8_hwc: np.ndarray) -> torch.Tensor:
    """ImageNet-normalise an RGB image for the pretrained encoder.

    Args:
        image_uint8_hwc: (H, W, 3) uint8 array.

    Returns:
        (3, H, W) float32 tensor ``(x / 255 - mean) / std``.
    """
    image = np.asarray(image_uint8_hwc)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    return _normalize(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float())


def _normalize(image: torch.Tensor) -> torch.Tensor:
    # image: (3, H, W) float32 in [0, 255]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image / 255 - mean) / std


# ---------------------------------------------------------------------------- every pixel: checks, cache

CHECK_ROWS = 1024  # rows read at a time when checking a whole tile: bounded memory


def default_cache_root() -> Path:
    """``$PLINKNET_CACHE``, else ``~/.cache/plinknet``: where checks are remembered."""
    return Path(os.environ.get("PLINKNET_CACHE") or Path.home() / ".cache" / "plinknet")


def _file_key(*paths: Path) -> str:
    """A short hash of the files' absolute paths, sizes and modification times."""
    digest = hashlib.sha1()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def check_pair(image_path: str | os.PathLike, mask_path: str | os.PathLike) -> list[str]:
    """Every problem of one image/mask pair, found by reading every pixel of both.

    Checks: both readable to the last byte, the image 3-band uint8, the mask 1-band integer
    of the image's size, holding only 0/255 or 0/1. Memory stays bounded (``CHECK_ROWS``
    rows at a time).

    Returns:
        One message per problem, each naming the file; empty when the pair is sound.
    """
    image_path, mask_path = Path(image_path), Path(mask_path)
    problems = []
    headers = {}
    for path in (image_path, mask_path):
        try:
            headers[path] = _header(path)
        except InriaDataError as error:
            problems.append(str(error))
    if problems:
        return problems
    bands, dtype, height, width = headers[image_path]
    mask_bands, mask_dtype, mask_height, mask_width = headers[mask_path]
    if bands != 3 or dtype != "uint8":
        problems.append(f"{image_path} has {bands} band(s) of {dtype}; expected a 3-band uint8 RGB image")
    if mask_bands != 1 or not np.issubdtype(mask_dtype, np.integer):
        problems.append(f"{mask_path} has {mask_bands} band(s) of {mask_dtype}; expected a 1-band integer mask")
    if (mask_height, mask_width) != (height, width):
        problems.append(f"{mask_path} is {mask_height} x {mask_width} px but its image {image_path} is "
                        f"{height} x {width}; a mask must cover its image exactly")  # fmt: skip
    for path, is_mask in ((image_path, False), (mask_path, True)):
        conventions = set()  # the mask's values over the whole tile: {0, 1} or {0, 255}, never both
        try:
            with _open(path) as src:
                for row in range(0, src.height, CHECK_ROWS):
                    window = Window(0, row, src.width, min(CHECK_ROWS, src.height - row))
                    pixels = src.read(window=window)
                    if is_mask and mask_bands == 1:
                        _check_mask(pixels[0], path)
                        conventions |= {v for v in (1, 255) if (pixels[0] == v).any()}
            if conventions == {1, 255}:
                problems.append(f"{path} holds both 1 and 255: a mask is 0/255 (Inria) or 0/1 throughout; fix or "
                                f"re-export this mask")  # fmt: skip
        except RasterioIOError as error:
            problems.append(f"cannot read every pixel of {path} ({error}); the file is damaged: "
                            f"delete it and fetch it again")  # fmt: skip
        except InriaDataError as error:
            problems.append(str(error))
    return problems


def _pairs(root: str | os.PathLike) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, mask) paths of every tile, and the naming and pairing problems found on the way."""
    base = _dataset_dir(Path(root))
    problems, found = [], {}
    for kind in ("images", "gt"):
        folder = base / "train" / kind
        if not folder.is_dir():
            raise InriaDataError(f"missing folder {folder}: the official layout is "
                                 f"AerialImageDataset/train/{{images,gt}}/<city><n>.tif")  # fmt: skip
        found[kind] = {}
        for path in sorted(folder.glob("*.tif")):
            if _TILE_NAME.match(path.name):
                found[kind][path.name] = path
            else:
                problems.append(f"unexpected file name {path}: tiles are named <city><number>.tif")
    images, masks = found["images"], found["gt"]
    for name in sorted(images.keys() ^ masks.keys()):
        have, lack = ("images", "gt") if name in images else ("gt", "images")
        problems.append(f"{base / 'train' / have / name} has no partner in {base / 'train' / lack}")
    return [(images[name], masks[name]) for name in sorted(images.keys() & masks.keys())], problems


def count_tiles(root: str | os.PathLike) -> int:
    """The image/mask pairs of a dataset folder (what :func:`check_tiles` reads)."""
    return len(_pairs(root)[0])


def check_tiles(
    root: str | os.PathLike,
    *,
    progress: bool = True,
    memo_dir: str | os.PathLike | None = None,
    shard: tuple[int, int] = (0, 1),
) -> list[str]:
    """Read every pixel of every tile and report every problem at once (``plinknet check-data``).

    A pair found sound is remembered by its files' paths, sizes and modification times in
    ``memo_dir`` (default ``<default_cache_root()>/checked``), so that a rerun skips it.

    Args:
        root: folder holding ``AerialImageDataset/``, or that folder itself.
        progress: a tqdm bar over tiles.
        memo_dir: where sound pairs are remembered; None for the default.
        shard: ``(rank, world_size)``: check only every ``world_size``-th pair (for DDP).

    Returns:
        One message per problem (empty: every tile is sound). Naming and pairing problems are
        reported by every shard.

    Raises:
        InriaDataError: no dataset folder at all.
    """
    from tqdm import tqdm

    pairs, problems = _pairs(root)
    if not pairs and not problems:
        problems.append(f"no tile in {_dataset_dir(Path(root)) / 'train'}: images/ and gt/ hold no <city><n>.tif "
                        f"pair; an empty dataset is not a sound one")  # fmt: skip
    # "checked-v2": verdicts of the check before masks were judged whole (1 and 255 in different blocks) are void
    memo = Path(memo_dir) if memo_dir is not None else default_cache_root() / "checked-v2"
    rank, world_size = shard
    todo = pairs[rank::world_size]
    for image_path, mask_path in tqdm(todo, desc="checking tiles", unit="tile", disable=not progress):
        marker = memo / _file_key(image_path, mask_path)
        if marker.exists():
            continue
        found = check_pair(image_path, mask_path)
        problems += found
        if not found:
            try:
                memo.mkdir(parents=True, exist_ok=True)
                marker.touch()
            except OSError:  # a read-only home: check again next time, no harm done
                pass
    return problems


def _cache_paths(tile: Tile, cache_dir: Path) -> tuple[Path, Path]:
    key = _file_key(tile.image_path, tile.mask_path)
    return cache_dir / f"{tile.name}-{key}.image.npy", cache_dir / f"{tile.name}-{key}.mask.npy"


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as file:
        np.save(file, array)
    os.replace(tmp, path)


def build_cache(tiles: list[Tile], cache_dir: str | os.PathLike, progress: bool = True) -> None:
    """Decode each tile once into uint8 ``.npy`` files in ``cache_dir`` (skipping those there).

    ``<name>-<key>.image.npy`` holds (3, H, W) pixels and ``<name>-<key>.mask.npy`` (1, H, W)
    in {0, 1}; the key follows the source files' paths, sizes and modification times, so an
    edited tile is decoded again (older files of the same tile are deleted). Files are written
    under a temporary name and renamed, so concurrent builders and interruptions are safe.
    About 100 MB per 5000 x 5000 tile: 18 GB for Inria's 180 tiles.
    """
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [tile for tile in tiles if not all(p.exists() for p in _cache_paths(tile, cache_dir))]
    for tile in tqdm(missing, desc="caching tiles", unit="tile", disable=not progress):
        image_path, mask_path = _cache_paths(tile, cache_dir)
        stale = re.compile(rf"^{re.escape(tile.name)}-[0-9a-f]{{16}}\.(image|mask)\.npy$")
        for old in cache_dir.iterdir():
            if stale.match(old.name) and old not in (image_path, mask_path):
                old.unlink(missing_ok=True)
        _save_atomic(mask_path, read_mask(tile.mask_path)[None])
        with _open(tile.image_path) as src:
            _save_atomic(image_path, src.read())  # (3, H, W)


def cached_tile(tile: Tile, cache_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Memory maps (3, H, W) and (1, H, W) of a tile in the cache, built first if missing."""
    image_path, mask_path = _cache_paths(tile, Path(cache_dir))
    if not (image_path.exists() and mask_path.exists()):
        build_cache([tile], cache_dir, progress=False)
    return np.load(image_path, mmap_mode="r"), np.load(mask_path, mmap_mode="r")


# ---------------------------------------------------------------------------- crops


def grid_windows(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """Top-left corners of a grid of ``size`` x ``size`` windows covering every pixel.

    ``ceil(L / size)`` positions per axis, evenly spaced, the first at 0 and the last flush
    with the edge: neighbours overlap a little and nothing is padded. A 5000 x 5000 tile with
    ``size=512`` gives 10 x 10 = 100 windows. An axis shorter than ``size`` gets one window at
    0 (the crop is then padded).

    Returns:
        ``[(row, col), ...]`` in row-major order.
    """

    def starts(length: int) -> list[int]:
        count = math.ceil(length / size)
        if count <= 1:
            return [0]
        return [round(k * (length - size) / (count - 1)) for k in range(count)]

    return [(row, col) for row in starts(height) for col in starts(width)]


def _flip_and_turn(array: np.ndarray, flip_h: bool, flip_v: bool, quarter_turns: int) -> np.ndarray:
    """Flips and quarter turns of a (bands, h, w) array, as views (no pixel is copied here)."""
    if flip_h:
        array = array[:, :, ::-1]
    if flip_v:
        array = array[:, ::-1, :]
    return np.rot90(array, quarter_turns, axes=(1, 2))


class InriaDataset(torch.utils.data.Dataset):
    """Inria tiles served as uint8 crops read window by window; see :func:`prepare_batch`.

    Training (``split="train"``): ``samples_per_tile`` crops per tile per epoch, numbered tile
    after tile (with the default, each tile gets its own grid count). Each crop lies at a
    random place; with augmentation it covers ``side = round(crop_size * s)`` source pixels,
    ``s`` uniform in ``scale_range``, and is flipped horizontally and/or vertically and turned
    by a multiple of 90 degrees. All randomness comes from a generator seeded by
    ``(seed, epoch, i)``: a crop is the same whichever worker reads it and in whatever order,
    so training is reproducible. Call ``set_epoch`` before each epoch (before creating the
    DataLoader iterator: workers copy the dataset when they start).

    Validation (``split="val"`` or ``"select"``): the :func:`grid_windows` of every tile, no
    augmentation.

    A worker only reads, flips and turns uint8 pixels. The ``side`` x ``side`` region is
    returned at the top-left of a ``read_size`` x ``read_size`` buffer (``read_size`` is
    ``ceil(crop_size * max scale)`` with scale augmentation, else ``crop_size``), so that
    crops of different scales stack into one batch; :func:`prepare_batch` resizes each region
    to ``crop_size`` on the device. Mask pixels outside the source tile (the buffer's margin,
    tiles smaller than the crop) hold ``MASK_PADDING`` (255) and are left out of the loss and
    of the metrics; image pixels there are 0.

    Masks may hold 0/255 (Inria) or 0/1; any other value raises ``InriaDataError`` naming
    the file when the pixels are read (:func:`check_tiles` finds them all before training).

    Args:
        root: folder holding ``AerialImageDataset/``, or that folder itself.
        split: ``"train"``, ``"select"`` or ``"val"`` (see :func:`find_tiles`).
        crop_size: side of the square crops the network sees, in pixels.
        samples_per_tile: training crops per tile per epoch; None gives each tile its grid
            count (100 for 5000 px tiles with 512 px crops).
        augment: random scale, flips and rotations; None means True for train only.
        cache_dir: None reads the GeoTIFFs window by window (GDAL's block cache bounded to
            ``GDAL_CACHE_BYTES`` per process). A folder: each tile is decoded once into
            uint8 ``.npy`` files there (about 100 MB per 5000 px tile) and memory-mapped, so
            that all workers share one copy through the page cache; see :func:`build_cache`.
        seed: base seed of the crop generator.
        scale_range: range of the random scale ``s``.
        select_tiles: see :func:`find_tiles`.

    Each item is a dict: ``image`` (3, read_size, read_size) uint8, ``mask`` (1, read_size,
    read_size) uint8 in {0, 1, 255}, ``side`` (int64: source pixels the crop spans), ``city``
    and ``tile`` (str) and ``window``, an int64 tensor ``[row, col, height, width]`` of the
    source window.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        crop_size: int = 512,
        samples_per_tile: int | None = None,
        augment: bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        seed: int = 0,
        scale_range: tuple[float, float] = (0.9, 1.1),
        select_tiles: tuple[int, ...] = (),
    ):
        if split not in ("train", "select", "val"):
            raise ValueError(f"split must be 'train', 'select' or 'val', got {split!r}")
        if crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        if samples_per_tile is not None and samples_per_tile < 1:
            raise ValueError(f"samples_per_tile must be at least 1 (or None), got {samples_per_tile}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high: {scale_range}")
        self.tiles = find_tiles(root, split, tuple(select_tiles))
        self.split = split
        self.crop_size = crop_size
        self.augment = split == "train" if augment is None else augment
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.seed = seed
        self.scale_range = tuple(scale_range)
        self.epoch = 0
        scaled = self.augment and split == "train" and self.scale_range != (1.0, 1.0)
        self.read_size = max(crop_size, math.ceil(crop_size * self.scale_range[1])) if scaled else crop_size

        # val: (tile index, (row, col)) of every crop, in order; train draws its windows instead
        self.windows: list[tuple[int, tuple[int, int]]] = []
        if split != "train":
            self.windows = [
                (t, corner)
                for t, tile in enumerate(self.tiles)
                for corner in grid_windows(tile.height, tile.width, crop_size)
            ]
            counts = [0] * len(self.tiles)
            for t, _ in self.windows:
                counts[t] += 1
        elif samples_per_tile is None:
            counts = [len(grid_windows(t.height, t.width, crop_size)) for t in self.tiles]
        else:
            counts = [samples_per_tile] * len(self.tiles)
        self._ends = np.cumsum(counts).tolist()  # item i belongs to the first tile with i < end
        self.samples_per_tile = samples_per_tile

        self._handles: dict[Path, rasterio.io.DatasetReader] = {}  # opened lazily, per process
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # memory maps of the cache
        self._pid = os.getpid()

    @classmethod
    def from_config(cls, config: DataConfig, split: str, augment: bool | None = None) -> InriaDataset:
        """Build the ``split`` dataset from a :class:`DataConfig`."""
        return cls(
            config.root,
            split,
            crop_size=config.crop_size,
            samples_per_tile=config.samples_per_tile if split == "train" else None,
            augment=augment,
            cache_dir=config.cache_dir,
            seed=config.seed,
            scale_range=config.scale_range,
            select_tiles=config.select_tiles,
        )

    def __len__(self) -> int:
        return self._ends[-1]

    def set_epoch(self, epoch: int) -> None:
        """Draw a new set of training crops (they depend on ``(seed, epoch, index)``)."""
        self.epoch = epoch

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"], state["_arrays"] = {}, {}  # never ship open files or maps to workers
        return state

    def draw(self, index: int) -> dict:
        """Where crop ``index`` comes from and how it is augmented, without reading a pixel.

        Returns:
            ``{"tile": t, "row", "col", "height", "width"`` (the source window), ``"side"``
            (source pixels spanned by the crop), ``"flip_h", "flip_v", "quarter_turns"}``.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} crops")
        crop = self.crop_size
        if self.split != "train":
            t, (row, col) = self.windows[index]
            tile, side = self.tiles[t], crop
            height, width = min(crop, tile.height), min(crop, tile.width)
            rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment else None
        else:
            t = bisect.bisect_right(self._ends, index)
            tile = self.tiles[t]
            rng = np.random.default_rng([self.seed, self.epoch, index])
            scale = rng.uniform(*self.scale_range) if self.augment else 1.0
            side = min(self.read_size, max(1, round(crop * scale)))
            height, width = min(side, tile.height), min(side, tile.width)
            row = int(rng.integers(0, tile.height - height + 1))
            col = int(rng.integers(0, tile.width - width + 1))
        flips = (False, False, 0)
        if self.augment:
            flips = (bool(rng.random() < 0.5), bool(rng.random() < 0.5), int(rng.integers(4)))
        return dict(zip(("tile", "row", "col", "height", "width", "side", "flip_h", "flip_v", "quarter_turns"),
                        (t, row, col, height, width, side, *flips)))  # fmt: skip

    def __getitem__(self, index: int) -> dict:
        d = self.draw(index)
        tile = self.tiles[d["tile"]]
        image, mask = self.read_window(d["tile"], d["row"], d["col"], d["height"], d["width"])
        image = _flip_and_turn(image, d["flip_h"], d["flip_v"], d["quarter_turns"])  # (3, h', w') view
        mask = _flip_and_turn(mask, d["flip_h"], d["flip_v"], d["quarter_turns"])  # (1, h', w') view
        size = self.read_size
        h, w = image.shape[1:]
        if (h, w) == (size, size):
            image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask)
        else:  # the region at the top-left of a fixed-size buffer, so that crops stack
            image_buffer = np.zeros((3, size, size), np.uint8)
            mask_buffer = np.full((1, size, size), MASK_PADDING, np.uint8)
            image_buffer[:, :h, :w], mask_buffer[:, :h, :w] = image, mask
            image, mask = image_buffer, mask_buffer
        return {
            "image": torch.from_numpy(image),  # (3, size, size) uint8
            "mask": torch.from_numpy(mask),  # (1, size, size) uint8: 0, 1, or 255 outside the tile
            "side": torch.tensor(d["side"]),
            "city": tile.city,
            "tile": tile.name,
            "window": torch.tensor([d["row"], d["col"], d["height"], d["width"]]),
        }

    def read_window(self, t: int, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of a window of tile ``t``: (3, h, w) uint8 image, (1, h, w) uint8 mask in {0, 1}."""
        if os.getpid() != self._pid:  # forked into a DataLoader worker: open our own files
            self._handles, self._arrays, self._pid = {}, {}, os.getpid()
            worker_init()
        tile = self.tiles[t]
        if self.cache_dir is not None:
            if t not in self._arrays:
                self._arrays[t] = cached_tile(tile, self.cache_dir)
            image, mask = self._arrays[t]  # (3, H, W), (1, H, W) memory maps
            rows, cols = slice(row, row + height), slice(col, col + width)
            return image[:, rows, cols], mask[:, rows, cols]
        window = Window(col, row, width, height)
        try:
            image = self._handle(tile.image_path).read(window=window)  # (3, h, w)
            mask = self._handle(tile.mask_path).read(1, window=window)  # (h, w)
        except RasterioIOError as error:
            raise InriaDataError(f"cannot read rows {row}-{row + height} of {tile.name} ({error}); "
                                 f"run `plinknet check-data` on the dataset") from None  # fmt: skip
        return image, _check_mask(mask, tile.mask_path)[None]

    def _handle(self, path: Path):
        if path not in self._handles:
            self._handles[path] = _open(path)
        return self._handles[path]


def collate_crops(items: list[dict]) -> dict:
    """Stack :class:`InriaDataset` items into a batch with plain memory copies.

    The same result as ``torch.utils.data.default_collate``, but through ``numpy.stack``:
    ``torch.stack`` of uint8 crops runs a multi-threaded kernel that, on a busy machine with
    few cores (a DataLoader without workers, next to training), took 250 ms per batch of 16
    where the copies take 3 ms.
    """
    batch = {key: torch.from_numpy(np.stack([item[key].numpy() for item in items]))
             for key in ("image", "mask", "window")}  # fmt: skip
    batch["side"] = torch.tensor([int(item["side"]) for item in items])
    batch["city"] = [item["city"] for item in items]
    batch["tile"] = [item["tile"] for item in items]
    return batch


def worker_init(worker_id: int | None = None) -> None:
    """Bound GDAL's block cache in this process; :class:`InriaDataset` calls it in every worker it finds itself in."""
    rasterio.env.set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_BYTES)


# ---------------------------------------------------------------------------- on the device


@functools.lru_cache(maxsize=16)
def _imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 1, 1) mean and std of 0-255 pixels, made once per device: no host-to-device copy per batch."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    return mean, std


def normalize_batch(image: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of a (B, 3, H, W) batch of 0-255 values, on its own device."""
    mean, std = _imagenet_stats(image.device)
    return (image.float() - mean) / std


def resize_regions(
    image: torch.Tensor, mask: torch.Tensor, side: torch.Tensor, crop_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize the top-left ``side`` x ``side`` region of each buffer to ``crop_size``, batched.

    Output pixel ``i`` (of ``crop_size``) samples the source at ``(i + 0.5) * side / crop_size
    - 0.5``, centre-aligned: bilinear for the image (``grid_sample``, ``align_corners=False``,
    the same grid as ``F.interpolate(..., "bilinear")``) and nearest for the mask with
    ``floor((i + 0.5) * side / crop_size)``, PyTorch's ``"nearest-exact"``. Plain
    ``"nearest"`` (``floor(i * side / crop_size)``) would shift the mask by up to half a
    source pixel against its image.

    Args:
        image: (B, 3, S, S) float.
        mask: (B, 1, S, S) any dtype.
        side: (B,) int, each at most S.
        crop_size: output side.

    Returns:
        (B, 3, crop, crop) float image and (B, 1, crop, crop) mask of ``mask``'s dtype.
    """
    batch, size = image.shape[0], image.shape[-1]
    side = side.to(image.device, torch.float32)
    scale = side / size  # (B,)
    theta = torch.zeros(batch, 2, 3, device=image.device)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, 0, 2] = theta[:, 1, 2] = scale - 1  # the region's centre, in [-1, 1] coordinates
    grid = F.affine_grid(theta, (batch, 1, crop_size, crop_size), align_corners=False)  # (B, c, c, 2)
    # keep samples within the region's outer pixel centres (edge pixels repeat, as in F.interpolate)
    low, high = 1 / size - 1, ((2 * side - 1) / size - 1)[:, None, None, None]
    grid = torch.minimum(grid.clamp_min(low), high)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    centres = torch.arange(crop_size, device=image.device, dtype=torch.float64) + 0.5  # (crop,)
    index = torch.floor(centres[None] * side.double()[:, None] / crop_size).long()  # (B, crop)
    index = torch.minimum(index, side.long()[:, None] - 1)
    rows = torch.arange(batch, device=image.device)[:, None, None]
    mask = mask[:, 0][rows, index[:, :, None], index[:, None, :]][:, None]  # (B, 1, crop, crop)
    return image, mask


def prepare_batch(
    batch: dict, device: torch.device, crop_size: int, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn a collated uint8 batch of :class:`InriaDataset` into network inputs on ``device``.

    The copy to the device is non-blocking (from pinned memory when the DataLoader pins);
    the resize of scale-augmented crops, the float conversion and the normalisation then run
    batched on the device.

    Returns:
        ``image`` (B, 3, crop, crop) float32 normalised (channels_last on CUDA if asked),
        ``target`` (B, 1, crop, crop) float32 in {0, 1} and ``valid`` (B, 1, crop, crop) bool,
        False on pixels outside the source tile.
    """
    non_blocking = device.type == "cuda"
    image = batch["image"].to(device, non_blocking=non_blocking)  # (B, 3, S, S) uint8
    mask = batch["mask"].to(device, non_blocking=non_blocking)  # (B, 1, S, S) uint8
    side = batch["side"]  # (B,) on the host: the test below costs no device sync
    if image.shape[-1] != crop_size or bool((side != crop_size).any()):
        side = side.to(device, non_blocking=non_blocking)
        image, mask = resize_regions(image.float(), mask, side, crop_size)
    image = normalize_batch(image)  # (B, 3, crop, crop) float32
    if channels_last and device.type == "cuda":
        image = image.contiguous(memory_format=torch.channels_last)
    valid = mask != MASK_PADDING
    return image, (mask == 1).float(), valid
