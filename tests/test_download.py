"""Tests for plinknet/data/download.py against a local HTTP server (no internet needed)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import pytest

from plinknet.data import InriaDataError, download, find_tiles
from plinknet.data.download import InriaDownloadError, download_file, download_inria

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path, honours ``Range: bytes=N-``, can drop the line halfway."""

    cut = False  # send only the first half of the bytes, then hang up
    ranges: ClassVar[list[str]] = []  # Range headers received

    def do_GET(self):
        start = 0
        if header := self.headers.get("Range"):
            type(self).ranges.append(header)
            start = int(header.removeprefix("bytes=").rstrip("-"))
        if start >= len(PAYLOAD):
            self.send_response(416)
            self.end_headers()
            return
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if type(self).cut else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _RangeHandler.cut, _RangeHandler.ranges = False, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _RangeHandler
    httpd.shutdown()
    httpd.server_close()


def test_download_resumes(server, tmp_path):
    url, handler = server
    dest = tmp_path / "volume.bin"
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    handler.cut = True
    with pytest.raises(InriaDownloadError, match="run again to resume"):
        download_file(f"{url}/volume.bin", dest, md5=md5, progress=False)
    part = tmp_path / "volume.bin.part"
    assert part.stat().st_size == len(PAYLOAD) // 2 and not dest.exists()
    handler.cut = False
    assert download_file(f"{url}/volume.bin", dest, size=len(PAYLOAD), md5=md5, progress=False)
    assert handler.ranges == [f"bytes={len(PAYLOAD) // 2}-"]
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_download_checksum_mismatch(server, tmp_path):
    url, _ = server
    dest = tmp_path / "volume.bin"
    with pytest.raises(InriaDownloadError, match="MD5.*delete it and run again"):
        download_file(f"{url}/volume.bin", dest, md5="0" * 32, progress=False)
    assert dest.read_bytes() == PAYLOAD  # kept: plinknet deletes nothing it cannot tell is its own
    dest.unlink()
    with pytest.raises(InriaDownloadError, match="expected 12;"):
        download_file(f"{url}/volume.bin", dest, size=12, progress=False)
    assert dest.read_bytes() == PAYLOAD  # kept, the size table may be the one at fault


def test_download_offline_fails_fast(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(InriaDownloadError) as error:
        download_inria(tmp_path, urls=(f"http://127.0.0.1:{port}/aerialimagelabeling.7z.001",))
    assert time.monotonic() - start < 2
    assert "https://project.inria.fr/aerialimagelabeling/" in str(error.value)
    assert "AerialImageDataset/train/{images,gt}/" in str(error.value)


def test_download_without_extractor_says_what_to_run(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setattr(download.shutil, "which", lambda name: None)
    monkeypatch.setitem(__import__("sys").modules, "py7zr", None)  # import fails
    urls = tuple(f"{url}/volume.7z.00{k}" for k in (1, 2))
    with pytest.raises(InriaDownloadError, match=r"7z x .*volume\.7z\.001"):
        download_inria(tmp_path, urls=urls, progress=False)
    assert (tmp_path / "volume.7z.002").read_bytes() == PAYLOAD


def test_download_inria_unzips_and_skips_existing(root, tmp_path, monkeypatch):
    assert download_inria(root) == root / "AerialImageDataset"  # already there: no network
    archive = tmp_path / download.INRIA_ZIP_NAME
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((root / "AerialImageDataset").rglob("*.tif")):
            zipped.write(path, path.relative_to(root))
    monkeypatch.setattr(download, "INRIA_ZIP_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    dataset = download_inria(tmp_path)
    assert len(find_tiles(dataset, "all")) == 4


# ---------------------------------------------------------------- the archive in miniature

VOLUME_BYTES = 8192  # the real volumes are 4 GiB


class Archive(NamedTuple):
    folder: Path  # holds the volumes and, beside them, the zip they contain
    volumes: list[str]  # file names, e.g. inria.7z.001
    zip_path: Path
    zip_md5: str


@pytest.fixture(scope="module")
def archive(root, tmp_path_factory) -> Archive:
    """The fixture tiles packed like Inria's download: one zip in the official layout (plus a
    test/images tile), split over 7z volumes of 8 KB written by py7zr + multivolumefile."""
    py7zr = pytest.importorskip("py7zr")
    multivolumefile = pytest.importorskip("multivolumefile")
    folder = tmp_path_factory.mktemp("archive")
    zip_path = folder / download.INRIA_ZIP_NAME
    tiles = sorted((root / "AerialImageDataset").rglob("*.tif"))
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.write(tiles[0], "AerialImageDataset/test/images/bellingham1.tif")
        for path in tiles:
            zipped.write(path, path.relative_to(root).as_posix())
    with (
        multivolumefile.MultiVolume(folder / "inria.7z", mode="wb", volume=VOLUME_BYTES, ext_digits=3) as joined,
        py7zr.SevenZipFile(joined, mode="w") as seven,
    ):
        seven.write(zip_path, download.INRIA_ZIP_NAME)
    volumes = sorted(path.name for path in folder.glob("inria.7z.*"))
    assert len(volumes) >= 3 and volumes[0] == "inria.7z.001", volumes
    return Archive(folder, volumes, zip_path, hashlib.md5(zip_path.read_bytes()).hexdigest())


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def archive_server(archive):
    """The archive's folder over HTTP, like files.inria.fr."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=archive.folder))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _volumes_in_place(archive: Archive, out: Path) -> tuple[str, ...]:
    """Copy the volumes into ``out``; return addresses nobody answers at (no download happens)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in archive.volumes:
        shutil.copyfile(archive.folder / name, out / name)
    return tuple(f"http://127.0.0.1:9/{name}" for name in archive.volumes)


def _leftovers(out: Path) -> list[Path]:
    return sorted(out.glob(download._SCRATCH_PREFIX + "*"))


def _assert_complete(dataset: Path, root: Path) -> None:
    for path in (root / "AerialImageDataset").rglob("*.tif"):
        assert (dataset / path.relative_to(root / "AerialImageDataset")).read_bytes() == path.read_bytes()
    assert (dataset / "test" / "images" / "bellingham1.tif").is_file()
    assert len(find_tiles(dataset.parent, "all")) == 4
    assert not _leftovers(dataset.parent)


@pytest.mark.parametrize("extractor", ["py7zr", "7z tool"])
def test_download_inria_extracts_multivolume_7z(extractor, archive, archive_server, root, tmp_path, monkeypatch):
    tools = []
    if extractor == "py7zr":
        monkeypatch.setattr(download.shutil, "which", lambda name: None)
    elif not (shutil.which("7z") or shutil.which("7za") or shutil.which("7zz")):
        pytest.skip("no 7z tool installed (Debian/Ubuntu: apt install p7zip-full)")
    else:
        run = subprocess.run
        monkeypatch.setattr(download.subprocess, "run", lambda cmd, **kw: tools.append(cmd[0]) or run(cmd, **kw))
    monkeypatch.setattr(download, "INRIA_ZIP_MD5", archive.zip_md5)
    out = tmp_path / "inria"
    dataset = download_inria(out, urls=tuple(f"{archive_server}/{name}" for name in archive.volumes), progress=False)
    assert dataset == out / "AerialImageDataset"
    _assert_complete(dataset, root)
    assert (out / download.INRIA_ZIP_NAME).read_bytes() == archive.zip_path.read_bytes()
    assert len(tools) == (extractor == "7z tool")


def test_download_inria_checks_the_zip_md5(archive, tmp_path):
    out = tmp_path / "inria"
    urls = _volumes_in_place(archive, out)
    with pytest.raises(InriaDownloadError, match=f"MD5 {archive.zip_md5}, expected {download.INRIA_ZIP_MD5}"):
        download_inria(out, urls=urls, progress=False)  # the miniature zip is not Inria's
    assert not (out / "AerialImageDataset").exists() and not _leftovers(out)


# Run in a child process: download_inria with the volumes in place, killed (SIGKILL, so no
# clean-up code runs) halfway through the 7z step or the unzip step.
_KILLED_HALFWAY = """
import os, signal, sys, zipfile
from pathlib import Path
import py7zr
from plinknet.data import download

stage, out, md5, *urls = sys.argv[1:]
download.INRIA_ZIP_MD5 = md5
download.shutil.which = lambda name: None  # extract with py7zr
if stage == "7z":
    extractall = py7zr.SevenZipFile.extractall
    def half_extractall(self, path=None, **kwargs):
        extractall(self, path, **kwargs)
        zip_path = Path(path) / download.INRIA_ZIP_NAME
        os.truncate(zip_path, zip_path.stat().st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    py7zr.SevenZipFile.extractall = half_extractall
else:
    extract = zipfile.ZipFile.extract
    def half_extract(self, member, path=None, pwd=None):
        if "train/images/" in member.filename and list(Path(path).rglob("train/images/*.tif")):
            os.kill(os.getpid(), signal.SIGKILL)  # train/images holds one tile of four
        return extract(self, member, path, pwd)
    zipfile.ZipFile.extract = half_extract
download.download_inria(out, urls=urls, progress=False)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("stage", ["7z", "unzip"])
def test_killed_extraction_is_not_accepted_and_a_rerun_completes(stage, archive, root, tmp_path, monkeypatch):
    pytest.importorskip("py7zr")
    out = tmp_path / "inria"
    urls = _volumes_in_place(archive, out)
    killed = subprocess.run([sys.executable, "-c", _KILLED_HALFWAY, stage, str(out), archive.zip_md5, *urls],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    [leftover] = _leftovers(out)
    if stage == "7z":
        assert (leftover / download.INRIA_ZIP_NAME).stat().st_size < archive.zip_path.stat().st_size
        assert not (out / download.INRIA_ZIP_NAME).exists()
    else:
        assert len(list(leftover.rglob("train/images/*.tif"))) == 1  # the half tree exists, out of sight
    assert not (out / "AerialImageDataset").exists()
    with pytest.raises(InriaDataError):
        find_tiles(out, "all")

    monkeypatch.setattr(download, "INRIA_ZIP_MD5", archive.zip_md5)
    _assert_complete(download_inria(out, urls=urls, progress=False), root)


def test_failed_unzip_cleans_up(archive, tmp_path, monkeypatch):
    out = tmp_path / "inria"
    out.mkdir()
    shutil.copyfile(archive.zip_path, out / download.INRIA_ZIP_NAME)
    monkeypatch.setattr(download, "INRIA_ZIP_MD5", archive.zip_md5)
    extract, calls = zipfile.ZipFile.extract, []

    def disk_full(self, member, path=None, pwd=None):
        if calls:
            raise OSError(28, "No space left on device")
        calls.append(member)
        return extract(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", disk_full)
    with pytest.raises(OSError, match="No space left"):
        download_inria(out, progress=False)
    assert not (out / "AerialImageDataset").exists() and not _leftovers(out)


def test_download_inria_refuses_a_half_tree_of_an_older_version(tmp_path):
    (tmp_path / "AerialImageDataset" / "train" / "gt").mkdir(parents=True)
    (tmp_path / "AerialImageDataset" / "train" / "gt" / "austin1.tif").write_bytes(b"")
    with pytest.raises(InriaDownloadError, match="exists but has no train/images.*delete it"):
        download_inria(tmp_path, progress=False)
