"""The one atomic writer (files and folders) and the one file key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from plinknet.files import atomic_folder, atomic_path, file_key, temporary_name, write_text


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = write_text(tmp_path / "out" / "record.json", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["record.json"]


def test_two_writers_of_one_file_never_share_a_temporary_name(tmp_path):
    target = tmp_path / "best.pt"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.suffix == second.suffix == ".pt" and first.name.startswith(".")
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block completes last
    assert temporary_name(target) != temporary_name(target)


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "AerialImageDataset"
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "a.tif").write_text("x")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(target) as tmp:
        (tmp / "a.tif").write_text("x")
    assert [p.name for p in target.iterdir()] == ["a.tif"]


def test_a_folder_is_replaced_only_when_asked(tmp_path):
    target = tmp_path / "sample"
    target.mkdir()
    (target / "keep.txt").write_text("user's")
    with pytest.raises(FileExistsError, match="another writer"), atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    with atomic_folder(target, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample"]  # neither the old one nor a temporary is left


def test_what_a_killed_writer_left_is_removed_but_not_a_running_ones(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f".sample.{int(dead.stdout)}-0000.tmp"
    running = tmp_path / f".sample.{os.getpid()}-1111.tmp"
    for folder in (left, running):
        folder.mkdir()
    with atomic_folder(tmp_path / "sample"):
        pass
    assert not left.exists() and running.exists()


def test_file_keys(tmp_path):
    a, b = write_text(tmp_path / "a", "same"), write_text(tmp_path / "b", "same")
    assert file_key(a, content=True) == file_key(b, content=True)  # content: the same bytes anywhere
    assert file_key(a) != file_key(b)  # path, size and time: another path is another key
    before = file_key(a)
    os.utime(a, ns=(0, 0))
    assert file_key(a) != before


def test_a_replacement_that_does_not_land_gives_the_old_folder_back(tmp_path, monkeypatch):
    import plinknet.files as files

    target = tmp_path / "sample"
    target.mkdir()
    (target / "keep.txt").write_text("user's")

    def failing_rename(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(files.os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk gone"), atomic_folder(target, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample"]
