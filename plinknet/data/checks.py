"""Every pixel of a dataset read once before training: problems listed, sound tiles remembered; the data's checksum.

``make paper`` reads the data once before training (:func:`check_and_hash`): each file's bytes are
read one time, hashed for the checksum every result records, and, for a tile not yet found sound,
decoded from memory for the pixel checks. Both verdicts are remembered (per file path, size and
modification time), so that later runs, the workers of ``ablate --processes`` and the book's
pages read nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from plinknet.data.tiles import InriaDataError, _check_mask, _dataset_dir, _open, header_problems, pair_tiles
from plinknet.files import default_cache_root, file_key

CHECK_ROWS = 1024  # rows read at a time when checking a whole tile: bounded memory


def _pixel_problems(src, path: Path, is_mask: bool, mask_bands: int) -> list[str]:
    """Every problem found by reading every pixel of an open raster, ``CHECK_ROWS`` rows at a time."""
    conventions = set()  # the mask's values over the whole tile: {0, 1} or {0, 255}, never both
    try:
        for row in range(0, src.height, CHECK_ROWS):
            window = Window(0, row, src.width, min(CHECK_ROWS, src.height - row))
            pixels = src.read(window=window)
            if is_mask and mask_bands == 1:
                _check_mask(pixels[0], path)
                conventions |= {v for v in (1, 255) if (pixels[0] == v).any()}
    except RasterioIOError as error:
        return [f"cannot read every pixel of {path} ({error}); the file is damaged: delete it and fetch it again"]
    except InriaDataError as error:
        return [str(error)]
    if conventions == {1, 255}:
        return [f"{path} holds both 1 and 255: a mask is 0/255 (Inria) or 0/1 throughout; fix or re-export this mask"]
    return []


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
    for path, is_mask in ((image_path, False), (mask_path, True)):
        try:
            with _open(path) as src:
                problems += _pixel_problems(src, path, is_mask, headers[mask_path][0])
        except RasterioIOError as error:
            problems.append(f"cannot read every pixel of {path} ({error}); the file is damaged: delete it and "
                            f"fetch it again")  # fmt: skip
    return problems


def _memory_problems(data: bytes, path: Path, is_mask: bool, mask_bands: int) -> list[str]:
    """:func:`_pixel_problems` of a file already read into memory (the one read of :func:`check_and_hash`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.MemoryFile(data) as memory, memory.open() as src:
                return _pixel_problems(src, path, is_mask, mask_bands)
    except RasterioIOError as error:
        return [f"cannot read every pixel of {path} ({error}); the file is damaged: delete it and fetch it again"]


def _pairs_or_emptiness(root) -> tuple[list[tuple[Path, Path]], list[str]]:
    """:func:`pair_tiles`, with a problem of its own for a dataset that holds no tile at all."""
    pairs, problems = pair_tiles(root)
    if not pairs and not problems:
        problems.append(f"no tile in {_dataset_dir(Path(root)) / 'train'}: images/ and gt/ hold no <city><n>.tif "
                        f"pair; an empty dataset is not a sound one")  # fmt: skip
    return pairs, problems


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

    pairs, problems = _pairs_or_emptiness(root)
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



# --------------------------------------------------------------------------- the data's checksum


def data_files(root: str | os.PathLike) -> tuple[Path, list[Path]]:
    """The dataset folder (``AerialImageDataset`` or ``root``) and every file under its ``train/``, sorted."""
    root = Path(root)
    base = root / "AerialImageDataset" if (root / "AerialImageDataset").is_dir() else root
    return base, sorted(p for p in (base / "train").rglob("*") if p.is_file())


def data_listing(root: str | os.PathLike) -> dict[str, int]:
    """Every file under the dataset's ``train/``: its path (relative, so a moved copy matches) and size; instant."""
    base, files = data_files(root)
    return {str(path.relative_to(base)): path.stat().st_size for path in files}


def listing_changes(saved: dict[str, int], now: dict[str, int], limit: int = 5) -> list[str]:
    """What differs between two :func:`data_listing` results, in words (at most ``limit`` files named)."""
    gone = sorted(set(saved) - set(now))
    added = sorted(set(now) - set(saved))
    resized = sorted(name for name in set(saved) & set(now) if saved[name] != now[name])
    changes = []
    for what, names in (("gone", gone), ("added", added), ("of another size", resized)):
        if names:
            more = f" and {len(names) - limit} more" if len(names) > limit else ""
            changes.append(f"{len(names)} file(s) {what}: {', '.join(names[:limit])}{more}")
    return changes


def data_checksum(root: str | os.PathLike) -> str:
    """SHA-256 over the relative path and bytes of every file under ``AerialImageDataset/train``.

    Reads every byte (about a minute for Inria's 18 GB); two folders with the same checksum
    hold the same tiles, masks and lab labels. :func:`dataset_checksum` remembers it.
    """
    base, files = data_files(root)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(base)).encode() + b"\0")
        with open(path, "rb") as file:
            while chunk := file.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def _checksum_memo(files: list[Path]) -> Path:
    """Where the checksum of exactly these files, as they are now (path, size, modification time), is kept."""
    key = json.dumps([[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files])
    return default_cache_root() / "checksums" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".txt")


def _remember(memo: Path, value: str) -> None:
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(value)
    except OSError:  # a read-only cache: computed again next time, no harm done
        pass


def _remembered(memo: Path) -> str | None:
    try:
        value = memo.read_text().strip()
    except OSError:
        return None
    return value if len(value) == 64 else None  # a cut file is no checksum


def dataset_checksum(root: str | os.PathLike) -> str:
    """:func:`data_checksum`, remembered per file path, size and modification time (Inria: read once, ever)."""
    _, files = data_files(root)
    memo = _checksum_memo(files)
    value = _remembered(memo)
    if value is None:
        value = data_checksum(root)
        _remember(memo, value)
    return value


def check_and_hash(root: str | os.PathLike, *, progress: bool = True) -> tuple[list[str], str]:
    """Every tile checked (as :func:`check_tiles`) and the data hashed (as :func:`data_checksum`) in one pass.

    Each file is read once: its bytes go into the checksum and, for a tile not yet found sound, are decoded from
    memory for the pixel checks. Tiles already found sound and a checksum already computed for these very files
    are not read again, so a second call reads nothing.

    Returns:
        The problems (empty: every tile is sound) and the checksum.

    Raises:
        InriaDataError: no dataset folder at all.
    """
    from tqdm import tqdm

    pairs, naming = _pairs_or_emptiness(root)
    sound_memo = default_cache_root() / "checked-v2"
    found: dict[tuple[Path, Path], list[str]] = {pair: [] for pair in pairs}
    to_read: dict[Path, tuple[tuple[Path, Path], bool, int]] = {}  # a file whose pixels are checked from its bytes
    for image_path, mask_path in pairs:
        if (sound_memo / file_key(image_path, mask_path)).exists():
            continue
        problems, headers = header_problems(image_path, mask_path)
        found[image_path, mask_path] = problems
        if headers is not None:
            bands = headers[mask_path][0]
            to_read[image_path] = ((image_path, mask_path), False, bands)
            to_read[mask_path] = ((image_path, mask_path), True, bands)
    base, files = data_files(root)
    memo = _checksum_memo(files)
    known = _remembered(memo)
    digest = hashlib.sha256()
    reading = files if known is None else [p for p in files if p in to_read]
    for path in tqdm(reading, desc="checking and hashing the data", unit="file", disable=not (progress and reading)):
        data = path.read_bytes()
        if known is None:
            digest.update(str(path.relative_to(base)).encode() + b"\0")
            digest.update(data)
        if path in to_read:
            pair, is_mask, bands = to_read[path]
            found[pair] += _memory_problems(data, path, is_mask, bands)
    checksum = known or digest.hexdigest()
    if known is None:
        _remember(memo, checksum)
    for pair in {pair for pair, _, _ in to_read.values()}:
        if not found[pair]:
            try:
                sound_memo.mkdir(parents=True, exist_ok=True)
                (sound_memo / file_key(*pair)).touch()
            except OSError:
                pass
    return naming + [problem for pair in pairs for problem in found[pair]], checksum
