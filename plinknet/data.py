"""The Inria Aerial Image Labeling data (Section 3.1 of the paper): tiles, crops, download.

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
"""

from __future__ import annotations

import bisect
import hashlib
import http.client
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
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

INRIA_HOMEPAGE = "https://project.inria.fr/aerialimagelabeling/"
_TILE_NAME = re.compile(r"^([a-z][a-z-]*?)(\d+)\.tif$")
_SPLITS = ("train", "val", "all")


class InriaDataError(ValueError):
    """A dataset folder or file is missing, unreadable or not what Inria tiles look like."""


class InriaDownloadError(RuntimeError):
    """The archive could not be downloaded, verified or extracted."""


@dataclass
class DataConfig:
    """How the Inria tiles become training and validation crops."""

    root: str = "data"  # holds AerialImageDataset/ (or is it)
    crop_size: int = 512  # the paper trains on 512 x 512 inputs ("usually resize to 512x512")
    samples_per_tile: int | None = None  # None: the grid count, 100 per 5000 px tile -> 15,500
    scale_range: tuple[float, float] = (0.9, 1.1)  # the "transformation" augmentation, mild zoom
    cache: bool = False  # keep decoded tiles in RAM: ~75 MB per tile per worker process
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


def find_tiles(root: str | os.PathLike, split: str) -> list[Tile]:
    """List and check the image/mask pairs of one split.

    Every file's header is opened (cheap; no pixel is decoded) so that a broken dataset fails
    here, at construction, rather than in the middle of an epoch.

    Args:
        root: folder holding ``AerialImageDataset/``, or that folder itself.
        split: ``"train"`` (tiles 6 and up of each city), ``"val"`` (tiles 1-5) or ``"all"``.

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

    tiles = []
    for name, image_path in images.items():
        city, number = _TILE_NAME.match(name).groups()
        number = int(number)
        in_val = number in VAL_TILE_NUMBERS
        if (split == "val" and not in_val) or (split == "train" and in_val):
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
        which = {"train": "numbered 6 and up", "val": "numbered 1-5", "all": "at all"}[split]
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
    with _open(path) as src:
        return np.ascontiguousarray(src.read().transpose(1, 2, 0))  # (H, W, 3)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a whole mask tile and map 0/255 (or 0/1) to {0, 1}.

    Returns:
        (H, W) uint8 array in {0, 1}.
    """
    path = Path(path)
    bands, _, _, _ = _header(path)
    if bands != 1:
        raise InriaDataError(f"{path} has {bands} bands; expected a 1-band mask")
    with _open(path) as src:
        return _check_mask(src.read(1), path)


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


class InriaDataset(torch.utils.data.Dataset):
    """Inria tiles served as fixed-size crops with windowed GeoTIFF reads.

    Training (``split="train"``): ``samples_per_tile`` crops per tile per epoch, numbered tile
    after tile (crop ``i`` comes from tile ``i // samples_per_tile``; with the default, each
    tile gets its own grid count). The crop lies at a random place; with augmentation it covers
    ``round(crop_size * s)`` pixels, ``s`` uniform in ``scale_range``, resized back to
    ``crop_size`` (bilinear for the image, nearest for the mask), then flipped horizontally
    and/or vertically and rotated by a multiple of 90 degrees. All randomness comes from a
    generator seeded by ``(seed, epoch, i)``: a crop is the same whichever worker reads it and
    in whatever order, so training is reproducible. Call ``set_epoch`` before each epoch
    (before creating the DataLoader iterator: workers copy the dataset when they start).

    Validation (``split="val"``): the :func:`grid_windows` of every tile, no augmentation.

    Tiles smaller than the crop are read whole and padded at the bottom and right with a
    constant (``F.pad``, not rasterio boundless reads): image 0 (black) before normalisation,
    mask 0 (background). The ``window`` entry tells which source pixels the crop holds.

    Masks may hold 0/255 (Inria) or 0/1; any other value raises ``InriaDataError`` when the
    pixels are read.

    Args:
        root: folder holding ``AerialImageDataset/``, or that folder itself.
        split: ``"train"`` or ``"val"`` (see :func:`find_tiles`).
        crop_size: side of the square crops, in pixels.
        samples_per_tile: training crops per tile per epoch; None gives each tile its grid
            count (100 for 5000 px tiles with 512 px crops).
        augment: random scale, flips and rotations; None means True for train, False for val.
        cache: keep each tile's decoded uint8 image and mask in memory (per process) after
            its first use; faster, ~75 MB per 5000 px tile.
        seed: base seed of the crop generator.
        scale_range: range of the random scale ``s``.

    Each item is a dict: ``image`` (3, crop, crop) float32 ImageNet-normalised, ``mask``
    (1, crop, crop) float32 in {0, 1}, ``city`` and ``tile`` (str) and ``window``, an int64
    tensor ``[row, col, height, width]`` of the source window.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        crop_size: int = 512,
        samples_per_tile: int | None = None,
        augment: bool | None = None,
        cache: bool = False,
        seed: int = 0,
        scale_range: tuple[float, float] = (0.9, 1.1),
    ):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high: {scale_range}")
        self.tiles = find_tiles(root, split)
        self.split = split
        self.crop_size = crop_size
        self.augment = split == "train" if augment is None else augment
        self.cache = cache
        self.seed = seed
        self.scale_range = tuple(scale_range)
        self.epoch = 0

        # val: (tile index, (row, col)) of every crop, in order; train draws its windows instead
        self.windows: list[tuple[int, tuple[int, int]]] = []
        if split == "val":
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
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # cache=True: decoded tiles
        self._pid = os.getpid()

    @classmethod
    def from_config(cls, config: DataConfig, split: str) -> InriaDataset:
        """Build the ``split`` dataset from a :class:`DataConfig`."""
        return cls(
            config.root,
            split,
            crop_size=config.crop_size,
            samples_per_tile=config.samples_per_tile,
            cache=config.cache,
            seed=config.seed,
            scale_range=config.scale_range,
        )

    def __len__(self) -> int:
        return self._ends[-1]

    def set_epoch(self, epoch: int) -> None:
        """Draw a new set of training crops (they depend on ``(seed, epoch, index)``)."""
        self.epoch = epoch

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"], state["_arrays"] = {}, {}  # never ship open files or tiles to workers
        return state

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} crops")
        crop = self.crop_size
        if self.split == "val":
            t, (row, col) = self.windows[index]
            tile = self.tiles[t]
            height, width = min(crop, tile.height), min(crop, tile.width)
            out_size = (height, width)
            rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment else None
        else:
            t = bisect.bisect_right(self._ends, index)
            tile = self.tiles[t]
            rng = np.random.default_rng([self.seed, self.epoch, index])
            scale = rng.uniform(*self.scale_range) if self.augment else 1.0
            side = max(1, round(crop * scale))  # pixels read, resized to crop_size below
            height, width = min(side, tile.height), min(side, tile.width)
            row = int(rng.integers(0, tile.height - height + 1))
            col = int(rng.integers(0, tile.width - width + 1))
            out_size = (
                min(crop, round(height * crop / side)),
                min(crop, round(width * crop / side)),
            )

        image, mask = self._read(t, row, col, height, width)  # (h, w, 3), (h, w) uint8
        image = torch.from_numpy(image).permute(2, 0, 1).float()  # (3, h, w) in [0, 255]
        mask = torch.from_numpy(mask)[None].float()  # (1, h, w) in {0, 1}
        if out_size != (height, width):
            image = F.interpolate(image[None], out_size, mode="bilinear", align_corners=False)[0]
            mask = F.interpolate(mask[None], out_size, mode="nearest")[0]
        if self.augment:
            if rng.random() < 0.5:
                image, mask = image.flip(2), mask.flip(2)  # horizontal flip
            if rng.random() < 0.5:
                image, mask = image.flip(1), mask.flip(1)  # vertical flip
            quarter_turns = int(rng.integers(4))
            image, mask = image.rot90(quarter_turns, (1, 2)), mask.rot90(quarter_turns, (1, 2))
        pad = (0, crop - image.shape[2], 0, crop - image.shape[1])  # right, bottom
        image = F.pad(image, pad, value=0.0)  # (3, crop, crop), 0 = black before normalising
        mask = F.pad(mask, pad, value=0.0)  # (1, crop, crop), padding is background
        return {
            "image": _normalize(image).contiguous(),
            "mask": mask.contiguous(),
            "city": tile.city,
            "tile": tile.name,
            "window": torch.tensor([row, col, height, width]),
        }

    def _read(self, t: int, row: int, col: int, height: int, width: int):
        """Pixels of window (row, col, height, width) of tile t: (h, w, 3) and (h, w) uint8."""
        if os.getpid() != self._pid:  # forked into a DataLoader worker: open our own files
            self._handles, self._arrays, self._pid = {}, {}, os.getpid()
        tile = self.tiles[t]
        if self.cache:
            if t not in self._arrays:
                self._arrays[t] = (read_image(tile.image_path), read_mask(tile.mask_path))
            image, mask = self._arrays[t]
            rows, cols = slice(row, row + height), slice(col, col + width)
            return image[rows, cols], mask[rows, cols]
        window = Window(col, row, width, height)
        image = self._handle(tile.image_path).read(window=window).transpose(1, 2, 0)
        mask = _check_mask(self._handle(tile.mask_path).read(1, window=window), tile.mask_path)
        return np.ascontiguousarray(image), mask

    def _handle(self, path: Path):
        if path not in self._handles:
            self._handles[path] = _open(path)
        return self._handles[path]


# ---------------------------------------------------------------------------- download

INRIA_BASE_URL = "https://files.inria.fr/aerialimagelabeling/"
INRIA_URLS = tuple(f"{INRIA_BASE_URL}aerialimagelabeling.7z.{k:03d}" for k in range(1, 6))
# Sizes of the five volumes in bytes (4 GiB each, the last one less). Inria publishes neither
# sizes nor checksums of the volumes; these sizes come from a public download script
# (github.com/wuhan66/ActiveMap, scripts/download_inria.sh) and catch truncated downloads.
INRIA_PART_BYTES = {
    "aerialimagelabeling.7z.001": 4294967296,
    "aerialimagelabeling.7z.002": 4294967296,
    "aerialimagelabeling.7z.003": 4294967296,
    "aerialimagelabeling.7z.004": 4294967296,
    "aerialimagelabeling.7z.005": 3777396691,
}
# MD5 of the volumes: None, no published value could be found (not invented).
INRIA_PART_MD5: dict[str, str | None] = {name: None for name in INRIA_PART_BYTES}
# The volumes hold one file, NEW2-AerialImageDataset.zip; its MD5 is the one torchgeo checks
# (torchgeo/datasets/inria.py, InriaAerialImageLabeling.md5).
INRIA_ZIP_NAME = "NEW2-AerialImageDataset.zip"
INRIA_ZIP_MD5 = "4b1acfe84ae9961edc1a6049f940380f"

_MANUAL = (
    f"fetch the data by hand from {INRIA_HOMEPAGE} and place it as "
    "{out}/AerialImageDataset/train/{{images,gt}}/"
)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    md5: str | None = None,
    timeout: float = 30,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous attempt, then verify it.

    Bytes go to ``dest + ".part"``; if that exists, the download continues from its end with
    an HTTP Range request (a server that ignores Range makes it start over). The file is
    renamed to ``dest`` once complete and checked against ``size`` and ``md5`` when given.

    Raises:
        InriaDownloadError: connection lost (run again to resume), wrong size (the file is
            kept) or wrong checksum (the file is deleted).
    """
    from tqdm import tqdm

    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if not dest.exists():
        done = part.stat().st_size if part.exists() else 0
        length = total = None
        request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if done and response.status != 206:  # Range ignored: start again
                    done = 0
                length = response.headers.get("Content-Length")
                total = done + int(length) if length is not None else size
                with (
                    open(part, "ab" if done else "wb") as file,
                    tqdm(
                        total=total,
                        initial=done,
                        unit="B",
                        unit_scale=True,
                        desc=dest.name,
                        disable=not progress,
                    ) as bar,
                ):
                    while chunk := response.read(1 << 20):
                        file.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as error:
            if error.code != 416:  # 416: nothing left to fetch, the .part is complete
                raise InriaDownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
        except (OSError, http.client.HTTPException) as error:
            got = part.stat().st_size if part.exists() else 0
            raise InriaDownloadError(
                f"download of {url} stopped at {got} bytes ({error}); run again to resume "
                f"into {part}"
            ) from None
        if length is not None and part.stat().st_size < total:
            raise InriaDownloadError(
                f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
                f"run again to resume into {part}"
            )
        part.replace(dest)

    actual = dest.stat().st_size
    if size is not None and actual != size:  # kept: the expected size is not Inria's own word
        raise InriaDownloadError(
            f"{dest} has {actual} bytes, expected {size}; delete it and run again to download "
            f"it anew, or " + _MANUAL.format(out=dest.parent)
        )
    if md5 is not None and (got_md5 := _md5(dest)) != md5:
        dest.unlink()
        raise InriaDownloadError(
            f"{dest} has MD5 {got_md5}, expected {md5}; deleted it, run again to download anew"
        )
    return dest


def _check_online(url: str, timeout: float, out: Path) -> None:
    """Fail at once, with the manual route, when the server cannot be reached.

    The connection is tried in a daemon thread so that a hanging DNS lookup (which ignores
    socket timeouts) cannot stall the caller for more than a few seconds.
    """
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    wait = min(timeout, 5)
    outcome: list = []

    def connect() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=wait).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(error)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(wait + 1)
    if not outcome or outcome[0] is not None:
        reason = outcome[0] if outcome else f"no answer in {wait + 1:g} s"
        raise InriaDownloadError(
            f"cannot reach {parts.hostname}:{port} ({reason}): offline? " + _MANUAL.format(out=out)
        )


def _extract_7z(first_volume: Path, out: Path) -> None:
    tool = shutil.which("7z") or shutil.which("7za") or shutil.which("7zz")
    if tool:
        try:
            subprocess.run([tool, "x", "-y", f"-o{out}", str(first_volume)], check=True)
        except subprocess.CalledProcessError as error:
            raise InriaDownloadError(
                f"{tool} could not extract {first_volume} (exit code {error.returncode}); the "
                f"volumes may be corrupt: delete {out}/*.7z.* and run again"
            ) from None
        return
    try:
        import multivolumefile
        import py7zr
    except ImportError:
        raise InriaDownloadError(
            f"the archive is downloaded but neither the `7z` tool nor py7zr + multivolumefile "
            f"is installed to extract it. Run:\n  7z x {first_volume} -o{out}\n"
            f"(Debian/Ubuntu: apt install p7zip-full), then call download_inria again, or "
            + _MANUAL.format(out=out)
        ) from None
    with (
        multivolumefile.open(first_volume.with_suffix(""), mode="rb") as volumes,  # .7z.00*
        py7zr.SevenZipFile(volumes, mode="r") as archive,
    ):
        archive.extractall(out)


def download_inria(
    out_dir: str | os.PathLike,
    *,
    timeout: float = 30,
    progress: bool = True,
    urls: tuple[str, ...] = INRIA_URLS,
) -> Path:
    """Download and unpack the Inria Aerial Image Labeling dataset (about 21 GB).

    The five 7z volumes are fetched into ``out_dir`` (resumable: run again after an
    interruption), their sizes checked, extracted with the ``7z`` tool (or py7zr +
    multivolumefile when installed) and the inner ``NEW2-AerialImageDataset.zip`` is checked
    against torchgeo's MD5 and unzipped. Nothing is fetched when the dataset is already there.
    The volumes and the zip (about 40 GB together) can be deleted afterwards.

    Args:
        out_dir: where ``AerialImageDataset/`` ends up.
        timeout: seconds to wait on the network before giving up.
        progress: show tqdm progress bars.
        urls: the volumes' addresses (tests point these at a local server).

    Returns:
        The ``AerialImageDataset`` folder.

    Raises:
        InriaDownloadError: offline (raised within seconds), a failed or corrupt download, or
            no 7z extractor; the message says what to run or fetch by hand.
    """
    out = Path(out_dir)
    dataset = out / "AerialImageDataset"
    if (dataset / "train" / "images").is_dir():
        return dataset
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / INRIA_ZIP_NAME
    if not zip_path.exists():
        if not all((out / url.rsplit("/", 1)[-1]).exists() for url in urls):
            _check_online(urls[0], timeout, out)
        volumes = []
        for url in urls:
            name = url.rsplit("/", 1)[-1]
            volumes.append(
                download_file(
                    url,
                    out / name,
                    size=INRIA_PART_BYTES.get(name),
                    md5=INRIA_PART_MD5.get(name),
                    timeout=timeout,
                    progress=progress,
                )
            )
        _extract_7z(volumes[0], out)
        if not zip_path.exists():
            raise InriaDownloadError(
                f"extracting {volumes[0]} gave no {zip_path}; " + _MANUAL.format(out=out)
            )
    if (got := _md5(zip_path)) != INRIA_ZIP_MD5:
        raise InriaDownloadError(
            f"{zip_path} has MD5 {got}, expected {INRIA_ZIP_MD5}; delete it and the .7z.* "
            f"volumes and run again, or " + _MANUAL.format(out=out)
        )
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(out)
    if not (dataset / "train" / "images").is_dir():
        raise InriaDownloadError(
            f"{zip_path} did not unpack to {dataset}/train/images; " + _MANUAL.format(out=out)
        )
    return dataset


# ---------------------------------------------------------------------------- benchmark


def _write_benchmark_tiles(folder: Path, count: int, size: int) -> Path:
    """``count`` random size x size LZW GeoTIFF tiles (and 0/255 masks) in the official layout."""
    rng = np.random.default_rng(0)
    for number in range(6, 6 + count):  # numbers 6+: the training split
        coarse = rng.integers(0, 224, (3, size // 16 + 1, size // 16 + 1), dtype=np.uint8)
        image = coarse.repeat(16, 1).repeat(16, 2)[:, :size, :size]  # (3, size, size)
        image += rng.integers(0, 32, image.shape, dtype=np.uint8)  # texture, as in real imagery
        mask = (coarse[0].repeat(16, 0).repeat(16, 1)[:size, :size] > 160).astype(np.uint8) * 255
        for kind, array in (("images", image), ("gt", mask[None])):
            path = folder / "AerialImageDataset" / "train" / kind / f"bench{number}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            profile = {"driver": "GTiff", "height": size, "width": size, "count": len(array),
                       "dtype": "uint8", "compress": "lzw"}  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path, "w", **profile) as dst:
                    dst.write(array)
    return folder


def _no_block_cache(worker_id: int | None = None) -> None:
    """Turn off GDAL's block cache in this process (a DataLoader worker), so reads are cold."""
    rasterio.env.set_gdal_config("GDAL_CACHEMAX", 0)


def _crops_per_second(dataset: InriaDataset, n: int, workers: int, cold: bool) -> float:
    """Training crops/s through a DataLoader, timed from the first batch (start-up excluded).

    ``cold`` turns off GDAL's block cache, so every crop decodes its strips again, as it does
    on the full dataset (155 tiles x 75 MB, far more than the cache) but not on a small one.
    """
    subset = torch.utils.data.Subset(dataset, range(min(n, len(dataset))))
    init = _no_block_cache if cold and workers else None
    loader = torch.utils.data.DataLoader(subset, 8, num_workers=workers, worker_init_fn=init)
    with rasterio.Env(**({"GDAL_CACHEMAX": 0} if cold else {})):
        batches = iter(loader)
        next(batches)
        start, crops = time.perf_counter(), 0
        for batch in batches:
            crops += len(batch["tile"])
        return crops / (time.perf_counter() - start)


def benchmark_crops(
    data_dir: str | os.PathLike | None = None,
    *,
    scratch: str | os.PathLike | None = None,
    crop_size: int = 512,
    n: int = 200,
    tiles: int = 4,
    tile_size: int = 2000,
    verbose: bool = True,
) -> dict:
    """Training crops/s read from GeoTIFF (0 and 2 workers) against cropping in-memory arrays.

    Args:
        data_dir: a dataset (see :func:`find_tiles`); None writes ``tiles`` random
            ``tile_size`` px LZW GeoTIFFs into ``scratch`` (or a temporary folder) first.
        scratch: where to write the random tiles when ``data_dir`` is None.
        crop_size: side of the crops.
        n: crops timed per setting.
        tiles, tile_size: the random dataset.
        verbose: print the table.

    Returns:
        ``{"data", "crop_size", "n", "rows": [{"source", "workers", "crops_per_s", "ratio"}]}``
        where ``ratio`` is relative to the in-memory row.
    """
    if data_dir is None:
        if scratch is None:
            with tempfile.TemporaryDirectory() as tmp:
                return benchmark_crops(None, scratch=tmp, crop_size=crop_size, n=n, tiles=tiles,
                                       tile_size=tile_size, verbose=verbose)  # fmt: skip
        data_dir = _write_benchmark_tiles(Path(scratch), tiles, tile_size)
        described = f"{tiles} random {tile_size}x{tile_size} LZW GeoTIFF tiles"
    else:
        described = str(data_dir)
    per_tile = math.ceil(n / len(find_tiles(data_dir, "train")))

    def dataset(cache: bool) -> InriaDataset:
        return InriaDataset(data_dir, "train", crop_size, per_tile, cache=cache)

    in_memory = dataset(cache=True)
    for t in range(len(in_memory.tiles)):  # decode every tile once, outside the timing
        in_memory[t * per_tile]
    settings = [  # (source, workers, dataset, cold GDAL block cache)
        ("GeoTIFF, cold reads", 0, dataset(cache=False), True),
        ("GeoTIFF, cold reads", 2, dataset(cache=False), True),
        ("GeoTIFF, GDAL cache warm", 0, dataset(cache=False), False),
        ("in-memory uint8 (cache=True)", 0, in_memory, False),
    ]
    rows = [
        {
            "source": source,
            "workers": workers,
            "crops_per_s": _crops_per_second(ds, n, workers, cold),
        }
        for source, workers, ds, cold in settings
    ]
    for row in rows:
        row["ratio"] = row["crops_per_s"] / rows[-1]["crops_per_s"]
    if verbose:
        print(f"{crop_size}x{crop_size} training crops (augmented) from {described}, {n} per row, "
              f"{os.cpu_count()} CPU cores")  # fmt: skip
        print(f"{'source':<30} {'workers':>7} {'crops/s':>9} {'vs in-memory':>13}")
        for row in rows:
            print(f"{row['source']:<30} {row['workers']:>7} {row['crops_per_s']:>9.1f} "
                  f"{row['ratio']:>12.2f}x")  # fmt: skip
    return {"data": described, "crop_size": crop_size, "n": n, "rows": rows}
