"""plinknet ablate: paired runs over seeds, archived results, statistics that can be checked by hand."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import _descendants, fingerprint

import plinknet.train.loop as train_module
from plinknet.study import ablation, stats
from plinknet.study.ablation import run_ablation
from plinknet.study.stats import paired_bootstrap, summarize, verdict
from plinknet.synthetic import SyntheticConfig, generate
from plinknet.train import TrainConfig

CITIES = ("alpine", "farmland", "gridtown", "oldtown", "suburbia")


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
    assert set(saved["readings"]) == {"iou", "miou"} and saved["readings"]["miou"]["runs_needed_ci95"]
    assert len(saved["data_sha256"]) == 64 and saved["provenance"]["torch"]
    assert "recall_large" in saved["lab"]["models"]["P-LinkNet"]
    plinknet_seed0 = json.loads((out / "runs" / "seed0-plinknet.json").read_text())
    linknet_seed0 = json.loads((out / "runs" / "seed0-linknet34.json").read_text())
    assert plinknet_seed0["config"]["pyramid_bins"] == [1, 2, 3, 6] and linknet_seed0["config"]["pyramid_bins"] == []
    assert plinknet_seed0["best_on"] == "select" and plinknet_seed0["window"] == 64
    assert set(plinknet_seed0["per_tile"]) == {f"{c}1" for c in CITIES}  # validation tiles only
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 * 2 * 5 and {"tp", "f1", "large_total", "distractor_pixels"} <= set(rows[0])
    assert summary["gap_iou_mean"] == saved["gap_iou_mean"]

    assert plinknet_seed0["tiles"] == sorted(plinknet_seed0["per_tile"]) and plinknet_seed0["threshold"] == 0.5
    assert plinknet_seed0["data_sha256"] == saved["data_sha256"]

    # a second call trains nothing, whatever run options change: every run is archived
    monkeypatch.setattr(ablation, "run_one", lambda *a, **k: pytest.fail("a finished run was run again"))
    again = run_ablation(tiny(lab_sample, workers=1, progress=True), [0, 1], out, runs, bootstrap_draws=300)
    assert again["gap_iou_mean"] == summary["gap_iou_mean"]


def test_rerunning_ablate_never_touches_a_checkpoint(lab_sample, tmp_path, monkeypatch):
    """Retries with other run options, another spelling of the runs folder, lost records or another split only
    score again; another recipe is refused before anything is written."""
    monkeypatch.chdir(tmp_path)
    run_ablation(tiny(lab_sample, epochs=2), [0, 1], "archive", "runs", bootstrap_draws=100)
    checkpoints = fingerprint(tmp_path / "runs")
    before_history = json.loads((tmp_path / "archive/runs/seed0-plinknet.json").read_text())["history"]
    assert any(name.endswith("best.pt") for name in checkpoints)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train_module, "train", no_training)
    (tmp_path / "archive/runs/seed1-plinknet.json").unlink()  # a lost record: scored again from best.pt
    run_ablation(tiny(lab_sample, epochs=2, workers=1), [0, 1], "archive", tmp_path / "runs", bootstrap_draws=100)
    assert json.loads((tmp_path / "archive/runs/seed1-plinknet.json").read_text())["split"] == "val"
    archive = fingerprint(tmp_path / "archive")
    selected = run_ablation(tiny(lab_sample, epochs=2), [0, 1], "archive", "runs", split="select", bootstrap_draws=100)
    assert selected["split"] == "select" and selected["tiles"] == [f"{c}6" for c in CITIES]
    assert fingerprint(tmp_path / "runs") == checkpoints
    [scoring] = (tmp_path / "archive" / "scores").iterdir()  # another scoring: beside the archive's, which stays
    assert scoring.name.startswith("select-") and json.loads((scoring / "summary.json").read_text()) == selected
    assert {k: v for k, v in fingerprint(tmp_path / "archive").items() if not k.startswith("scores")} == archive

    archive = fingerprint(tmp_path / "archive")  # scoring again where the checkpoints are not: refused, not trained
    with pytest.raises(ablation.ArchiveError, match=r"(?s)4 archived run.*seed0-plinknet.json \(to score again\) "
                       r"needs .*elsewhere/seed0/plinknet/best.pt, not found; recorded run folder: runs/seed0/plinknet"
                       r".*--runs-dir.*--retrain.*Nothing was written"):  # fmt: skip
        run_ablation(tiny(lab_sample, epochs=2), [0, 1], "archive", tmp_path / "elsewhere", split="train",
                     bootstrap_draws=100)  # fmt: skip
    assert fingerprint(tmp_path / "archive") == archive and not (tmp_path / "elsewhere").exists()
    with pytest.raises(AssertionError, match="trained again"):  # --retrain: asked for, so trained
        run_ablation(tiny(lab_sample, epochs=2), [0, 1], "archive", tmp_path / "elsewhere", split="train",
                     bootstrap_draws=100, retrain=True)  # fmt: skip

    archive = fingerprint(tmp_path / "archive")
    with pytest.raises(ablation.ArchiveError, match="lr: saved 0.01, given 0.02"):
        run_ablation(tiny(lab_sample, epochs=2, lr=0.02), [0, 1], "archive", "runs", bootstrap_draws=100)
    for epochs in (1, 3):  # fewer epochs than archived, or more: another recipe, never written over the archive
        with pytest.raises(ablation.ArchiveError, match=f"epochs: saved 2, given {epochs}"):
            run_ablation(tiny(lab_sample, epochs=epochs), [0, 1], "archive", "runs", bootstrap_draws=100)
    with pytest.raises(ablation.ArchiveError, match=r"summarizes seeds \[0, 1\], asked \[0, 1, 2\]"):
        run_ablation(tiny(lab_sample, epochs=2), [0, 1, 2], "archive", "runs", bootstrap_draws=100)
    assert fingerprint(tmp_path / "archive") == archive and fingerprint(tmp_path / "runs") == checkpoints

    monkeypatch.undo()  # a longer schedule, into another archive: every run trained on from its last epoch
    monkeypatch.chdir(tmp_path)
    longer = run_ablation(tiny(lab_sample, epochs=3), [0, 1], "longer", "runs", bootstrap_draws=100)
    record = json.loads((tmp_path / "longer/runs/seed0-plinknet.json").read_text())
    assert record["config"]["epochs"] == 3 and [row["epoch"] for row in record["history"]] == [1, 2, 3]
    assert record["history"][:2] == before_history and longer["models"]["P-LinkNet"]["epochs"] == [3, 3]
    assert fingerprint(tmp_path / "archive") == archive
    best = tmp_path / "runs/seed0/plinknet/best.pt"  # trained on: best.pt changes, unless epoch 3 was no better
    best.write_bytes((best.parent / "last.pt").read_bytes())  # so replace it, as a user copying a checkpoint would
    # the first archive's record no longer describes the checkpoint it names: refused, never trusted
    with pytest.raises(ablation.ArchiveError, match=r"archive/runs/seed0-plinknet.json was scored from a best.pt of "
                       r"SHA-256 \w{16}, and runs/seed0/plinknet/best.pt is now \w{16} \(trained on or replaced"):
        run_ablation(tiny(lab_sample, epochs=2), [0, 1], "archive", "runs", bootstrap_draws=100)


def test_a_record_edited_or_cut_is_refused_by_name(lab_sample, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_ablation(tiny(lab_sample), [0, 1], "archive", "runs", bootstrap_draws=100)
    path = tmp_path / "archive/runs/seed1-linknet34.json"
    good = path.read_text()
    monkeypatch.setattr(ablation, "run_one", lambda *a, **k: pytest.fail("a run was scored again"))
    edited = json.loads(good)
    edited["per_tile"]["alpine1"][0] += 1000  # counts edited by hand
    for text, why in ((json.dumps(edited), "do not match its checksum"), (good[: len(good) // 2], "cannot be read"),
                      (json.dumps({k: v for k, v in edited.items() if k != "record_sha256"}), "carries no checksum"),
                      ("[1, 2]", "not a JSON object")):  # fmt: skip
        path.write_text(text)
        archive = fingerprint(tmp_path / "archive")
        with pytest.raises(ablation.ArchiveError, match=rf"archive/runs/seed1-linknet34.json.*{why}"):
            run_ablation(tiny(lab_sample), [0, 1], "archive", "runs", bootstrap_draws=100)
        assert fingerprint(tmp_path / "archive") == archive
    path.write_text(good)
    summary = json.loads((tmp_path / "archive/summary.json").read_text())
    assert summary["records_sha256"]["seed1-linknet34.json"] == json.loads(good)["record_sha256"]
    summary["gap_iou_mean"] += 1  # a summary edited by hand: the book refuses to print it
    (tmp_path / "archive/summary.json").write_text(json.dumps(summary))
    from plinknet_book.results import load_summary

    with pytest.raises(ablation.ArchiveError, match="archive/summary.json: its contents do not match"):
        load_summary(tmp_path / "archive")


def test_archived_run_records_are_not_ignored_by_git():
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(["git", "check-ignore", "-q", "results/x/runs/a.json"], cwd=root)
    assert result.returncode == 1  # 1: not ignored


def test_ablate_command_line(lab_sample, tmp_path):
    config = tmp_path / "book-params.yaml"  # a book parameter file: notebook-only keys are ignored
    config.write_text(f"data_dir: {lab_sample}\nsynthetic: true\nrun_dir: ../runs\nepochs: 1\n")
    cmd = [sys.executable, "-m", "plinknet", "ablate", "--config", str(config), "--seeds", "4", "5", "--out",
           str(tmp_path / "a"), "--runs-dir", str(tmp_path / "r"), "--encoder-name", "resnet18", "--encoder-weights",
           "none", "--crop-size", "64", "--batch-size", "4", "--samples-per-tile", "1", "--workers", "0",
           "--lr-milestones", "--no-progress"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "95 % t-interval" in result.stdout and (tmp_path / "a" / "summary.json").is_file()
    one_seed = [*cmd[:7], "3", *cmd[9:]]  # no spread to measure
    result = subprocess.run(one_seed, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "two distinct seeds" in result.stderr


def test_two_ablates_on_one_archive_at_once_train_each_run_once(lab_sample, tmp_path):
    """The second waits for the run the first trains (an flock on the run), then finds it done."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny(lab_sample).to_dict()))
    cmd = [sys.executable, "-m", "plinknet", "ablate", "--config", str(config), "--seeds", "0", "1", "--out",
           str(tmp_path / "archive"), "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    both = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=900) for proc in both]
    assert [proc.returncode for proc in both] == [0, 0], [err[-2000:] for _, err in outputs]
    said = "".join(out + err for out, err in outputs)
    assert "waiting for another process" in said and "done by another process" in said, said[-3000:]
    for checkpoint in sorted((tmp_path / "runs").rglob("last.pt")):  # every run trained by one process, once
        assert len(torch.load(checkpoint, weights_only=True)["launches"]) == 1
    assert said.count("training into") == 4, said[-3000:]
    assert len(list((tmp_path / "archive" / "runs").glob("*.json"))) == 4


VARYING = ("wall_seconds_this_call", "compute_seconds", "provenance", "runs_provenance",  # when and how long
           "records_sha256", "summary_sha256")  # and the checksums of records that hold their times


def _archive(folder: Path) -> tuple[str, dict, dict]:
    """What an archive says: its results.csv, its summary less timings and dates, each run's scores."""
    summary = {k: v for k, v in json.loads((folder / "summary.json").read_text()).items() if k not in VARYING}
    records = {p.name: json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))}
    scores = {name: (r["per_tile"], r["history"][-1]["iou"], r["best_epoch"]) for name, r in records.items()}
    return (folder / "results.csv").read_text(), summary, scores


def test_runs_shared_among_jobs_or_processes_give_the_archive_of_one_process(lab_sample, tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 worker processes below on 2 cores: the same arithmetic
    try:
        run_ablation(tiny(lab_sample), [0, 1], "one", "runs-one")  # the command line's 10,000 bootstrap draws
        # a job array: one job per seed writes only its records, a last job writes the summary and trains nothing
        for seed in (1, 0):
            assert run_ablation(tiny(lab_sample), [seed], "jobs", "runs-jobs", runs_only=True) is None
            assert not any((tmp_path / "jobs" / name).exists() for name in ("summary.json", "config.yaml"))
        monkeypatch.setattr(ablation, "run_one", lambda *a, **k: pytest.fail("the summary step trained a run"))
        run_ablation(tiny(lab_sample), [0, 1], "jobs", "runs-jobs")
    finally:
        torch.set_num_threads(threads)
    assert _archive(tmp_path / "jobs") == _archive(tmp_path / "one")

    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(tiny(lab_sample).to_dict()))
    result = subprocess.run([sys.executable, "-m", "plinknet", "ablate", "--config", str(config), "--seeds", "0",
                             "1", "--processes", "2", "--out", "spread", "--runs-dir", "runs-spread"],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("on process ") == 4 and result.stdout.count("done in") == 4  # each run in a worker
    assert sorted(p.name for p in (tmp_path / "runs-spread" / "logs").iterdir()) == sorted(
        p.name.replace(".json", ".log") for p in (tmp_path / "one" / "runs").iterdir())  # fmt: skip
    assert _archive(tmp_path / "spread") == _archive(tmp_path / "one")


def test_a_job_of_one_network_and_bad_sharing_options_are_answered(lab_sample, tmp_path, capsys):
    run_ablation(tiny(lab_sample), [3], tmp_path / "a", tmp_path / "r", models=["LinkNet34"], runs_only=True)
    assert [p.name for p in (tmp_path / "a" / "runs").iterdir()] == ["seed3-linknet34.json"]
    with pytest.raises(ValueError, match="the summary compares both networks"):
        run_ablation(tiny(lab_sample), [3, 4], tmp_path / "a", tmp_path / "r", models=["LinkNet34"])
    from plinknet.cli import main

    for bad, message in ((["--processes", "0"], "at least 1 or auto, got '0'"),
                         (["--processes", "auto", "--device", "cpu"], "torch sees no CUDA GPU here")):  # fmt: skip
        assert main(["ablate", "--seeds", "0", "1", "--out", str(tmp_path / "b"), *bad]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "physical, visible, slurm, expected",
    [(8, "4,6", None, {"4", "6"}),  # a job given GPUs 4 and 6: its workers must stay on them
     (8, None, "4,6", {"4", "6"})],  # a 2-GPU SLURM allocation on a node whose 8 GPUs the job sees
)  # fmt: skip
def test_workers_run_on_the_gpus_this_process_was_given(lab_sample, tmp_path, monkeypatch, physical, visible, slurm,
                                                        expected):  # fmt: skip
    """ablate --processes 2 on a simulated machine: each worker sees one of the job's GPUs; the parent counts them,
    checks and hashes the data once and opens no CUDA context."""
    from simgpu import read_log, simulated_gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_STEP_GPUS", raising=False)
    if slurm:
        monkeypatch.setenv("SLURM_JOB_GPUS", slurm)
    log = tmp_path / "calls.jsonl"
    with simulated_gpus(physical, "H100", log=log, visible=visible) as machine:
        run_ablation(tiny(lab_sample, device="cuda"), [0], tmp_path / "out", tmp_path / "runs", runs_only=True,
                     processes=2)  # fmt: skip
    assert {p.name for p in (tmp_path / "out" / "runs").iterdir()} == {"seed0-plinknet.json", "seed0-linknet34.json"}
    workers = read_log(log)
    assert {line["visible"] for line in workers} == expected
    assert {line["args"][0] for line in workers if line["call"] == "set_device"} == {"0"}  # each its only GPU
    assert set(machine.context_calls()) == set()  # the parent: is_available and device_count only
    assert {name for name, _ in machine.calls} <= {"is_available", "device_count"}
    for worker_log in (tmp_path / "runs" / "logs").iterdir():
        text = worker_log.read_text()
        assert "checked and hashed" not in text and "checking tiles" not in text  # the parent's checksum handed over


def test_processes_beyond_the_given_gpus_are_refused(lab_sample, tmp_path):
    from simgpu import simulated_gpus

    with simulated_gpus(8, "H100", visible="4,6"):
        with pytest.raises(ValueError, match=r"was given 2 GPU\(s\) \(4, 6\)"):
            run_ablation(tiny(lab_sample, device="cuda"), [0, 1], tmp_path / "out", processes=3)
    assert not (tmp_path / "out").exists()


def test_the_data_are_read_once_before_training(lab_sample, tmp_path, monkeypatch):
    """The checks and the checksum share one read of each file; the runs read nothing more before training."""
    import plinknet.data.checks as checks

    monkeypatch.setenv("PLINKNET_CACHE", str(tmp_path / "cache"))  # nothing remembered yet
    reads: list[str] = []
    real_read_bytes, real_open = Path.read_bytes, open

    def read_bytes(self):
        if "AerialImageDataset" in str(self):
            reads.append(str(self))
        return real_read_bytes(self)

    def counting_open(file, mode="r", *args, **kwargs):
        if "AerialImageDataset" in str(file) and "r" in mode and "b" in mode:
            reads.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(checks, "open", counting_open, raising=False)
    trained = []
    monkeypatch.setattr(ablation, "run_one", lambda base, *a, **k: trained.append(base.check_data) or pytest.skip())
    files = [str(p) for p in sorted((lab_sample / "AerialImageDataset" / "train").rglob("*")) if p.is_file()]
    with pytest.raises(pytest.skip.Exception):
        run_ablation(tiny(lab_sample), [0, 1], tmp_path / "out", tmp_path / "runs")
    assert sorted(reads) == sorted(files)  # every file once: tiles, masks and lab labels
    assert trained == [False]  # the run is told the data were checked
    reads.clear()
    with pytest.raises(pytest.skip.Exception):
        run_ablation(tiny(lab_sample), [0, 1], tmp_path / "out", tmp_path / "runs")
    assert reads == []  # remembered: a rerun reads nothing


@pytest.mark.slow
def test_ctrl_c_stops_the_queue_and_its_workers_and_keeps_every_finished_run(lab_sample, tmp_path):
    import signal
    import time

    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(tiny(lab_sample, epochs=3, samples_per_tile=4).to_dict()))
    command = [sys.executable, "-m", "plinknet", "ablate", "--config", str(config), "--seeds", "0", "1", "2",
               "--processes", "2", "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records = tmp_path / "out" / "runs"
    deadline = time.monotonic() + 300
    while not (records.is_dir() and any(records.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _descendants(parent.pid)  # the workers and whatever they started
    assert workers, "no worker running: the runs were too short for this test"
    finished = sorted(p.name for p in records.iterdir())
    parent.send_signal(signal.SIGINT)  # as `kill -INT`: the parent alone gets it, and must stop its workers
    interrupted = time.monotonic()
    _, stderr = parent.communicate(timeout=300)
    kept = sorted(p.name for p in records.iterdir())
    assert kept == finished  # the runs in progress were stopped, not run to their end, and no other run started
    assert time.monotonic() - interrupted < 60
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)  # no worker left behind
    assert parent.returncode == 130 and "interrupted (stopped:" in stderr and "finished and kept:" in stderr
    assert kept and not (tmp_path / "out" / "summary.json").exists()
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert all(f"done ({records / name})" in again.stdout for name in kept)  # finished runs are not run again
    assert len(list(records.iterdir())) == 6


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_parent(lab_sample, tmp_path):
    """SIGKILL gives the parent no chance to stop its workers: each must stop itself (Linux: PR_SET_PDEATHSIG)."""
    import signal
    import time

    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(tiny(lab_sample, epochs=500, samples_per_tile=4).to_dict()))  # hours
    command = [sys.executable, "-m", "plinknet", "ablate", "--config", str(config), "--seeds", "0", "--runs-only",
               "--processes", "2", "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "runs").glob("seed0/*/history.csv"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _descendants(parent.pid)
    assert len(workers) == 2, "both workers should be training"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert alive == []  # no worker trains on alone


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
    # two seeds: the t-interval is mean +- t(0.975, 1 df) * sd / sqrt(2), t = 12.7062 from a printed table
    half = 12.7062 * np.std(gaps, ddof=1) / np.sqrt(2)
    assert summary["gap_iou_ci95"] == pytest.approx([np.mean(gaps) - half, np.mean(gaps) + half], rel=1e-4)
    assert verdict(summary) == "inconclusive"  # so wide at two seeds that it holds 0 and +0.22
    assert set(summary["readings"]) == {"iou", "miou"} and summary["readings"]["miou"]["metric"] == "miou"
    assert verdict(None) == "not tested at paper scale"


def test_verdict_reads_the_interval_of_the_metric_asked():
    summary = {"gap_iou_ci95": [0.05, 0.6], "gap_miou_ci95": [-0.3, 0.1], "paper_gap": 0.22}
    assert verdict(summary, "iou") == "supported" and verdict(summary, "miou") == "refuted"


@pytest.mark.parametrize("low, high, outcome", [
    (0.05, 0.60, "supported"),  # a real gain, the paper's size inside
    (0.40, 1.20, "supported"),  # a credibly larger gain supports the claim; it does not refute it
    (0.05, 0.15, "refuted"),  # a real gain, but +0.22 or more ruled out: the paper's gain is too large
    (-0.90, -0.10, "refuted"),  # LinkNet34 better
    (-0.30, 0.10, "refuted"),  # no gain not ruled out, +0.22 ruled out
    (-0.30, 0.90, "inconclusive"),  # both 0 and +0.22 inside: too few runs
    (0.00, 0.22, "inconclusive"),  # the ends count as inside
])  # fmt: skip
def test_the_decision_rule_has_three_outcomes(low, high, outcome):
    assert stats.decide(low, high, 0.22) == outcome and outcome in stats.OUTCOMES
    assert stats.verdict({"gap_iou_ci95": [low, high], "paper_gap": 0.22}) == outcome


def test_power_matches_published_values():
    # G*Power / Cohen's tables, paired t-test, two-sided 5 %, 80 % power: d = 0.5 needs 34 pairs, d = 0.8 needs 15
    assert stats.runs_needed(sigma=2.0, gap=1.0) == 34
    assert stats.runs_needed(sigma=1.0, gap=0.8) == 15
    assert stats.runs_needed(sigma=2.0, gap=1.0, paired=False) == 64  # Cohen: two groups of 64 for d = 0.5
    # a tiny effect, where statsmodels' root finder gives up: the textbook normal approximation, to 0.1 %
    assert stats.runs_needed(sigma=100.0, gap=0.22) == pytest.approx(((1.959964 + 0.841621) * 100 / 0.22) ** 2,
                                                                         rel=1e-3)  # fmt: skip
    # and the other way round: 34 pairs detect d = 0.5 (just), 15 detect d = 0.8
    assert stats.detectable_gap(sigma=2.0, seeds=34) == pytest.approx(1.0, abs=0.02)
    # the chi-square interval of a standard deviation from 5 values: x0.599 to x2.874 (tabulated factors)
    low, high = stats.sigma_interval(1.0, 5)
    assert (low, high) == pytest.approx((0.5991, 2.8735), abs=1e-3)


def _coverage(method, n: int, reps: int = 4000, true_gap: float = 0.3, sigma: float = 3.0) -> float:
    rng = np.random.default_rng(n)
    gaps = rng.normal(true_gap, sigma, size=(reps, n))  # (replications, seeds): per-seed gaps of known mean
    low, high = method(gaps)
    return float(np.mean((low <= true_gap) & (true_gap <= high)))


def _percentile_bootstrap(gaps: np.ndarray, draws: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """The interval the archive used before: percentile bootstrap of the mean over seeds."""
    rng = np.random.default_rng(1)
    reps, n = gaps.shape
    picks = rng.integers(0, n, size=(reps, draws, n))
    means = np.take_along_axis(gaps[:, None, :].repeat(draws, axis=1), picks, axis=2).mean(axis=2)
    return np.percentile(means, 2.5, axis=1), np.percentile(means, 97.5, axis=1)


@pytest.mark.parametrize("n", [3, 5])
def test_the_gap_interval_covers_the_true_gap_95_percent_of_the_time(n):
    assert 0.93 <= _coverage(stats.paired_t_interval, n) <= 0.97
    # the same check rejects the percentile bootstrap over seeds (about 70 % at 3 seeds, 84 % at 5)
    assert _coverage(_percentile_bootstrap, n) < 0.90


def test_bootstrap_of_identical_networks_is_centred_on_zero():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 1000, size=(5, 8, 4))
    draws = paired_bootstrap(counts, counts, lambda c: stats._score(c, "iou"), 500)
    assert np.all(draws == 0)
    noisy = counts + rng.integers(0, 50, size=counts.shape)
    draws = paired_bootstrap(noisy, counts, lambda c: stats._score(c, "iou"), 2000)
    assert draws.std() > 0 and np.percentile(draws, 2.5) < np.percentile(draws, 97.5)
