"""plinknet ablate: paired runs over seeds, archived results, statistics that can be checked by hand."""

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from plinknet import ablation
from plinknet.ablation import paired_bootstrap, run_ablation, summarize, verdict
from plinknet.synthetic import SyntheticConfig, generate
from plinknet.train import TrainConfig


@pytest.fixture(scope="module")
def lab_sample(tmp_path_factory):
    """A tiny synthetic sample with lab labels: 5 cities x (1 validation + 2 training tiles) of 96 px."""
    out = tmp_path_factory.mktemp("lab")
    generate(out, seed=3, config=SyntheticConfig(tile_size=96, val_tiles=1, train_tiles=2), progress=False)
    return out


def tiny(data, **overrides) -> TrainConfig:
    values = dict(data_dir=str(data), encoder_name="resnet18", encoder_weights=None, crop_size=64, batch_size=4,
                  samples_per_tile=1, val_samples_per_tile=1, epochs=1, lr_milestones=(), workers=0,
                  progress=False, select_tiles=(6,))  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def test_ablation_archives_resumes_and_reports(lab_sample, tmp_path, monkeypatch):
    out, runs = tmp_path / "archive", tmp_path / "runs"
    summary = run_ablation(tiny(lab_sample), [0, 1], out, runs, bootstrap_draws=300)
    names = sorted(p.name for p in (out / "runs").iterdir())
    assert names == ["seed0-linknet34.json", "seed0-plinknet.json", "seed1-linknet34.json", "seed1-plinknet.json"]
    assert not list(out.rglob("*.pt")) and list(runs.rglob("best.pt"))  # checkpoints stay out of the archive
    saved = json.loads((out / "summary.json").read_text())
    assert saved["seeds"] == [0, 1] and set(saved["models"]) == {"P-LinkNet", "LinkNet34"}
    for metric in ("iou", "miou", "f1"):
        low, high = saved[f"gap_{metric}_ci95"]
        assert low <= saved[f"gap_{metric}_mean"] <= high
    assert saved["runs_for_paper_gap"] >= 2 and saved["sigma_iou"] >= 0
    assert len(saved["data_sha256"]) == 64 and saved["provenance"]["torch"]
    assert "recall_large" in saved["lab"]["models"]["P-LinkNet"]
    plinknet_seed0 = json.loads((out / "runs" / "seed0-plinknet.json").read_text())
    linknet_seed0 = json.loads((out / "runs" / "seed0-linknet34.json").read_text())
    assert plinknet_seed0["config"]["pyramid_bins"] == [1, 2, 3, 6] and linknet_seed0["config"]["pyramid_bins"] == []
    assert plinknet_seed0["best_on"] == "select" and plinknet_seed0["window"] == 64
    assert set(plinknet_seed0["per_tile"]) == {f"{c}1" for c in ("alpine", "farmland", "gridtown", "oldtown",
                                                                "suburbia")}  # fmt: skip  # validation tiles only
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 * 2 * 5 and {"tp", "f1", "large_total", "distractor_pixels"} <= set(rows[0])
    assert summary["gap_iou_mean"] == saved["gap_iou_mean"]

    # a second call trains nothing: every run is archived
    monkeypatch.setattr(ablation, "run_one", lambda *a, **k: pytest.fail("a finished run was run again"))
    again = run_ablation(tiny(lab_sample), [0, 1], out, runs, bootstrap_draws=300)
    assert again["gap_iou_mean"] == summary["gap_iou_mean"]


def test_ablate_command_line(lab_sample, tmp_path):
    config = tmp_path / "book-params.yaml"  # a book parameter file: notebook-only keys are ignored
    config.write_text(f"data_dir: {lab_sample}\nsynthetic: true\nrun_dir: ../runs\nepochs: 1\n")
    cmd = [sys.executable, "-m", "plinknet", "ablate", "--config", str(config), "--seeds", "4", "5", "--out",
           str(tmp_path / "a"), "--runs-dir", str(tmp_path / "r"), "--encoder-name", "resnet18", "--encoder-weights",
           "none", "--crop-size", "64", "--batch-size", "4", "--samples-per-tile", "1", "--workers", "0",
           "--lr-milestones", "--no-progress"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "95 % interval" in result.stdout and (tmp_path / "a" / "summary.json").is_file()
    one_seed = [*cmd[:7], "3", *cmd[9:]]  # no spread to measure
    result = subprocess.run(one_seed, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "two distinct seeds" in result.stderr


def _record(seed, model, counts):
    return {"seed": seed, "model": model, "per_tile": {f"t{i}": c for i, c in enumerate(counts)}, "split": "val",
            "window": 512, "best_epoch": 1, "lab": None}  # fmt: skip


def test_summary_statistics_by_hand():
    # two tiles; per seed P-LinkNet has IoU 0.5 and LinkNet34 0.4 or 0.3 (gaps 10 and 20 points)
    records = []
    for seed, fp in ((0, 25), (1, 70)):
        records.append(_record(seed, "P-LinkNet", [[25, 25, 0, 50], [25, 25, 0, 50]]))  # IoU 50/100
        records.append(_record(seed, "LinkNet34", [[20, fp, 10, 50], [20, fp, 10, 50]]))
    summary = summarize(records, bootstrap_draws=2000)
    iou_l = [100 * 40 / (40 + 50 + 20), 100 * 40 / (40 + 140 + 20)]  # 36.36, 20.0
    assert summary["models"]["LinkNet34"]["iou_per_seed"] == pytest.approx(iou_l, abs=1e-3)
    gaps = [50 - iou_l[0], 50 - iou_l[1]]
    assert summary["gap_iou_mean"] == pytest.approx(np.mean(gaps))
    assert summary["sigma_iou"] == pytest.approx(np.std(gaps, ddof=1))
    expected_runs = math.ceil(((1.959964 + 0.841621) * np.std(gaps, ddof=1) / 0.22) ** 2)
    assert summary["runs_for_paper_gap"] == expected_runs
    low, high = summary["gap_iou_ci95"]
    assert min(gaps) - 1e-9 <= low <= summary["gap_iou_mean"] <= high <= max(gaps) + 1e-9
    assert verdict(summary) == "reproduced"  # the interval lies above 0 (far above +0.22, even)
    assert verdict(None) == "not tested at paper scale"


def test_bootstrap_of_identical_networks_is_centred_on_zero():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 1000, size=(5, 8, 4))
    draws = paired_bootstrap(counts, counts, lambda c: ablation._score(c, "iou"), 500)
    assert np.all(draws == 0)
    noisy = counts + rng.integers(0, 50, size=counts.shape)
    draws = paired_bootstrap(noisy, counts, lambda c: ablation._score(c, "iou"), 2000)
    assert draws.std() > 0 and np.percentile(draws, 2.5) < np.percentile(draws, 97.5)
