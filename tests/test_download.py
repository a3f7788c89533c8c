"""Tests for plinknet/download.py against a local HTTP server (no internet needed)."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import socket
import threading
import time
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from plinknet import download
from plinknet.data import find_tiles
from plinknet.download import InriaDownloadError, download_file, download_inria

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "data" / "inria"

_spec = importlib.util.spec_from_file_location("make_inria_fixture", HERE / "data/make_inria_fixture.py")
make_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixture)


@pytest.fixture(scope="session")
def root() -> Path:
    """The committed fixture (written again if someone deleted it)."""
    if not (FIXTURE / "AerialImageDataset/train/images/austin1.tif").exists():
        make_fixture.main(FIXTURE)
    return FIXTURE


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
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
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
    with pytest.raises(InriaDownloadError, match="MD5"):
        download_file(f"{url}/volume.bin", dest, md5="0" * 32, progress=False)
    assert not dest.exists()
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


