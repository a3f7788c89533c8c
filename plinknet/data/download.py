"""Download and unpack the Inria Aerial Image Labeling dataset (about 21 GB in five 7z volumes).

    plinknet download inria --out data/inria

Resumable downloads with a progress bar, a fast and clear failure when offline, and the manual
route in every error message. Both extraction steps (7z volumes -> zip, zip -> folder) work in a
temporary folder beside the output and rename the result into place only when complete, so an
interrupted run never leaves a tree that a later run, or ``plinknet.data.find_tiles``, accepts.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

from plinknet.data.tiles import INRIA_HOMEPAGE
from plinknet.files import NotPlinknetsError, mark_folder, move_into_place, remove


class InriaDownloadError(RuntimeError):
    """The archive could not be downloaded, verified or extracted."""


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
        move_into_place(part, dest)

    actual = dest.stat().st_size
    if size is not None and actual != size:  # kept: the expected size is not Inria's own word
        raise InriaDownloadError(
            f"{dest} has {actual} bytes, expected {size}; delete it and run again to download "
            f"it anew, or " + _MANUAL.format(out=dest.parent)
        )
    if md5 is not None and (got_md5 := _md5(dest)) != md5:  # kept: it may be a file the user put there
        raise InriaDownloadError(
            f"{dest} has MD5 {got_md5}, expected {md5} (a damaged download); delete it and run again to "
            f"download it anew"
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


# Prefix of the temporary folders the extraction steps work in (hidden; removed by the next run).
_SCRATCH_PREFIX = ".extracting-"


@contextlib.contextmanager
def _scratch(out: Path) -> Iterator[Path]:
    """A temporary folder inside ``out`` (same file system: moving out of it is a rename), always removed."""
    folder = mark_folder(tempfile.mkdtemp(prefix=_SCRATCH_PREFIX, dir=out), "an extraction's scratch folder")
    try:
        yield folder
    finally:
        remove(folder)


def _remove_leftovers(out: Path) -> None:
    """Delete the temporary folders that a killed run left behind (they may hold tens of GB)."""
    for leftover in sorted(out.iterdir()):
        if leftover.name.startswith(_SCRATCH_PREFIX):
            try:
                remove(leftover)
            except NotPlinknetsError as error:  # an older plinknet's, unmarked: the user decides
                print(f"plinknet download: {error}", file=sys.stderr)


def _extract_7z(volumes: list[Path], dest: Path, progress: bool = True) -> None:
    """Extract the multi-volume archive whose first volume is ``volumes[0]`` into ``dest``.

    Uses the ``7z``/``7za``/``7zz`` tool when found, else py7zr + multivolumefile.
    """
    first, out = volumes[0], volumes[0].parent
    tool = shutil.which("7z") or shutil.which("7za") or shutil.which("7zz")
    if tool:
        try:
            subprocess.run([tool, "x", "-y", f"-o{dest}", str(first)], check=True,
                           stdout=None if progress else subprocess.DEVNULL)  # fmt: skip
        except subprocess.CalledProcessError as error:
            raise InriaDownloadError(
                f"{tool} could not extract {first} (exit code {error.returncode}); the "
                f"volumes may be corrupt: delete {out}/*.7z.* and run again"
            ) from None
        return
    try:
        import multivolumefile
        import py7zr
    except ImportError:
        raise InriaDownloadError(
            f"the archive is downloaded but neither the `7z` tool nor py7zr + multivolumefile is "
            f"installed to extract it: `apt install p7zip-full` (Debian/Ubuntu) or `pip install py7zr "
            f"multivolumefile`, then run again. Or by hand:\n  7z x {first} -o{out}\nthen run again, "
            f"or " + _MANUAL.format(out=out)
        ) from None
    stem = first.with_suffix("")  # multivolumefile reads every stem.* file, in name order
    if extra := sorted(set(out.glob(stem.name + ".*")) - set(volumes)):
        raise InriaDownloadError(f"{extra[0]} would be read as one more volume of {first}; move it elsewhere")
    try:
        with (
            multivolumefile.open(stem, mode="rb") as joined,
            py7zr.SevenZipFile(joined, mode="r") as archive,
        ):
            archive.extractall(dest)
    except (py7zr.exceptions.ArchiveError, EOFError) as error:
        raise InriaDownloadError(
            f"py7zr could not extract {first} ({type(error).__name__}: {error}); the volumes may "
            f"be corrupt: delete {out}/*.7z.* and run again"
        ) from None


def _unzip(zip_path: Path, dest: Path, progress: bool = True) -> None:
    """Unpack ``zip_path`` into ``dest`` one member at a time, with a progress bar."""
    from tqdm import tqdm

    with zipfile.ZipFile(zip_path) as archive:
        for member in tqdm(archive.infolist(), unit="file", desc=zip_path.name, disable=not progress):
            archive.extract(member, dest)


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
    against torchgeo's MD5 and unzipped. Both extractions work in a hidden temporary folder in
    ``out_dir`` and rename their result into place only when complete; a killed run leaves no
    zip or ``AerialImageDataset`` behind, only a temporary folder that the next run deletes.
    Nothing is fetched when the dataset is already there. The volumes and the zip (about 40 GB
    together) can be deleted afterwards.

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
    if dataset.exists() and any(dataset.iterdir()):
        raise InriaDownloadError(
            f"{dataset} exists but has no train/images (an interrupted unzip by an older version?); "
            f"delete it and run again"
        )
    out.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
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
        with _scratch(out) as scratch:
            _extract_7z(volumes, scratch, progress)
            if not (scratch / INRIA_ZIP_NAME).is_file():
                raise InriaDownloadError(
                    f"extracting {volumes[0]} gave no {INRIA_ZIP_NAME}; " + _MANUAL.format(out=out)
                )
            move_into_place(scratch / INRIA_ZIP_NAME, zip_path)  # complete: move into place
    if (got := _md5(zip_path)) != INRIA_ZIP_MD5:
        raise InriaDownloadError(
            f"{zip_path} has MD5 {got}, expected {INRIA_ZIP_MD5}; delete it and the .7z.* "
            f"volumes and run again, or " + _MANUAL.format(out=out)
        )
    with _scratch(out) as scratch:
        _unzip(zip_path, scratch, progress)
        if not (scratch / "AerialImageDataset" / "train" / "images").is_dir():
            raise InriaDownloadError(
                f"{zip_path} did not unpack to AerialImageDataset/train/images; " + _MANUAL.format(out=out)
            )
        move_into_place(scratch / "AerialImageDataset", dataset)  # complete: rename into place
    return dataset
