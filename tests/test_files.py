"""The one atomic writer (files and folders) and the one file key."""

from __future__ import annotations

import ast
import contextlib
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plinknet.files import (
    MARK,
    NotPlinknetsError,
    atomic_folder,
    atomic_path,
    file_key,
    mark_folder,
    plinknets,
    remove,
    temporary_name,
    write_once,
    write_text,
)

ROOT = Path(__file__).resolve().parents[1]


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


def test_a_folder_is_replaced_only_when_asked_and_only_when_plinknets(tmp_path):
    target = tmp_path / "sample"
    target.mkdir()
    (target / "keep.txt").write_text("user's")
    with pytest.raises(FileExistsError, match="another writer"), atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    with pytest.raises(NotPlinknetsError, match=f"did not replace {target}"), atomic_folder(target, replace=True):
        pass
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    (target / "keep.txt").unlink()
    mark_folder(target, "a test's folder")
    with atomic_folder(target, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample"]  # neither the old one nor a temporary is left


def test_what_a_killed_writer_left_is_removed_but_not_a_running_ones(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f".sample.{int(dead.stdout)}-0000aaaa.tmp"
    running = tmp_path / f".sample.{os.getppid()}-1111bbbb.tmp"  # pytest's parent: a writer still running
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

    target = mark_folder(tmp_path / "sample", "an earlier sample")
    (target / "keep.txt").write_text("the old sample")

    def failing_rename(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(files.os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk gone"), atomic_folder(target, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == [MARK, "keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample"]


def test_remove_deletes_only_what_carries_plinknets_mark(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    for path in (user, user / "notes.txt"):
        with pytest.raises(NotPlinknetsError, match=f"did not delete {path}: it carries no mark"):
            remove(path)
    assert (user / "notes.txt").read_text() == "mine"
    assert remove(tmp_path / "absent") == 0

    made = mark_folder(tmp_path / "made", "a test's folder")
    (made / "sub").mkdir()
    (made / "sub" / "a.txt").write_text("x")
    assert "inside" in plinknets(made / "sub" / "a.txt") and remove(made / "sub" / "a.txt") == 1
    with pytest.raises(NotPlinknetsError):  # checked together: a user's path among them stops them all
        remove(made, user / "notes.txt")
    assert made.is_dir()
    assert remove(made) == 1 and not made.exists()
    with pytest.raises(FileExistsError, match="did not make"):
        mark_folder(user, "a user's folder")  # a folder with files is never adopted
    assert not (user / MARK).exists()

    sample = tmp_path / "data" / "AerialImageDataset"
    (sample / "train").mkdir(parents=True)
    (sample / "plinknet-synth.json").write_text("{}")
    assert plinknets(sample / "train") and remove(sample) == 1

    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "history.csv", "notes.txt"):
        (run / name).write_text(name)
    with pytest.raises(NotPlinknetsError):  # a config.yaml without a checkpoint: not (yet) a run
        remove(run / "history.csv")
    (run / "last.pt").write_bytes(b"checkpoint")
    with pytest.raises(NotPlinknetsError):  # the user's file beside a run
        remove(run / "notes.txt")
    assert remove(*(run / name for name in ("history.csv", "config.yaml", "last.pt"))) == 3
    assert [p.name for p in run.iterdir()] == ["notes.txt"]

    link = tmp_path / "link"
    link.symlink_to(mark_folder(tmp_path / "made2", "a test's folder"))
    (tmp_path / "made2" / "a.txt").write_text("x")
    with pytest.raises(NotPlinknetsError):  # a mark is not followed through a link
        remove(link / "a.txt")


def test_temporaries_of_running_writers_are_left_alone(tmp_path):
    ours = temporary_name(tmp_path / "a.tif")
    ours.write_text("x")
    theirs = tmp_path / f".a.{os.getppid()}-0123abcd.tmp.tif"
    theirs.write_text("x")
    glob = tmp_path / "runs[1]"  # a path with glob characters is a path, not a pattern
    stale = tmp_path / ".runs[1].99999999-0123abcd.tmp"
    stale.mkdir()
    assert plinknets(ours) == "a temporary of this process" and remove(ours) == 1
    assert plinknets(theirs) is None
    with atomic_folder(glob) as tmp:
        (tmp / "x").write_text("x")
    assert not stale.exists() and (glob / "x").is_file()


DELETING = {"rmtree", "move", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace"}


def deleting_calls(source: str) -> list[str]:
    """The calls in ``source`` that delete, rename or replace a path (or import such a function)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "shutil"):
            found += [f"from {node.module} import {a.name}" for a in node.names if a.name in DELETING]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in DELETING:
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            one_path = len(node.args) == 1 and not node.keywords  # Path.rename(t), Path.replace(t)
            if owner in ("os", "shutil") or func.attr in ("unlink", "rmdir", "rmtree") or \
                    (func.attr in ("rename", "replace") and one_path):  # fmt: skip
                found.append(f"line {node.lineno}: {ast.unparse(func)}(...)")
    return found


def test_the_scan_finds_every_way_to_delete():
    source = """
import os, shutil
from shutil import rmtree
shutil.rmtree(a); os.remove(a); os.unlink(a); os.replace(a, b); os.rename(a, b); os.rmdir(a); shutil.move(a, b)
path.unlink(); path.rmdir(); path.rename(b); path.replace(b)
"""
    assert len(deleting_calls(source)) == 12
    harmless = "text.replace('a', 'b'); items.remove(x); dataclasses.replace(c, a=1); frame.rename(columns=m)"
    assert deleting_calls(harmless) == []


def test_nothing_deletes_but_the_one_guarded_function():
    """plinknet/files.py alone deletes, renames or replaces; the package and the book's helpers go through it."""
    offenders = {}
    for folder in ("plinknet", "book/plinknet_book"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "plinknet" / "files.py":
                continue
            calls = deleting_calls(path.read_text())
            if calls:
                offenders[str(path.relative_to(ROOT))] = calls
    assert not offenders, offenders


def test_make_clean_keeps_runs_and_clean_runs_only_lists_them(tmp_path):
    for folder in ("_build/html", "runs/ablation/seed0", "results/x", "book/__pycache__", ".venv/lib/__pycache__"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "runs/ablation/seed0/best.pt").write_bytes(b"checkpoint")

    def make(*args: str) -> str:
        done = subprocess.run(["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "-C", str(tmp_path),
                               *args], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    make("clean")
    assert not (tmp_path / "_build").exists() and not (tmp_path / "book/__pycache__").exists()
    assert (tmp_path / "runs/ablation/seed0/best.pt").is_file() and (tmp_path / "results/x").is_dir()
    assert (tmp_path / ".venv/lib/__pycache__").is_dir()
    for confirm in ([], ["CONFIRM=yes"]):
        listed = make("clean-runs", *confirm)
        assert "runs/ablation" in listed and "nothing deleted" in listed and "delete yourself" in listed
        assert (tmp_path / "runs/ablation/seed0/best.pt").is_file() and (tmp_path / "results/x").is_dir()


def test_the_scale_rehearsal_replaces_only_a_folder_it_made(tmp_path, monkeypatch):
    from plinknet.trials import scale_rehearsal

    def stop(*args, **kwargs):
        raise SystemExit("stopped after the folder was prepared")

    monkeypatch.setattr(scale_rehearsal, "phase", stop)
    out = tmp_path / "runs"
    (out / "ablation").mkdir(parents=True)
    (out / "ablation" / "best.pt").write_bytes(b"a GPU run")
    monkeypatch.setattr(sys, "argv", ["rehearsal", "--out", str(out), "--data-dir", str(tmp_path / "none")])
    with pytest.raises(SystemExit, match=f"did not delete {out}"):
        scale_rehearsal.main()
    assert (out / "ablation" / "best.pt").read_bytes() == b"a GPU run"

    own = tmp_path / "rehearsal"
    monkeypatch.setattr(sys, "argv", ["rehearsal", "--out", str(own), "--data-dir", str(tmp_path / "none")])
    for _ in range(2):  # new, then its own folder again: replaced
        with pytest.raises(SystemExit, match="stopped after"):
            scale_rehearsal.main()
        assert sorted(p.name for p in own.iterdir()) == [MARK]
        (own / "synth.log").write_text("an earlier rehearsal's log")


@contextlib.contextmanager
def _tmpfs(folder: Path, options: str):
    """A tmpfs mounted on ``folder`` (needs root and a kernel that lets this process mount; skipped otherwise)."""
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip(f"cannot mount a tmpfs ({options}) here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB file system."""
    with _tmpfs(tmp_path / "disk", "size=2m") as disk:
        yield disk


def test_a_full_disk_is_said_plainly_and_leaves_the_last_good_files(small_disk):
    import numpy as np
    import torch

    from plinknet.files import DiskFullError, save_torch
    from plinknet.infer.scenes import RasterWriter

    checkpoint = save_torch({"w": torch.zeros(10)}, small_disk / "run" / "last.pt")
    good = checkpoint.read_bytes()
    with pytest.raises(DiskFullError, match=f"no space left .* while writing {checkpoint}; nothing half-written"):
        save_torch({"w": torch.zeros(1_000_000)}, checkpoint)  # 4 MB
    assert checkpoint.read_bytes() == good and os.listdir(checkpoint.parent) == ["last.pt"]
    assert shutil.disk_usage(small_disk).free > 1.5 * 2**20  # the space is free again: no handle left open

    mask = small_disk / "mask.tif"
    writer = RasterWriter(mask, 2048, 2048, None, None, 255, {})
    with pytest.raises(DiskFullError, match=f"while writing {mask}"):
        for row in range(0, 2048, 256):
            writer.write(np.random.default_rng(row).integers(0, 255, (256, 2048), dtype=np.uint8))
        writer.commit()
    assert sorted(os.listdir(small_disk)) == ["run"] and shutil.disk_usage(small_disk).free > 1.5 * 2**20

    with pytest.raises(DiskFullError, match="AerialImageDataset"), atomic_folder(small_disk / "AerialImageDataset") \
            as tmp:  # fmt: skip
        (tmp / "tile.bin").write_bytes(os.urandom(3 << 20))
    assert sorted(os.listdir(small_disk)) == ["run"] and shutil.disk_usage(small_disk).free > 1.5 * 2**20

    with pytest.raises(DiskFullError, match=f"while writing {small_disk / 'summary.json'}"):
        write_once(small_disk / "summary.json", "x" * (3 << 20))
    assert sorted(os.listdir(small_disk)) == ["run"] and shutil.disk_usage(small_disk).free > 1.5 * 2**20


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder on a read-only file system (as root, file modes would not stop a write)."""
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        yield folder


def test_every_writer_names_the_file_it_could_not_write_on_a_read_only_folder(read_only_folder, capsys):
    import numpy as np
    import torch

    from plinknet.cli import main
    from plinknet.files import UnwritableError, save_torch, write_json
    from plinknet.infer.scenes import RasterWriter

    target = read_only_folder / "run" / "last.pt"  # its folder cannot even be made
    writers = {"checkpoint": lambda: save_torch({"w": torch.zeros(3)}, target),
               "JSON": lambda: write_json({}, read_only_folder / "summary.json"),
               "archive file": lambda: write_once(read_only_folder / "results.csv", "a,b\n"),
               "GeoTIFF": lambda: RasterWriter(read_only_folder / "mask.tif", 8, 8, None, None, 255, {}).write(
                   np.zeros((8, 8), np.uint8)),
               "folder": lambda: atomic_folder(read_only_folder / "AerialImageDataset").__enter__()}  # fmt: skip
    for name, write in writers.items():
        with pytest.raises(UnwritableError, match=rf"cannot write {read_only_folder}/\S+: its file system is "
                           r"read-only") as caught:  # fmt: skip
            write()
        assert ".tmp" not in str(caught.value), (name, caught.value)  # the file asked for, not a temporary
    assert main(["synth", "--out", str(read_only_folder / "sample"), "--tile-size", "64"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"plinknet synth: error: cannot write {read_only_folder}/sample")


def test_a_whole_synth_on_a_full_disk_ends_in_one_line_and_leaves_nothing(small_disk, capsys):
    from plinknet.cli import main

    out = small_disk / "sample"
    assert main(["synth", "--out", str(out), "--tile-size", "384", "--train-tiles", "1", "--val-tiles", "1"]) == 1
    err = capsys.readouterr().err.strip()  # the progress bar, then the error: its last line, and nothing after
    last = err.splitlines()[-1]
    assert last.startswith("plinknet synth: error:") and "no space left" in last and str(out) in last, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert os.listdir(out) == [] and shutil.disk_usage(small_disk).free > 1.5 * 2**20  # no half sample
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)  # space freed: run again
    assert main(["synth", "--out", str(out), "--tile-size", "384", "--train-tiles", "1", "--val-tiles", "1"]) == 0
    assert (out / "AerialImageDataset" / "plinknet-synth.json").is_file()


def test_an_archive_file_is_written_once(tmp_path, monkeypatch):
    path = tmp_path / "archive" / "summary.json"
    assert write_once(path, "one") is True and path.read_text() == "one"
    stamp = path.stat().st_mtime_ns
    assert write_once(path, "one") is False and path.stat().st_mtime_ns == stamp  # the same: nothing written
    with pytest.raises(FileExistsError, match=f"{path} exists and holds something else"):
        write_once(path, "two")
    assert path.read_text() == "one" and os.listdir(path.parent) == ["summary.json"]
    real_link = os.link

    def another_writer_first(source, target):  # lands between the check and the link
        Path(target).write_text("theirs")
        real_link(source, target)

    monkeypatch.setattr(os, "link", another_writer_first)
    with pytest.raises(FileExistsError, match="holds something else"):
        write_once(tmp_path / "raced.json", "mine")
    assert (tmp_path / "raced.json").read_text() == "theirs" and sorted(os.listdir(tmp_path)) == ["archive",
                                                                                                 "raced.json"]

    def no_hard_links(source, target):  # FAT, some FUSE mounts (Google Drive on Colab)
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    assert write_once(tmp_path / "drive" / "results.csv", "a,b\n") is True
    assert (tmp_path / "drive" / "results.csv").read_text() == "a,b\n" and os.listdir(tmp_path / "drive") == [
        "results.csv"]  # fmt: skip
    assert write_once(tmp_path / "drive" / "results.csv", "a,b\n") is False
    with pytest.raises(FileExistsError, match="holds something else"):
        write_once(tmp_path / "drive" / "results.csv", "c,d\n")


def test_a_lock_held_by_a_killed_process_is_free_at_once(tmp_path):
    import signal
    import time

    lock = tmp_path / ".run.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom plinknet.files import exclusive\n"
                               f"with exclusive({str(lock)!r}, 'a test'):\n    print('held', flush=True)\n"
                               "    time.sleep(600)"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    waiter = subprocess.Popen([sys.executable, "-c", f"from plinknet.files import exclusive\n"
                               f"with exclusive({str(lock)!r}, 'a test'):\n    print('got it')"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    import select

    assert select.select([waiter.stderr], [], [], 120)[0], "the waiter said nothing in 2 minutes"
    said = waiter.stderr.readline()  # it says it waits, and waits while the holder lives
    time.sleep(1)
    assert waiter.poll() is None
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    out, err = waiter.communicate(timeout=30)
    assert out.strip() == "got it" and "waiting for another process, which holds" in said and lock.name in said
