"""Inria tiles: the names, the split, finding them on disk and reading them whole."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

INRIA_CITIES = ("austin", "chicago", "kitsap", "tyrol-w", "vienna")


VAL_TILE_NUMBERS = range(1, 6)  # tiles 1-5 of each city: validation (literature, torchgeo)


MASK_PADDING = 255  # value of mask pixels outside the tile (crops of small tiles): not scored


GDAL_CACHE_BYTES = 64 * 2**20  # GDAL block cache per process: bounded, whatever the dataset size


INRIA_HOMEPAGE = "https://project.inria.fr/aerialimagelabeling/"


_TILE_NAME = re.compile(r"^([a-z][a-z-]*?)(\d+)\.tif$")


_SPLITS = ("train", "select", "val", "all")


class InriaDataError(ValueError):
    """A dataset folder or file is missing, unreadable or not what Inria tiles look like."""


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


def pair_tiles(root: str | os.PathLike) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, mask) paths of every tile of a dataset, and the naming and pairing problems found on the way.

    The one place the layout is checked: :func:`find_tiles` refuses the first problem,
    :func:`~plinknet.data.checks.check_tiles` lists them all.

    Raises:
        InriaDataError: no dataset in ``root``, or its images or gt folder is missing.
    """
    base = _dataset_dir(Path(root))
    problems, found = [], {}
    for kind in ("images", "gt"):
        folder = base / "train" / kind
        if not folder.is_dir():
            raise InriaDataError(f"missing folder {folder}: the official layout is "
                                 f"AerialImageDataset/train/images/<city><n>.tif with masks of the same name in "
                                 f"AerialImageDataset/train/gt/")  # fmt: skip
        found[kind] = {}
        for path in sorted(folder.glob("*.tif")):
            if _TILE_NAME.match(path.name):
                found[kind][path.name] = path
            else:
                problems.append(f"unexpected file name {path}: tiles are named <city><number>.tif, "
                                f"e.g. austin1.tif or tyrol-w12.tif")  # fmt: skip
    images, masks = found["images"], found["gt"]
    for name in sorted(images.keys() ^ masks.keys()):
        have, lack = ("images", "gt") if name in images else ("gt", "images")
        problems.append(f"{base / 'train' / have / name} has no partner {base / 'train' / lack / name}: "
                        f"every image needs a mask of the same name and vice versa")  # fmt: skip
    return [(images[name], masks[name]) for name in sorted(images.keys() & masks.keys())], problems


def header_problems(image_path: Path, mask_path: Path) -> tuple[list[str], dict[Path, tuple] | None]:
    """What the headers of an image/mask pair say is wrong (no pixel decoded).

    Returns:
        The problems, each naming its file, and the (bands, dtype, height, width) of both files
        by path, or None when a header cannot be read.
    """
    headers, problems = {}, []
    for path in (image_path, mask_path):
        try:
            headers[path] = _header(path)
        except InriaDataError as error:
            problems.append(str(error))
    if problems:
        return problems, None
    (bands, dtype, height, width), (mask_bands, mask_dtype, mask_height, mask_width) = headers.values()
    if bands != 3 or dtype != "uint8":
        problems.append(f"{image_path} has {bands} band(s) of {dtype}; expected a 3-band uint8 RGB image")
    if mask_bands != 1 or not np.issubdtype(mask_dtype, np.integer):
        problems.append(f"{mask_path} has {mask_bands} band(s) of {mask_dtype}; expected a 1-band "
                        f"integer mask (0/255 or 0/1)")  # fmt: skip
    if (mask_height, mask_width) != (height, width):
        problems.append(f"{mask_path} is {mask_height} x {mask_width} px but its image {image_path} is "
                        f"{height} x {width}; a mask must cover its image exactly")  # fmt: skip
    return problems, headers


def split_of(number: int, select_tiles: tuple[int, ...] = ()) -> str:
    """``"val"`` for tiles 1-5, ``"select"`` for the numbers in ``select_tiles``, else ``"train"``."""
    if number in VAL_TILE_NUMBERS:
        return "val"
    return "select" if number in select_tiles else "train"


def split_words(select_tiles: tuple[int, ...] = (6,), tiles_per_city: int = 36) -> dict[str, str]:
    """The split in words, for pages and messages to print rather than type: ``{"val": "tiles 1-5 of each city",
    "select": "tile 6 of each city", "train": "tiles 7-36 of each city"}`` for Inria and the recipes' ``select_tiles``
    (``select`` is absent when ``select_tiles`` is empty)."""

    def spans(numbers: list[int]) -> str:
        runs: list[list[int]] = []
        for n in numbers:
            if runs and n == runs[-1][-1] + 1:
                runs[-1].append(n)
            else:
                runs.append([n])
        text = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
        return f"tile{'s' if len(numbers) > 1 else ''} {text} of each city"

    numbers = range(1, tiles_per_city + 1)
    words = {split: spans([n for n in numbers if split_of(n, tuple(select_tiles)) == split])
             for split in ("val", "select", "train")}  # fmt: skip
    return {k: v for k, v in words.items() if k != "select" or select_tiles}


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
    pairs, problems = pair_tiles(root)
    if problems:
        raise InriaDataError(problems[0])
    bad_select = [n for n in select_tiles if n in VAL_TILE_NUMBERS]
    if bad_select:
        raise ValueError(f"select_tiles {bad_select} are validation tiles (1-5); choose numbers 6 and up")
    tiles = []
    for image_path, mask_path in pairs:
        city, number = _TILE_NAME.match(image_path.name).groups()
        if split != "all" and split_of(int(number), tuple(select_tiles)) != split:
            continue
        problems, headers = header_problems(image_path, mask_path)
        if problems:
            raise InriaDataError(problems[0])
        _, _, height, width = headers[image_path]
        tiles.append(Tile(image_path.stem, city, int(number), image_path, mask_path, height, width))

    if not tiles:
        which = {"train": "numbered 6 and up (less select_tiles)", "val": "numbered 1-5",
                 "select": f"numbered {list(select_tiles)}", "all": "at all"}[split]  # fmt: skip
        raise InriaDataError(
            f"no tile for split {split!r} in {_dataset_dir(Path(root)) / 'train' / 'images'}: "
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

