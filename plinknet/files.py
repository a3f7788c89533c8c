"""Files written whole or not at all, and the keys that say whether a file changed.

Every file plinknet writes (checkpoints, history, JSON records, caches, exported networks, GeoTIFF and
GeoJSON outputs) goes through :func:`atomic_path` (or its :func:`temporary_name`), every generated
folder through :func:`atomic_folder`: it is written under a temporary name unique to the
writer (process and a random token, so two processes writing the same file never share one) in the
target's folder, and renamed over the target only when complete. A kill, a full disk or an error leaves
the previous file (or none), never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that go by it work) to write to.

    When the block completes the temporary file replaces ``path`` (``os.replace``: atomic on one file
    system); when it raises, the temporary file is removed and ``path`` is untouched. Creates the folder.
    """
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def temporary_name(path: str | os.PathLike) -> Path:
    """The temporary name :func:`atomic_path` writes ``path`` under (hidden, unique to this writer, same suffix).

    For writers that stream into a file over many calls (:class:`~plinknet.infer.scenes.RasterWriter`)
    and rename it with ``os.replace`` when complete. Creates the folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


@contextmanager
def atomic_folder(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path`` that becomes ``path`` when the block completes.

    The folder is renamed only when complete, so an interrupted writer never leaves half a folder that
    a later run would take for a whole one; when the block raises, the temporary folder is removed.
    Temporary folders of the same target left by writers no longer running (a kill) are removed first.

    Args:
        replace: an existing ``path`` is replaced whole, after the new folder is complete. Without it an
            existing ``path`` raises FileExistsError (another writer finished first).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2 :].split("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    old, landed = None, False
    try:
        yield tmp
        if path.exists() and replace:
            old = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.old")
            os.replace(path, old)
        try:
            os.rename(tmp, path)  # onto an existing non-empty folder this fails: nothing is merged or lost
            landed = True
        except OSError as error:
            if path.exists():
                raise FileExistsError(f"{path} exists already (another writer may have finished first); "
                                      f"nothing was replaced") from error  # fmt: skip
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            if landed:
                shutil.rmtree(old, ignore_errors=True)
            elif not path.exists():  # the new folder did not land: the old one goes back
                os.replace(old, path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode())


def write_json(value, path: str | os.PathLike) -> Path:
    """Write ``value`` as indented JSON to ``path`` atomically (creating the folder)."""
    return write_text(path, json.dumps(value, indent=1))


def save_torch(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically: a kill while saving never leaves a broken checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def file_key(*paths: str | os.PathLike, content: bool = False) -> str:
    """A short hex key of files, to name what is cached from them.

    ``content=False``: absolute path, size and modification time (instant; a touched or moved file gets a
    new key). ``content=True``: a SHA-256 of the bytes (reads the files; the same file anywhere shares it).
    """
    digest = hashlib.sha256()
    for path in map(Path, paths):
        if content:
            with open(path, "rb") as file:
                while chunk := file.read(1 << 20):
                    digest.update(chunk)
        else:
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        digest.update(b";")
    return digest.hexdigest()[:24]


def default_cache_root() -> Path:
    """``$PLINKNET_CACHE``, else ``~/.cache/plinknet``: where checks, decoded tiles and exported networks go."""
    return Path(os.environ.get("PLINKNET_CACHE") or Path.home() / ".cache" / "plinknet")
