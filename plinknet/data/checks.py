"""Every pixel of a dataset read once before training: problems listed, sound tiles remembered."""

from __future__ import annotations

import os
from pathlib import Path

from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from plinknet.data.tiles import InriaDataError, _check_mask, _dataset_dir, _open, header_problems, pair_tiles
from plinknet.files import default_cache_root, file_key

CHECK_ROWS = 1024  # rows read at a time when checking a whole tile: bounded memory


def check_pair(image_path: str | os.PathLike, mask_path: str | os.PathLike) -> list[str]:
    """Every problem of one image/mask pair, found by reading every pixel of both.

    Checks: both readable to the last byte, the image 3-band uint8, the mask 1-band integer
    of the image's size, holding only 0/255 or 0/1. Memory stays bounded (``CHECK_ROWS``
    rows at a time).

    Returns:
        One message per problem, each naming the file; empty when the pair is sound.
    """
    image_path, mask_path = Path(image_path), Path(mask_path)
    problems, headers = header_problems(image_path, mask_path)
    if headers is None:
        return problems  # a header that cannot be read: no pixel can be
    mask_bands = headers[mask_path][0]
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


def count_tiles(root: str | os.PathLike) -> int:
    """The image/mask pairs of a dataset folder (what :func:`check_tiles` reads)."""
    return len(pair_tiles(root)[0])


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

    pairs, problems = pair_tiles(root)
    if not pairs and not problems:
        problems.append(f"no tile in {_dataset_dir(Path(root)) / 'train'}: images/ and gt/ hold no <city><n>.tif "
                        f"pair; an empty dataset is not a sound one")  # fmt: skip
    # "checked-v2": verdicts of the check before masks were judged whole (1 and 255 in different blocks) are void
    memo = Path(memo_dir) if memo_dir is not None else default_cache_root() / "checked-v2"
    rank, world_size = shard
    todo = pairs[rank::world_size]
    for image_path, mask_path in tqdm(todo, desc="checking tiles", unit="tile", disable=not progress):
        marker = memo / file_key(image_path, mask_path)
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

