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

INRIA_HOMEPAGE = "https://project.inria.fr/aerialimagelabeling/"
_TILE_NAME = re.compile(r"^([a-z][a-z-]*?)(\d+)\.tif$")
_SPLITS = ("train", "val", "all")


class InriaDataError(ValueError):
    """A dataset folder or file is missing, unreadable or not what Inria tiles look like."""


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
