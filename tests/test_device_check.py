"""plinknet.trials.device_check on a simulated GPU: every step runs, keeps its figures and stays in its folder."""

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from helpers import fingerprint
from simgpu import simulated_gpus

import plinknet.trials.device_check as device_check

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PAPER = ROOT / "book" / "params" / "paper.yaml"

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


def run_check(base: Path, physical: int, *args: str) -> dict:
    """One check at toy sizes on a simulated machine of ``physical`` H100s (about a minute on 2 idle cores)."""
    before = _repository_outputs()
    with sandbox(base) as (cwd, tmp, cache), simulated_gpus(physical, "H100") as machine:
        cache_before = fingerprint(cache)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = device_check.main(["--out", str(base / "out"), "--sizes", "small", "--tests", str(TESTS),
                                      "--recipe", str(PAPER), *args])  # fmt: skip
        left = {"cwd": sorted(cwd.iterdir()), "tmp": sorted(tmp.iterdir()), "cache": fingerprint(cache) == cache_before}
    report = json.loads((base / "out" / "gpu-check.json").read_text())
    return {"code": code, "out": base / "out", "report": report, "printed": printed.getvalue(), "left": left,
            "repository": _repository_outputs() - before, "machine": machine}  # fmt: skip


@pytest.fixture(scope="module")
def one_gpu(tmp_path_factory):
    """The check on a simulated machine of one H100, shared by the tests below."""
    return run_check(tmp_path_factory.mktemp("one-gpu"), 1)


def test_every_step_passes_on_one_simulated_gpu(one_gpu):
    report, steps = one_gpu["report"], one_gpu["report"]["steps"]
    assert one_gpu["code"] == 0 and report["complete"] and report["failed_steps"] == [], report["failed_steps"]
    assert list(steps) == list(device_check.STEPS) and report["gpus"] == 1
    assert report["sizes"] == "small" and report["provenance"]["device"] == "NVIDIA H100 80GB HBM3"
    assert report["provenance"]["commit"] and report["provenance"]["torch"] == torch.__version__

    tests = steps["pytest_gpu"]
    assert tests["status"] == "ok" and tests["failed"] == tests["errors"] == 0 and tests["passed"] >= 5
    assert tests["skipped_unexpectedly"] == []
    (skipped,) = tests["skipped_as_expected"]  # one GPU: the 2-GPU NCCL test skips, as it must
    assert "test_two_gpus_with_nccl" in skipped and "needs 2 CUDA GPUs" in skipped

    train = steps["train"]
    assert train["status"] == "ok" and train["size"] == device_check.SMALL_SIZES.train_size
    assert train["in_memory_images_per_s"] > 0 and train["loader_images_per_s"] > 0
    assert train["loader_ratio"] == pytest.approx(train["loader_images_per_s"] / train["in_memory_images_per_s"])
    assert train["precision"] == "bf16 autocast, channels_last"  # an H100
    concurrent = train["concurrent_loaders"]
    assert concurrent["processes"] == device_check.SMALL_SIZES.node_gpus == len(concurrent["rates"])
    assert concurrent["slowest"] == min(concurrent["rates"]) > 0

    predict = steps["predict"]
    assert predict["status"] == "ok" and predict["extrapolated"]
    assert predict["seconds_per_5000_tile"] > 0 and predict["seconds_per_5000_tile_whole_process"] > 0

    ablation = steps["ablation"]
    assert ablation["status"] == "ok" and ablation["seeds"] == [0, 1]
    runs = {(r["seed"], r["model"]): r for r in ablation["runs"]}
    assert set(runs) == {(s, m) for s in (0, 1) for m in ("P-LinkNet", "LinkNet34")}
    assert all(r["train_seconds"] > 0 and r["device"] == "NVIDIA H100 80GB HBM3" for r in runs.values())

    memory = steps["peak_memory"]
    assert memory["status"] == "ok" and memory["allocated_mib"] > 0 and memory["device_total_mib"] == 80 * 1024
    assert set(memory["per_step"]) == {"train", "predict_in_process", "ablation"}

    schedule = report["calculations"]["paper_schedule"]
    assert schedule["calculation"] and 0 < schedule["hours_least"] and "meaningless" in schedule["note"]
    assert schedule["most"] is None and "lower bound" in schedule["assumption_most"]  # 2 loaders at once, not 8
    assert {t["met"] for t in report["targets"].values()} == {device_check.SMALL_NOTE}
    assert any("toy sizes" in line for line in report["not_measured"])


def test_the_check_touched_only_indexed_gpus_that_exist(one_gpu):
    machine = one_gpu["machine"]
    assert {args for name, args in machine.calls if name == "set_device"} == {(0,)}
    assert set(machine.placed) == {0}


def test_it_says_where_it_is_and_writes_a_table(one_gpu):
    printed = one_gpu["printed"]
    for number, name in enumerate(device_check.STEPS, 1):
        assert f"[{number}/5] {name}: started" in printed
    assert "total" in printed.splitlines()[-1]
    table = (one_gpu["out"] / "README.md").read_text()
    assert "NVIDIA H100 80GB HBM3 at toy sizes" in table and "for want of GPUs" in table
    assert all(f"| {label} |" in table for label in device_check.LABELS.values())
    assert "lower bound" in table and "2 loaders at once" in table


def test_it_leaves_nothing_outside_its_folder(one_gpu):
    assert sorted(p.name for p in one_gpu["out"].iterdir()) == ["README.md", "ablation", "gpu-check.json"]
    assert one_gpu["left"] == {"cwd": [], "tmp": [], "cache": True}  # its temporary folder (data, checkpoints) is gone
    assert one_gpu["repository"] == set()


def test_every_step_passes_on_two_simulated_gpus(tmp_path_factory):
    two = run_check(tmp_path_factory.mktemp("two-gpus"), 2, "--device", "cuda:1")
    report = two["report"]
    assert two["code"] == 0 and report["failed_steps"] == [] and report["gpus"] == 2, report["failed_steps"]
    tests = report["steps"]["pytest_gpu"]
    assert tests["skipped"] == 0 and tests["skipped_as_expected"] == []  # the 2-GPU test ran
    assert {args for name, args in two["machine"].calls if name == "set_device"} == {(1,)}  # the GPU asked for
    assert set(two["machine"].placed) == {1}


def test_a_skip_that_is_not_for_want_of_gpus_fails_the_step(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_sample.py").write_text(
        "import pytest\n\n@pytest.mark.gpu\ndef test_runs():\n    pass\n\n"
        "@pytest.mark.gpu\n@pytest.mark.skip(reason='needs CUDA')\ndef test_skipped():\n    pass\n\n"
        "@pytest.mark.gpu\n@pytest.mark.skip(reason='needs 4 CUDA GPUs')\ndef test_four():\n    pass\n")  # fmt: skip
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\nmarkers = ['gpu: needs CUDA']\n")
    check = device_check.Check(torch.device("cpu"), device_check.SMALL_SIZES, tmp_path, {}, tests, PAPER)
    with simulated_gpus(2, "H100"), pytest.raises(RuntimeError, match="not for want of GPUs: .*test_skipped"):
        check.pytest_gpu()
    (tests / "test_sample.py").write_text((tests / "test_sample.py").read_text().replace("reason='needs CUDA'",
                                                                                         "reason='needs 3 CUDA GPUs'"))
    with simulated_gpus(2, "H100"):
        result = check.pytest_gpu()
    assert result["passed"] == 1 and len(result["skipped_as_expected"]) == 2 and result["gpus"] == 2


def test_without_cuda_it_stops_before_writing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = _repository_outputs()
    assert device_check.main(["--out", str(tmp_path / "out")]) != 0
    assert device_check.main([]) != 0  # the default folder under results/ is not even made
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [device_check.NO_CUDA] * 2
    assert not (tmp_path / "out").exists() and _repository_outputs() == before


def test_a_failed_step_is_kept_and_the_others_run(tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError("the loader died")

    monkeypatch.setattr(device_check.Check, "pytest_gpu", lambda self: {"passed": 0, "skipped": 5, "failed": 0,
                                                                        "skipped_as_expected": []})  # fmt: skip
    monkeypatch.setattr(device_check.Check, "train", broken)
    predicted = {"seconds_per_5000_tile": 2.0, "seconds_per_5000_tile_whole_process": 5.0, "extrapolated": False}
    monkeypatch.setattr(device_check.Check, "predict", lambda self: predicted)
    monkeypatch.setattr(device_check.Check, "ablation", lambda self: {"runs": []})
    with sandbox(tmp_path) as (_, tmp, _), simulated_gpus(1, "H100"):
        code = device_check.main(["--sizes", "small", "--out", str(tmp_path / "out"), "--tests", str(TESTS),
                                  "--recipe", str(PAPER)])  # fmt: skip
        assert list(tmp.iterdir()) == []
    report = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert code == 1 and report["failed_steps"] == ["train", "peak_memory"]  # no in-process step left a peak
    assert report["steps"]["train"]["error"] == "RuntimeError: the loader died"
    assert report["steps"]["predict"]["status"] == "ok" and report["steps"]["predict"]["seconds_per_5000_tile"] == 2
    assert report["calculations"]["paper_schedule"]["status"] == "not computed"
    assert any(line.startswith("train (failed") for line in report["not_measured"])
    assert "**failed**: RuntimeError: the loader died" in (tmp_path / "out" / "README.md").read_text()


def test_a_second_check_is_written_beside_the_first(tmp_path):
    out = tmp_path / "out"
    assert device_check.output_names(out)["json"] == out / "gpu-check.json"
    out.mkdir()
    (out / "gpu-check.json").write_text("{}")
    names = device_check.output_names(out)
    assert all(path.parent == out and not path.exists() for path in names.values())
    assert names["json"].name.startswith("gpu-check-") and names["ablation"].name.startswith("ablation-")


def test_paper_schedule_from_the_recipe_by_hand():
    schedule = device_check.paper_schedule(images_per_s=1500.0, seconds_per_tile=1.0, recipe_path=PAPER, gpus=8)
    # paper.yaml: 30 epochs; tiles 7-36 of 5 cities train (150), tile 6 picks best.pt (5), 1-5 scored (25);
    # 100 grid crops per 5000 px tile at 512 px
    assert schedule["tiles"] == {"train": 150, "select": 5, "val": 25} and schedule["grid_crops_per_tile"] == 100
    run_seconds = 30 * (150 * 100 + 5 * 100) / 1500 + 25 * 1.0
    assert schedule["hours_per_run"] == pytest.approx(run_seconds / 3600)
    assert schedule["runs"] == 10 and schedule["rounds"] == 2
    assert schedule["hours"] == pytest.approx(2 * run_seconds / 3600)


def test_the_schedule_is_a_range_from_one_loader_alone_to_eight_at_once():
    run = 30 * (150 * 100 + 5 * 100)  # crops per run of paper.yaml (see above)
    train = {"loader_images_per_s": 1500.0, "in_memory_images_per_s": 1800.0, "cpu_cores_usable": 16,
             "concurrent_loaders": {"processes": 8, "workers": 1, "slowest": 500.0, "rates": [500.0] * 8}}
    schedule = device_check.schedule_range(train, 0.0, PAPER, gpus=8)
    assert schedule["hours_least"] == pytest.approx(2 * run / 1500 / 3600)
    assert schedule["hours_most"] == pytest.approx(2 * run / 500 / 3600)  # the slowest of 8 loaders sets the pace
    assert "16 CPU cores" in schedule["assumption_most"]
    train["concurrent_loaders"]["slowest"] = 5000.0  # loaders faster than the GPU: the GPU's rate holds
    assert device_check.schedule_range(train, 0.0, PAPER)["hours_most"] == pytest.approx(2 * run / 1800 / 3600)
    del train["concurrent_loaders"]
    alone = device_check.schedule_range(train, 0.0, PAPER)
    assert alone["hours_most"] is None and "lower bound" in alone["assumption_most"]


def test_device_names_become_folder_names():
    assert device_check.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert device_check.slug("NVIDIA H200") == "nvidia-h200"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_gpu_memory_is_read_per_step(tmp_path):
    check = device_check.Check(torch.device("cuda"), device_check.GPU_SIZES, tmp_path, {}, TESTS, PAPER)
    with check.gpu_peak("step"):
        block = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")  # 64 MiB
    del block
    assert 64 <= check.gpu_peaks["step"]["allocated_mib"] <= check.gpu_peaks["step"]["reserved_mib"]
    assert check.peak_memory()["allocated_mib"] >= 64
