"""plinknet.bench.gpu_check: every step runs (here in the CPU dry mode), keeps its figures and stays in its folder."""

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from helpers import fingerprint

import plinknet.bench.gpu_check as gpu_check

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings("ignore:the pyramid's centre map")  # toy crops, on purpose


def _repository_outputs() -> set[str]:
    """What a check could leave in the repository's own result folders."""
    return {str(p.relative_to(ROOT)) for folder in ("results", "runs") for p in (ROOT / folder).glob("gpu-check*")}


@contextlib.contextmanager
def sandbox(base: Path):
    """An empty working folder, temporary folder and plinknet cache, to see whatever is left outside ``--out``.

    The temporary folder is a short path in the system's (DataLoader workers make unix sockets below it).
    """
    cwd, cache = base / "cwd", base / "cache"
    cwd.mkdir()
    cache.mkdir()
    (cache / "remembered.json").write_text("{}")  # a user's cache: must stay as it is
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-test-"))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(cwd)
            mp.setenv("TMPDIR", str(tmp))
            mp.setenv("PLINKNET_CACHE", str(cache))
            mp.setattr(tempfile, "tempdir", str(tmp))
            yield cwd, tmp, cache
    finally:
        shutil.rmtree(tmp)


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    """One dry run (about a minute on 2 idle cores), shared by the tests below."""
    base = tmp_path_factory.mktemp("gpu-check")
    before = _repository_outputs()
    with sandbox(base) as (cwd, tmp, cache):
        cache_before = fingerprint(cache)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = gpu_check.main(["--dry", "--out", str(base / "out")])
        left = {"cwd": sorted(cwd.iterdir()), "tmp": sorted(tmp.iterdir()), "cache": fingerprint(cache) == cache_before}
    report = json.loads((base / "out" / "gpu-check.json").read_text())
    return {"code": code, "out": base / "out", "report": report, "printed": printed.getvalue(), "left": left,
            "repository": _repository_outputs() - before}  # fmt: skip


def test_dry_run_measures_every_step(dry):
    report, steps = dry["report"], dry["report"]["steps"]
    assert dry["code"] == 0 and report["complete"] and report["failed_steps"] == []
    assert list(steps) == list(gpu_check.STEPS)
    assert report["mode"] == "dry" and report["provenance"]["device"].startswith("cpu")
    assert report["provenance"]["commit"] and report["provenance"]["torch"] == torch.__version__

    assert steps["pytest_gpu"]["status"] == "ok"
    assert steps["pytest_gpu"]["skipped"] >= 1 and steps["pytest_gpu"]["failed"] == steps["pytest_gpu"]["errors"] == 0

    train = steps["train"]
    assert train["status"] == "ok" and train["size"] == gpu_check.DRY_SIZES.train_size
    assert train["in_memory_images_per_s"] > 0 and train["loader_images_per_s"] > 0
    assert train["loader_ratio"] == pytest.approx(train["loader_images_per_s"] / train["in_memory_images_per_s"])

    predict = steps["predict"]
    assert predict["status"] == "ok" and predict["extrapolated"]
    assert predict["seconds_per_5000_tile"] > 0 and predict["seconds_per_5000_tile_whole_process"] > 0
    assert len(predict["in_process_seconds"]) == gpu_check.DRY_SIZES.predict_repeats

    ablation = steps["ablation"]
    assert ablation["status"] == "ok" and ablation["seeds"] == [0, 1]
    runs = {(r["seed"], r["model"]): r for r in ablation["runs"]}
    assert set(runs) == {(s, m) for s in (0, 1) for m in ("P-LinkNet", "LinkNet34")}
    assert all(r["train_seconds"] > 0 and r["device"].startswith("cpu") for r in runs.values())
    assert len(list((dry["out"] / "ablation" / "runs").glob("seed*.json"))) == 4
    assert (dry["out"] / "ablation" / "summary.json").is_file()

    memory = steps["peak_memory"]
    assert memory["status"] == "not applicable" and memory["allocated_mib"] is None
    assert memory["note"] == "cpu: not applicable"
    assert all(step["seconds"] >= 0 for step in steps.values())

    schedule = report["calculations"]["paper_schedule"]
    assert schedule["calculation"] and schedule["hours"] > 0 and "meaningless" in schedule["note"]
    assert report["targets"].keys() == gpu_check.TARGETS.keys()
    assert {t["met"] for t in report["targets"].values()} == {"not applicable (cpu dry run)"}
    assert any("dry run" in line for line in report["not_measured"])


def test_dry_run_says_where_it_is_and_writes_a_table(dry):
    printed = dry["printed"]
    for number, name in enumerate(gpu_check.STEPS, 1):
        assert f"[{number}/5] {name}: started" in printed
    assert "total" in printed.splitlines()[-1]
    table = (dry["out"] / "README.md").read_text()
    assert "CPU dry run" in table and "cpu (" in dry["report"]["device"]
    assert all(f"| {label} |" in table for label in gpu_check.LABELS.values())


def test_dry_run_leaves_nothing_outside_its_folder(dry):
    assert sorted(p.name for p in dry["out"].iterdir()) == ["README.md", "ablation", "gpu-check.json"]
    assert dry["left"] == {"cwd": [], "tmp": [], "cache": True}  # its temporary folder (data, checkpoints) is gone
    assert dry["repository"] == set()


def test_without_cuda_it_stops_before_writing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = _repository_outputs()
    assert gpu_check.main(["--out", str(tmp_path / "out")]) != 0
    assert gpu_check.main([]) != 0  # the default folder under results/ is not even made
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [gpu_check.NO_CUDA] * 2 and "--dry" in err[0]
    assert not (tmp_path / "out").exists() and _repository_outputs() == before


def test_a_failed_step_is_kept_and_the_others_run(tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError("the loader died")

    monkeypatch.setattr(gpu_check.Check, "pytest_gpu", lambda self: {"passed": 0, "skipped": 5, "failed": 0})
    monkeypatch.setattr(gpu_check.Check, "train", broken)
    predicted = {"seconds_per_5000_tile": 2.0, "seconds_per_5000_tile_whole_process": 5.0, "extrapolated": False}
    monkeypatch.setattr(gpu_check.Check, "predict", lambda self: predicted)
    monkeypatch.setattr(gpu_check.Check, "ablation", lambda self: {"runs": []})
    with sandbox(tmp_path) as (_, tmp, _):
        code = gpu_check.main(["--dry", "--out", str(tmp_path / "out")])
        assert list(tmp.iterdir()) == []
    report = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert code == 1 and report["failed_steps"] == ["train"]
    assert report["steps"]["train"]["error"] == "RuntimeError: the loader died"
    assert report["steps"]["predict"]["status"] == "ok" and report["steps"]["predict"]["seconds_per_5000_tile"] == 2
    assert report["calculations"]["paper_schedule"]["status"] == "not computed"
    assert any(line.startswith("train (failed") for line in report["not_measured"])
    assert "**failed**: RuntimeError: the loader died" in (tmp_path / "out" / "README.md").read_text()


def test_a_second_check_is_written_beside_the_first(tmp_path):
    out = tmp_path / "out"
    assert gpu_check.output_names(out)["json"] == out / "gpu-check.json"
    out.mkdir()
    (out / "gpu-check.json").write_text("{}")
    names = gpu_check.output_names(out)
    assert all(path.parent == out and not path.exists() for path in names.values())
    assert names["json"].name.startswith("gpu-check-") and names["ablation"].name.startswith("ablation-")


def test_paper_schedule_from_the_recipe_by_hand():
    schedule = gpu_check.paper_schedule(images_per_s=1500.0, seconds_per_tile=1.0, gpus=8)
    # paper.yaml: 30 epochs; tiles 7-36 of 5 cities train (150), tile 6 picks best.pt (5), 1-5 scored (25);
    # 100 grid crops per 5000 px tile at 512 px
    assert schedule["tiles"] == {"train": 150, "select": 5, "val": 25} and schedule["grid_crops_per_tile"] == 100
    run_seconds = 30 * (150 * 100 + 5 * 100) / 1500 + 25 * 1.0
    assert schedule["hours_per_run"] == pytest.approx(run_seconds / 3600)
    assert schedule["runs"] == 10 and schedule["rounds"] == 2
    assert schedule["hours"] == pytest.approx(2 * run_seconds / 3600)


def test_device_names_become_folder_names():
    assert gpu_check.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_check.slug("NVIDIA H200") == "nvidia-h200"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_gpu_memory_is_read_per_step(tmp_path):
    check = gpu_check.Check("cuda", gpu_check.GPU_SIZES, tmp_path, {})
    with check.gpu_peak("step"):
        block = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")  # 64 MiB
    del block
    assert 64 <= check.gpu_peaks["step"]["allocated_mib"] <= check.gpu_peaks["step"]["reserved_mib"]
    assert check.peak_memory()["allocated_mib"] >= 64
