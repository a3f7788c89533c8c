"""The Inria Aerial Image Labeling data (Section 3.1 of the paper): tiles, checks, crops.

Official layout (what the archive unpacks to)::

    AerialImageDataset/train/images/<city><n>.tif   RGB uint8, 5000 x 5000, 0.3 m
    AerialImageDataset/train/gt/<city><n>.tif       1 band, 0 = background, 255 = building

36 tiles for each of austin, chicago, kitsap, tyrol-w and vienna. The paper does not state
its split; like the literature and torchgeo, tiles 1-5 of every city are the validation set
(25 tiles). Of tiles 6-36, the recipes hold tile 6 of each city out as the selection set (5
tiles: the epoch kept as best.pt is chosen on them) and train on tiles 7-36 (150 tiles);
:func:`~plinknet.data.tiles.split_words` says it in words for pages to print. All are cut into
512 x 512 crops: 100 per tile on a regular grid, 15,000 training and 2,500 validation crops,
which matches the paper's "over 10000 training and more than 2000 test pictures". Training crops are drawn at a
random place and scale with flips and 90-degree rotations (the paper's "horizontal flip,
vertical flip, transformation"); validation crops are the fixed grid.

Where the work happens, so that the loader can feed a GPU: DataLoader workers do integer work
only (windowed uint8 reads, flips and quarter turns); the float conversion, the scale resize
and the ImageNet normalisation run batched on the training device in :func:`prepare_batch`.
A uint8 crop is a quarter of the bytes of a float32 one on its way to the GPU.

One module per step:

- :mod:`~plinknet.data.tiles`: names, the split, finding and reading tiles;
- :mod:`~plinknet.data.checks`: every pixel read once before training;
- :mod:`~plinknet.data.cache`: tiles decoded once into memory-mapped ``.npy`` files;
- :mod:`~plinknet.data.dataset`: :class:`InriaDataset`, its crops and their collation;
- :mod:`~plinknet.data.transforms`: normalisation and resize, batched on the device;
- :mod:`~plinknet.data.download`: the official archive, fetched and unpacked.
"""

from plinknet.data.cache import build_cache, cached_tile
from plinknet.data.checks import check_pair, check_tiles, count_tiles
from plinknet.data.dataset import DataConfig, InriaDataset, collate_crops, grid_windows, worker_init
from plinknet.data.tiles import (
    INRIA_CITIES,
    MASK_PADDING,
    VAL_TILE_NUMBERS,
    InriaDataError,
    Tile,
    find_tiles,
    read_image,
    read_mask,
    split_of,
)
from plinknet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, normalize_batch, prepare_batch

__all__ = [
    "DataConfig", "IMAGENET_MEAN", "IMAGENET_STD", "INRIA_CITIES", "InriaDataError", "InriaDataset", "MASK_PADDING",
    "Tile", "VAL_TILE_NUMBERS", "build_cache", "cached_tile", "check_pair", "check_tiles", "collate_crops",
    "count_tiles", "find_tiles", "grid_windows", "normalize", "normalize_batch", "prepare_batch", "read_image",
    "read_mask", "split_of", "worker_init",
]  # fmt: skip
