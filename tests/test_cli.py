"""End to end through the real `plinknet` command: synth -> train -> evaluate -> predict."""

import json
import subprocess
import sys

import numpy as np
import rasterio


def plinknet(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "plinknet", *map(str, args)], capture_output=True, text=True,
                            timeout=300, check=False)  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_synth_train_evaluate_predict(tmp_path):
    data = tmp_path / "sample"
    plinknet("synth", "--out", data, "--seed", "1", "--tile-size", "128", "--train-tiles", "1", "--val-tiles", "1")
    run = tmp_path / "run"
    plinknet("train", "--data-dir", data, "--out-dir", run, "--encoder-name", "resnet18", "--encoder-weights",
             "none", "--epochs", "1", "--batch-size", "4", "--crop-size", "64", "--samples-per-tile", "2",
             "--workers", "0", "--no-progress", "--pyramid-bins", "1", "2")  # fmt: skip
    assert (run / "best.pt").is_file() and (run / "history.csv").is_file()

    result = plinknet("evaluate", "--data", data, "--checkpoint", run / "best.pt", "--quiet", "--device", "cpu")
    assert "overall" in result.stdout and "gridtown" in result.stdout
    report = json.loads((run / "metrics.json").read_text())
    assert set(report["per_city"]) == {"gridtown", "suburbia", "farmland", "alpine", "oldtown"}
    total = sum(report["overall"][k] for k in ("tp", "fp", "fn", "tn"))
    assert total == 5 * 128 * 128  # every pixel of every validation tile counted once

    scene = data / "AerialImageDataset" / "train" / "images" / "suburbia1.tif"
    out = tmp_path / "mask.tif"
    plinknet("predict", "--checkpoint", run / "best.pt", scene, out, "--geojson", tmp_path / "b.geojson",
             "--quiet", "--device", "cpu")  # fmt: skip
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and dst.shape == src.shape
        assert set(np.unique(dst.read(1))) <= {0, 255}
    assert json.loads((tmp_path / "b.geojson").read_text())["type"] == "FeatureCollection"


def test_user_errors_are_one_line(tmp_path):
    result = plinknet("train", "--data-dir", tmp_path / "nowhere", "--encoder-weights", "none", check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "nowhere" in result.stderr and "Traceback" not in result.stderr
    result = plinknet("train", "--config", tmp_path / "missing.yaml", check=False)
    assert result.returncode == 1 and "missing.yaml" in result.stderr


def test_help_lists_training_options():
    out = plinknet("train", "--help").stdout
    for option in ("--lr", "--batch-size", "--pyramid-bins", "--encoder-weights", "--resume", "--config"):
        assert option in out
