"""InriaDataset: training crops at a random place, scale and orientation; validation crops on a fixed grid."""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from plinknet.data.cache import cached_tile
from plinknet.data.tiles import GDAL_CACHE_BYTES, MASK_PADDING, InriaDataError, _check_mask, _open, find_tiles


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

