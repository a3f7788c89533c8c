"""plinknet evaluate: whole tiles, shared among torchrun processes, reports that survive write errors."""

import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import FIXTURE, TORCHRUN, run_killable, sharp_model, write_checkpoint

from plinknet.infer import evaluate_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(sharp_model(), tmp_path_factory.mktemp("ckpt") / "model.pt")


def evaluate_cli(*args, launcher=(sys.executable,)):
    return run_killable([*launcher, "-m", "plinknet", "evaluate", *map(str, args), "--device", "cpu", "--quiet"])


def test_torchrun_shares_tiles_and_gives_the_single_process_report(checkpoint, tmp_path):
    code, _, stderr = evaluate_cli("--data-dir", FIXTURE, "--checkpoint", checkpoint, "--split", "all",
                                   "--out", tmp_path / "one.json")  # fmt: skip
    assert code == 0, stderr[-2000:]
    code, stdout, stderr = evaluate_cli("--data-dir", FIXTURE, "--checkpoint", checkpoint, "--split", "all",
                                        "--out", tmp_path / "two.json", launcher=TORCHRUN)  # fmt: skip
    assert code == 0, stderr[-2000:]
    assert stdout.count("overall") == 1  # rank 0 alone prints
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert (one.pop("world_size"), two.pop("world_size")) == (1, 2)
    one.pop("seconds"), two.pop("seconds")
    assert one == two
    assert set(one["per_tile"]) == {"austin1", "austin6", "tyrol-w1", "tyrol-w6"}
    assert sum(one["overall"][k] for k in ("tp", "fp", "fn", "tn")) == 4 * 64 * 80
    assert 0 < one["overall"]["tp"] and 0 < one["overall"]["tn"]


def test_named_tiles_only(checkpoint):
    report = evaluate_checkpoint(checkpoint, FIXTURE, device="cpu", progress=False, tiles=["tyrol-w6"])
    assert list(report["per_tile"]) == ["tyrol-w6"] and list(report["per_city"]) == ["tyrol-w"]
    assert report["split"] == "tiles" and report["window"] == 64  # the checkpoint's training crop
    with pytest.raises(ValueError, match="vienna9"):
        evaluate_checkpoint(checkpoint, FIXTURE, device="cpu", progress=False, tiles=["vienna9"])


def test_results_are_shown_even_when_the_report_cannot_be_written(checkpoint, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, stdout, stderr = evaluate_cli("--data-dir", FIXTURE, "--checkpoint", checkpoint,
                                        "--out", blocker / "metrics.json")  # fmt: skip
    assert code == 1 and "overall" in stdout
    assert "results are above" in stderr and stderr.count("\n") == 1
    out = tmp_path / "new" / "m.json"
    code, stdout, _ = evaluate_cli("--data-dir", FIXTURE, "--checkpoint", checkpoint, "--out", out)
    assert code == 0 and json.loads((tmp_path / "new" / "m.json").read_text())["split"] == "val"


def test_a_damaged_tile_is_named(checkpoint, tmp_path):
    data = Path(shutil.copytree(FIXTURE, tmp_path / "data"))
    damaged = data / "AerialImageDataset/train/images/austin1.tif"
    damaged.write_bytes(damaged.read_bytes()[:-300])
    code, _, stderr = evaluate_cli("--data-dir", data, "--checkpoint", checkpoint, "--out", tmp_path / "m.json")
    assert code == 1 and str(damaged) in stderr, stderr
    damaged.write_bytes((FIXTURE / "AerialImageDataset/train/images/austin1.tif").read_bytes())
    mask = data / "AerialImageDataset/train/gt/austin1.tif"
    mask.write_bytes(mask.read_bytes()[:-300])
    code, _, stderr = evaluate_cli("--data-dir", data, "--checkpoint", checkpoint, "--out", tmp_path / "m.json")
    assert code == 1 and str(mask) in stderr, stderr
