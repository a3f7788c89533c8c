"""Files written whole or not at all, and the keys that say whether a file changed.

Every file plinknet writes (checkpoints, history, JSON records, caches, exported networks, GeoTIFF and
GeoJSON outputs) goes through :func:`atomic_path` (or its :func:`temporary_name`), every generated
folder through :func:`atomic_folder`: it is written under a temporary name unique to the
writer (process and a random token, so two processes writing the same file never share one) in the
target's folder, and renamed over the target only when complete. A kill, a full disk or an error leaves
the previous file (or none), never half of one.

Nothing is deleted but through :func:`remove`, and it deletes only what carries plinknet's own mark
(:func:`plinknets`): a writer's temporary, a folder plinknet made (:func:`mark_folder`), a synthetic
sample with its manifest, a run's files beside its ``config.yaml`` and checkpoint. Anything else is a
user's, and is refused with the path and the reason. ``tests/test_files.py`` fails on any other
deleting or renaming call in ``plinknet/`` and the book's helpers.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

MARK = ".plinknet-made"  # in a folder plinknet made whole (JSON: what it holds): remove() may delete it
SAMPLE_MANIFEST = "plinknet-synth.json"  # in a synthetic sample's AerialImageDataset/, written last
RUN_CHECKPOINTS = ("last.pt", "best.pt")  # with config.yaml, what makes a folder a run's
RUN_OWN_FILES = ("config.yaml", "history.csv", "metrics.json", *RUN_CHECKPOINTS)  # what a run writes there
# .{name}.{pid}-{8 hex}.tmp{suffix} (atomic_path, temporary_name), .{name}.{pid}-{8 hex}.tmp|.old (atomic_folder)
_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.(tmp|old)(\.[^.]+)*$")


class NotPlinknetsError(PermissionError):
    """:func:`remove` refused: the path carries no mark of plinknet's, so it may be a user's."""


class _Said(OSError):
    def __str__(self) -> str:  # the words alone, without "[Errno N]"
        return str(self.strerror)


class DiskFullError(_Said):
    """A write failed because its file system is full; the message names the file and the free space."""


class UnwritableError(_Said, PermissionError):
    """A write failed because the folder is read-only or not this user's; the message names the file."""


def write_failure(error: BaseException, path: str | os.PathLike) -> OSError | None:
    """``error`` in plain words, naming ``path`` (not a temporary), when a write of ``path`` failed for want of space
    (:class:`DiskFullError`) or of permission (:class:`UnwritableError`); else None (raise ``error`` as it is).

    Libraries say a full disk their own way (torch: "PytorchStreamWriter failed writing file", GDAL: "Write
    failed"), so besides ``ENOSPC`` anywhere in the chain of errors, a write that failed where under 1 MiB is left
    counts.
    """
    chain, seen, found = error, set(), None
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM,
                                                          errno.EROFS):  # fmt: skip
            found = chain.errno
            break
        chain = chain.__cause__ or chain.__context__
    folder = next((p for p in Path(path).absolute().parents if p.exists()), Path("/"))
    if found is None and not os.access(folder, os.W_OK):  # a library's words for it (GDAL: "Permission denied")
        found = errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES
    if found in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "its file system is read-only" if found == errno.EROFS else "this user may not write there"
        return UnwritableError(found, f"cannot write {path}: {why} ({folder}); nothing was written: choose a folder "
                                      f"you can write to")  # fmt: skip
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    if found is None and free >= 1 << 20:
        return None
    return DiskFullError(errno.ENOSPC, f"no space left on the device of {folder} ({free / 2**20:.1f} MiB free) "
                                       f"while writing {path}; nothing half-written was left, and the previous "
                                       f"file, if any, is kept: free some space and run again")  # fmt: skip


def _raise_plainly(error: Exception, path: Path, tmp: Path) -> NoReturn:
    """Raise ``error`` (a write of ``path`` through ``tmp`` failed) in plain words when :func:`write_failure` has
    them, after deleting ``tmp`` (its bytes may be what filled the disk); else as it is."""
    said = write_failure(error, path)
    if said is None:
        raise error
    remove(tmp)
    raise said from error


def plinknets(path: str | os.PathLike) -> str | None:
    """Why plinknet may delete ``path`` (its mark, in words), or None when it is not plinknet's to delete.

    Plinknet's own: a temporary of this process or of a writer no longer running; a folder holding
    :data:`MARK` or a synthetic sample's manifest, and anything inside one; a run's own file
    (:data:`RUN_OWN_FILES`) in a folder holding ``config.yaml`` and a checkpoint.
    """
    path = Path(path)
    temporary = _TEMPORARY.match(path.name)
    if temporary:
        pid = int(temporary["pid"])
        if pid == os.getpid():
            return "a temporary of this process"
        if not _running(pid):
            return f"a temporary of writer {pid}, which no longer runs"
    for folder in (path, *path.absolute().parents):
        if folder.is_symlink():
            break  # a mark is not followed through a link
        inside = f"inside {folder}, " if folder != path else ""
        if (folder / MARK).is_file():
            return f"{inside}made by plinknet ({MARK})"
        if (folder / SAMPLE_MANIFEST).is_file():
            return f"{inside}a synthetic sample ({SAMPLE_MANIFEST})"
    run = path.parent
    if path.name in RUN_OWN_FILES and (run / "config.yaml").is_file() and \
            any((run / name).is_file() for name in RUN_CHECKPOINTS):  # fmt: skip
        return f"a file of the run in {run} (config.yaml and a checkpoint)"
    return None


def remove(*paths: str | os.PathLike) -> int:
    """Delete the files or folders ``paths`` if each is plinknet's (:func:`plinknets`); the one way plinknet deletes.

    Every path is checked before any is deleted, so a run's files go together with the checkpoint
    that marks them. Paths that do not exist are skipped; returns how many were deleted.

    Raises:
        NotPlinknetsError: a path carries no mark of plinknet's (nothing was deleted); the message names it.
    """
    present = [Path(p) for p in paths if Path(p).exists() or Path(p).is_symlink()]
    for path in present:
        if plinknets(path) is None:
            raise NotPlinknetsError(f"plinknet did not delete {path}: it carries no mark of plinknet's (not a "
                                    f"temporary of a writer, no {MARK}, no sample manifest, not a run's file), so "
                                    f"it may be yours; delete it yourself if it should go")  # fmt: skip
    for path in present:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return len(present)


def mark_folder(path: str | os.PathLike, what: str) -> Path:
    """Create the folder ``path`` (new, or empty) as plinknet's: :func:`remove` may later delete it whole.

    Raises:
        FileExistsError: ``path`` holds something and no mark: it may be a user's.
    """
    path = Path(path)
    if (path / MARK).is_file():
        return path
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} holds files that plinknet did not make (no {MARK}); choose another folder")
    path.mkdir(parents=True, exist_ok=True)
    write_json({"made_by": "plinknet", "what": what}, path / MARK)
    return path


def move_into_place(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Rename ``source`` (complete) to ``target``, which must not exist or be plinknet's (:func:`plinknets`).

    Raises:
        NotPlinknetsError: ``target`` exists and is not plinknet's to replace.
    """
    target = Path(target)
    if (target.exists() or target.is_symlink()) and plinknets(target) is None:
        raise NotPlinknetsError(f"plinknet did not replace {target}: it exists and carries no mark of plinknet's; "
                                f"move it away or choose another path")  # fmt: skip
    os.replace(source, target)
    return target


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
    except Exception as error:
        _raise_plainly(error, path, tmp)
    finally:
        remove(tmp)


def temporary_name(path: str | os.PathLike) -> Path:
    """The temporary name :func:`atomic_path` writes ``path`` under (hidden, unique to this writer, same suffix).

    For writers that stream into a file over many calls (:class:`~plinknet.infer.scenes.RasterWriter`),
    then :func:`land` it on ``path`` when complete, or :func:`remove` it. Creates the folder.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise (write_failure(error, path) or error) from error
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


@contextmanager
def exclusive(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the lock file ``path`` for ``what``, waiting (and saying so) while another process holds it.

    An ``flock`` on the file: the kernel releases it when its holder exits or is killed, so a dead holder never
    leaves it stuck. The file stays, empty and never written (taking the lock changes no file), and means nothing
    when no one holds it.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process, which holds {path} ({what})", file=sys.stderr, flush=True)
            fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def land(temporary: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Rename this process's complete ``temporary`` (from :func:`temporary_name`) over ``path``, atomically.

    Raises:
        ValueError: ``temporary`` is not a temporary of this process.
    """
    if plinknets(temporary) != "a temporary of this process":
        raise ValueError(f"{temporary} is not a temporary of this process; nothing was renamed")
    os.replace(temporary, path)
    return Path(path)


@contextmanager
def atomic_folder(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path`` that becomes ``path`` when the block completes.

    The folder is renamed only when complete, so an interrupted writer never leaves half a folder that
    a later run would take for a whole one; when the block raises, the temporary folder is removed.
    Temporary folders of the same target left by writers no longer running (a kill) are removed first.

    Args:
        replace: an existing ``path`` is replaced whole, after the new folder is complete, if it is
            plinknet's (:func:`plinknets`). Without it an existing ``path`` raises FileExistsError
            (another writer finished first).

    Raises:
        NotPlinknetsError: ``replace`` and ``path`` exists but is not plinknet's (checked before anything is written).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise (write_failure(error, path) or error) from error
    if replace and path.exists() and plinknets(path) is None:
        raise NotPlinknetsError(f"plinknet did not replace {path}: it holds files that carry no mark of plinknet's, "
                                f"so they may be yours; move them away or choose another folder")  # fmt: skip
    for stale in path.parent.iterdir():
        if stale.name.startswith(f".{path.name}.") and stale.name.endswith(".tmp") and _TEMPORARY.match(stale.name) \
                and plinknets(stale):  # fmt: skip
            remove(stale)  # a temporary of a writer that was killed
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        tmp.mkdir()
    except OSError as error:
        raise (write_failure(error, path) or error) from error
    old, landed = None, False
    try:
        try:
            yield tmp
        except Exception as error:
            _raise_plainly(error, path, tmp)
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
        remove(tmp)
        if old is not None:
            if landed:
                remove(old)
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


def write_once(path: str | os.PathLike, text: str) -> bool:
    """Write ``text`` to ``path``, which must not exist: an archive's files are written once, never rewritten.

    The file is written whole under a temporary name, then linked to ``path`` (``os.link`` fails when ``path``
    exists: another writer that got there first is never overwritten).

    Returns:
        True when written; False when ``path`` already holds exactly ``text`` (nothing to do).

    Raises:
        FileExistsError: ``path`` holds something else; the message names it.
        DiskFullError: no space for it (nothing is left behind).
    """
    path, data = Path(path), text.encode()
    if not path.exists():
        tmp = temporary_name(path)
        try:
            tmp.write_bytes(data)
            _link_new(tmp, path)
            return True
        except FileExistsError:
            pass  # another writer landed it meanwhile: compared below
        except Exception as error:
            _raise_plainly(error, path, tmp)
        finally:
            remove(tmp)
    if path.read_bytes() == data:
        return False
    raise FileExistsError(f"{path} exists and holds something else; plinknet writes an archive's files once and "
                          f"never rewrites them")  # fmt: skip


def _link_new(tmp: Path, path: Path) -> None:
    """Give the complete ``tmp`` the name ``path``, which must not exist (FileExistsError if it does).

    A hard link refuses an existing name atomically. File systems without hard links (FAT, some network and FUSE
    mounts, Google Drive on Colab among them) refuse the link itself: there the name is checked, then ``tmp`` renamed
    onto it, which leaves a moment in which another writer could land first (the archive's writers hold locks)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, f"{path} exists") from None
        os.replace(tmp, path)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for piece in iter(lambda: file.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def content_sha256(value: dict, key: str) -> str:
    """The SHA-256 of a JSON object's contents without its own checksum ``key`` (canonical JSON: sorted keys)."""
    body = {k: v for k, v in value.items() if k != key}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(value: dict, key: str) -> dict:
    """``value`` (as JSON would read it back) with ``key``: the checksum of its own contents (:func:`content_sha256`),
    so that an edit by hand or a cut is found (:func:`check_seal`)."""
    value = json.loads(json.dumps(value))
    value.pop(key, None)
    return {**value, key: content_sha256(value, key)}


def check_seal(value, key: str) -> str | None:
    """None when ``value`` carries a checksum ``key`` that matches its contents; else what is wrong, in words."""
    if not isinstance(value, dict):
        return "it is not a JSON object"
    if key not in value:
        return f"it carries no checksum ({key}): written by a plinknet older than its checksums (2026-12-07), or edited"
    if value[key] != content_sha256(value, key):
        return f"its contents do not match its checksum ({key}): it was edited or damaged after plinknet wrote it"
    return None


def save_torch(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically: a kill while saving never leaves a broken checkpoint."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as file:  # closed on any error: torch's own handle would
        torch.save(obj, file)  # stay open (and a full disk full) until the garbage collector found it
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
