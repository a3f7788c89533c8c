"""The device check: every GPU figure the project still lacks, in one command of at most 8 minutes.

    make gpu-check            # python -m plinknet.trials.device_check --tests tests --recipe book/params/paper.yaml
    python -m plinknet.trials.device_check --out DIR --sizes small    # another folder; toy sizes (meaningless figures)

It needs a CUDA GPU and nothing but the repository: its data are synthesised into a temporary
folder, deleted at the end (with the ablation's checkpoints and the prediction benchmark's scenes
it holds up to about 1.5 GB at times; the data themselves stay under 64 MiB). Sized for about 5
minutes on one H100/H200, within a budget of 8 (an estimate until it has run on one). The same
steps run at every size and on every device; ``make test`` runs them at toy sizes on a simulated
GPU (``tests/simgpu.py``). Steps, each timed and each kept when a later one fails (a failed step
records its error, the others still run, and the exit status is 1):

1. ``pytest -m gpu``: the bf16 + channels_last training step, the one-process NCCL group, CUDA
   prediction and ``prepare_batch`` equal to the CPU's; a test that needs more GPUs than this
   machine has skips, as expected (its reason says "needs N CUDA GPUs"); any other skip fails the step;
2. training images/s of P-LinkNet at 512 x 512, batch 16, in the precision :func:`plinknet.device.precision`
   picks (:func:`plinknet.bench.training_speed.bench_train`): on data already on the GPU, then through
   the real loader over synthesised tiles, and their ratio (below 1: the loader sets the pace); then
   the loader alone, run by as many processes at once as ``make paper`` starts runs on an 8-GPU node
   (:func:`plinknet.bench.loader_speed.concurrent_loader_rates`), each with the workers
   :func:`plinknet.device.loader_workers` gives it on this machine's cores;
3. seconds per 5000 x 5000 tile of ``plinknet predict``: as a whole process, start-up included
   (:func:`plinknet.bench.prediction_speed.bench_prediction`), and with the network loaded once, as
   ``plinknet predict --out-dir`` runs over many tiles (:func:`plinknet.infer.predict.predict_file`);
4. a tiny ablation, P-LinkNet against LinkNet34 over 2 seeds and 1 epoch
   (:func:`plinknet.study.ablation.run_ablation`) on a tiny synthetic sample: the whole path on the
   device, with each run's training seconds;
5. peak GPU memory of the in-process steps (2, 3 and 4).

Then a calculation, labelled so: the hours that ``make paper`` (the ``--recipe``, both networks x 5
seeds, one run per GPU) would take on one 8-GPU node (:func:`paper_schedule`), as a range: at the
loader rate of one run alone (a node whose CPUs keep every loader as fast as one: the least), and
at the rate each of 8 loaders gets on this machine's cores (a node with this machine's CPUs).
Start-up, the data check and checkpoint writes are left out, so both ends are lower bounds.

The loader's tiles are uncompressed and striped, the layout of Inria's files (and of
``plinknet synth --inria-scale``), but 2000 px on a side: three of them are 48 MB. The files
stay in the page cache, as Inria's 18 GB do on a GPU node after the first epoch.

Writes ``<out>/gpu-check.json`` (every figure, the settings, the targets and whether each was
met, the provenance) and ``<out>/README.md`` (a table), after every step, so that a run cut short
keeps what it measured; ``<out>/ablation/`` is the ablation's archive. When ``<out>`` already
holds a check, the new one is written beside it under timestamped names: nothing is replaced.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

import torch
import yaml

from plinknet import device as devices
from plinknet.files import NotPlinknetsError, mark_folder, remove, write_text
from plinknet.provenance import provenance

BUDGET_S = 480  # the whole check on one H100/H200
HANG_S = 1200  # past this the check is hung, not slow: it prints every stack and exits
NO_CUDA = ("gpu-check needs a CUDA GPU: torch sees none here (its steps run on a simulated GPU in `make test`, "
           "tests/test_device_check.py)")  # fmt: skip
SMALL_NOTE = "not judged (toy sizes)"
SKIP_FOR_MORE_GPUS = re.compile(r"needs (\d+) CUDA GPUs")  # a GPU test's skip reason when this machine has fewer
STEPS = ("pytest_gpu", "train", "predict", "ablation", "peak_memory")
FIGURES = {  # what a step must measure (a positive number each), or it failed, whatever it returned
    "train": ("in_memory_images_per_s", "loader_images_per_s", "loader_ratio"),
    "predict": ("seconds_per_5000_tile", "seconds_per_5000_tile_whole_process"),
}


@dataclass(frozen=True)
class Sizes:
    """What each step runs on. The GPU defaults fit the 8-minute budget on one H100/H200 with room to spare."""

    train_size: int = 512  # the paper's crop
    train_batch: int = 16  # the paper's batch
    train_steps: int = 200  # about 2 s per side at 1,500 images/s: the loader's prefetched batches weigh little
    train_workers: int | None = None  # None: as training does (CPU cores - 1, at most 8)
    loader_tiles: int = 3  # training tiles for the loader: 3 x 16 MB
    loader_tile_size: int = 2000  # uncompressed, striped: Inria's layout at a fifth of its side
    predict_speed_size: int = 3072  # bench_prediction's own defaults, but 2 repeats
    predict_tile_size: int = 5000  # an Inria tile: nothing extrapolated
    predict_memory_sizes: tuple[int, int] = (2000, 8000)
    predict_repeats: int = 2  # alternated whole-process timings; and timed in-process runs of the tile
    predict_encoder: str = "resnet34"  # the paper's network
    predict_crop: int = 512  # the window: the training crop
    ablation_tile_size: int = 640  # 5 cities x 3 tiles: 20 MB
    ablation_encoder: str = "resnet34"
    ablation_crop: int = 512
    ablation_batch: int = 16
    ablation_samples_per_tile: int = 16  # 5 training tiles: 80 crops, 5 steps per epoch
    ablation_workers: int | None = None
    ablation_bootstrap: int = 1000  # the summary's bootstrap draws: its figures are not the point here
    pytest_timeout_s: int = 240
    node_gpus: int = 8  # loaders run at once for the schedule's range: make paper's runs on an 8-GPU node
    concurrent_crops: int = 320  # crops each concurrent loader is timed over


GPU_SIZES = Sizes()
SMALL_SIZES = replace(
    GPU_SIZES,
    train_size=64,
    train_batch=2,
    train_steps=2,
    train_workers=1,  # one worker process: the same path as on the GPU, at the least cost
    loader_tiles=1,
    loader_tile_size=256,
    predict_speed_size=256,
    predict_tile_size=256,  # the speed scene itself: no extra process
    predict_memory_sizes=(128, 256),
    predict_repeats=1,
    predict_encoder="resnet18",
    predict_crop=128,
    ablation_tile_size=96,
    ablation_encoder="resnet18",
    ablation_crop=64,
    ablation_batch=4,
    ablation_samples_per_tile=1,
    ablation_workers=0,
    ablation_bootstrap=200,
    pytest_timeout_s=240,
    node_gpus=2,
    concurrent_crops=8,
)
SIZES = {"full": GPU_SIZES, "small": SMALL_SIZES}

# name: (comparison, threshold, what it is judged on)
TARGETS = {
    "train_loader_images_per_s": (">=", 1500, "training at 512 x 512 through the loader, one H100-class GPU"),
    "loader_ratio": (">=", 0.90, "loader images/s over in-memory images/s"),
    "seconds_per_5000_tile": ("<=", 1.0, "plinknet predict, network loaded once (as with --out-dir)"),
    "paper_schedule_hours": ("<=", 1.0, "make paper (2 networks x 5 seeds) on one 8-GPU node with this machine's "
                             "CPUs, by calculation (the range's upper end)"),
    "total_seconds": ("<=", BUDGET_S, "this check"),
}


def slug(name: str) -> str:
    """``"NVIDIA H200"`` -> ``"nvidia-h200"``: a folder name from a device name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def output_names(out: Path) -> dict[str, Path]:
    """The files of this check in ``out``; timestamped when ``out`` holds an earlier check (never replaced)."""
    plain = {"json": out / "gpu-check.json", "readme": out / "README.md", "ablation": out / "ablation"}
    if not any(path.exists() for path in plain.values()):
        return plain
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return {"json": out / f"gpu-check-{stamp}.json", "readme": out / f"README-{stamp}.md",
            "ablation": out / f"ablation-{stamp}"}  # fmt: skip


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


class Check:
    """One run of the check: the device, the sizes, the paths it reads, the temporary folder and the GPU peaks."""

    def __init__(self, device: torch.device, sizes: Sizes, temp: Path, names: dict[str, Path], tests: Path,
                 recipe: Path):  # fmt: skip
        self.device, self.sizes, self.temp, self.names = devices.indexed(device), sizes, temp, names
        self.tests, self.recipe = tests, recipe
        self.gpu_peaks: dict[str, dict] = {}
        self.temp_peak_mib = 0.0

    def note_temp(self) -> None:
        self.temp_peak_mib = max(self.temp_peak_mib, folder_mib(self.temp))

    @contextmanager
    def gpu_peak(self, name: str):
        """Record the peak GPU memory allocated and reserved by torch in this block."""
        gc.collect()
        with devices.memory_peak(self.device) as peak:
            yield
        self.gpu_peaks[name] = peak

    # ----------------------------------------------------------------------- the steps

    def pytest_gpu(self) -> dict:
        """``pytest -m gpu`` in a child process (killed with its children after the timeout).

        A test skipped because it needs more GPUs than this machine has is expected; any other skip fails the step.
        """
        junit = self.temp / "pytest-gpu.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               "--basetemp", str(self.temp / "pytest"), "--junitxml", str(junit), str(self.tests)]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=self.tests.resolve().parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)  # fmt: skip
        try:
            output, _ = proc.communicate(timeout=self.sizes.pytest_timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: pytest and whatever it started
            proc.communicate()
            raise TimeoutError(f"pytest -m gpu ran past {self.sizes.pytest_timeout_s} s and was stopped") from None
        lines = output.strip().splitlines()
        result = {"command": f"python -m pytest -m gpu {self.tests}", "exit_code": proc.returncode,
                  "summary": lines[-1] if lines else ""}  # fmt: skip
        print(f"  {result['summary']}", flush=True)
        if not junit.is_file():
            raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}): " + " | ".join(lines[-15:]))
        counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
        root = ElementTree.parse(junit).getroot()
        for suite in root.iter("testsuite"):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
        gpus = devices.gpu_count()
        expected, unexpected = [], []
        for case in root.iter("testcase"):
            skipped = case.find("skipped")
            if skipped is None:
                continue
            reason = skipped.get("message", "")
            needs = SKIP_FOR_MORE_GPUS.search(reason)
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            (expected if needs and int(needs.group(1)) > gpus else unexpected).append(f"{name} ({reason})")
        result.update(passed=counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                      skipped=counts["skipped"], failed=counts["failures"], errors=counts["errors"], gpus=gpus,
                      skipped_as_expected=expected, skipped_unexpectedly=unexpected)  # fmt: skip
        if proc.returncode != 0 or result["failed"] or result["errors"]:
            raise RuntimeError(f"pytest -m gpu: {result['summary']}\n" + "\n".join(lines[-30:]))
        if unexpected or not result["passed"]:
            raise RuntimeError(f"pytest -m gpu on {gpus} GPU(s): {result['summary']}; skipped, but not for want of "
                               f"GPUs: {'; '.join(unexpected) or 'none'}")  # fmt: skip
        return result

    def train(self) -> dict:
        from plinknet.bench.loader_speed import concurrent_loader_rates, write_benchmark_tiles
        from plinknet.bench.training_speed import bench_train

        s = self.sizes
        data = write_benchmark_tiles(self.temp / "loader", s.loader_tiles, s.loader_tile_size, compress=None)
        self.note_temp()
        with self.gpu_peak("train"):
            bench = bench_train(str(self.device), size=s.train_size, batch=s.train_batch, steps=s.train_steps,
                                data_dir=data, workers=s.train_workers)  # fmt: skip
        concurrent = concurrent_loader_rates(data, s.node_gpus, devices.loader_workers(s.node_gpus),
                                             s.train_size, s.train_batch, s.concurrent_crops)  # fmt: skip
        remove(data)  # room for the next steps' files
        (row,) = bench["rows"]
        return {"size": bench["size"], "batch": bench["batch"], "steps": bench["steps"], "workers": bench["workers"],
                "precision": bench["precision"],
                "data": f"{s.loader_tiles} synthesised training tiles of {s.loader_tile_size} px, uncompressed, "
                        "striped (Inria's layout)",
                "in_memory_images_per_s": row["model_only_images_per_s"],
                "loader_images_per_s": row["loader_images_per_s"], "loader_ratio": row["loader_ratio"],
                "concurrent_loaders": concurrent, "cpu_cores_usable": devices.usable_cpus()}  # fmt: skip

    def predict(self) -> dict:
        from plinknet.bench.prediction_speed import bench_prediction, write_scene
        from plinknet.infer.backends import Network
        from plinknet.infer.predict import PredictConfig, predict_file
        from plinknet.model import PLinkNet

        s = self.sizes
        work = self.temp / "predict-bench"
        work.mkdir()
        bench = bench_prediction(str(self.device), speed_size=s.predict_speed_size, tile_size=s.predict_tile_size,
                              memory_sizes=s.predict_memory_sizes, repeats=s.predict_repeats,
                              encoder_name=s.predict_encoder, crop_size=s.predict_crop, workdir=work)  # fmt: skip
        self.note_temp()
        remove(work)
        # the network loaded once, then the tile timed: what each tile costs in `plinknet predict --out-dir`
        scene = write_scene(self.temp / "tile.tif", s.predict_tile_size, seed=1)
        torch.manual_seed(0)
        network = Network(model=PLinkNet(encoder_name=s.predict_encoder), device=self.device, backend="torch")
        config = PredictConfig(window=s.predict_crop, backend="torch")
        times = []
        with self.gpu_peak("predict_in_process"):
            for k in range(s.predict_repeats + 1):  # the first run is the warm-up (cudnn autotuning)
                output = self.temp / f"mask{k}.tif"
                started = time.perf_counter()
                predict_file(None, scene, output, config=config, device=str(self.device), progress=False,
                             network=network)  # fmt: skip
                times.append(time.perf_counter() - started)
                self.note_temp()
                remove(output)
        remove(scene)
        del network
        pixels = 5000**2 / s.predict_tile_size**2  # 1 at the GPU sizes
        return {"tile_size": s.predict_tile_size, "extrapolated": s.predict_tile_size != 5000,
                "window": s.predict_crop, "encoder": s.predict_encoder, "backend_in_process": "torch",
                "seconds_per_5000_tile": statistics.median(times[1:]) * pixels,
                "in_process_seconds": times[1:], "in_process_warm_up_seconds": times[0],
                "seconds_per_5000_tile_whole_process": bench["seconds_per_5000_tile"],
                "speed_ratio_plain_loop_over_predict": bench["speed_ratio_median"],
                "peak_rss_mb": bench["peak_rss_mb"], "bench_predict": bench}  # fmt: skip

    def peak_memory(self) -> dict:
        if not self.gpu_peaks:
            raise RuntimeError("no in-process step finished: no peak to report")
        total = devices.total_memory_mib(self.device)
        return {"allocated_mib": max(p["allocated_mib"] for p in self.gpu_peaks.values()),
                "reserved_mib": max(p["reserved_mib"] for p in self.gpu_peaks.values()),
                "device_total_mib": total, "per_step": self.gpu_peaks,
                "note": "torch's allocator in this process (steps 2, 3 in-process and 4); the pytest and "
                        "plinknet predict child processes are not counted"}  # fmt: skip

    def ablation(self) -> dict:
        from plinknet.study.ablation import run_ablation
        from plinknet.study.paper import MODELS
        from plinknet.synthetic import SyntheticConfig, write_sample
        from plinknet.train.config import TrainConfig

        s = self.sizes
        layout = SyntheticConfig(tile_size=s.ablation_tile_size, val_tiles=1, train_tiles=2)
        sample, _ = write_sample(self.temp / "lab", seed=0, config=layout, progress=False)
        self.note_temp()
        base = TrainConfig(data_dir=str(sample.parent), out_dir=str(self.temp / "unused"),
                           encoder_name=s.ablation_encoder, encoder_weights=None, crop_size=s.ablation_crop,
                           batch_size=s.ablation_batch, samples_per_tile=s.ablation_samples_per_tile,
                           val_samples_per_tile=1, select_tiles=(6,), epochs=1, lr_milestones=(),
                           workers=s.ablation_workers, device=str(self.device), progress=False)  # fmt: skip
        archive = self.names["ablation"]
        with self.gpu_peak("ablation"):
            summary = run_ablation(base, [0, 1], archive, runs_dir=self.temp / "ablation-runs", progress=False,
                                   bootstrap_draws=s.ablation_bootstrap)  # fmt: skip
        self.note_temp()
        records = [json.loads(p.read_text()) for p in sorted((archive / "runs").glob("seed*.json"))]
        if len(records) != 2 * len(MODELS):
            raise RuntimeError(f"the ablation archived {len(records)} runs, not 2 seeds x {len(MODELS)} networks")
        runs = [{"seed": r["seed"], "model": r["model"], "device": r["provenance"]["device"],
                 "train_seconds": r["train_seconds"], "eval_seconds": r["eval_seconds"]} for r in records]  # fmt: skip
        return {"seeds": summary["seeds"], "epochs": 1, "encoder": s.ablation_encoder, "crop_size": s.ablation_crop,
                "batch_size": s.ablation_batch, "data": f"plinknet synth sample, 5 cities x 3 tiles of "
                f"{s.ablation_tile_size} px", "archive": str(archive), "runs": runs,
                "wall_seconds_training_and_scoring": summary["wall_seconds_this_call"]}  # fmt: skip


def paper_schedule(images_per_s: float, seconds_per_tile: float, recipe_path: Path, gpus: int = 8) -> dict:
    """Hours of ``make paper`` on one node of ``gpus`` GPUs at a rate per run: a calculation, not a run.

    Per run: the recipe's epochs of training crops (its ``samples_per_tile``, None: the grid count of a
    5000 px tile) over the training tiles (6-36 of each city less ``select_tiles``), the selection crops of
    every epoch counted at the training rate (they only go forward: an upper bound), and the 25 validation
    tiles scored whole. One run per GPU at the recipe's batch, as ``make paper`` shares the runs among the
    GPUs: 10 runs on 8 GPUs take two rounds. Start-up, the data check and checkpoint writes are left out.
    """
    from plinknet.data.dataset import grid_windows
    from plinknet.data.tiles import INRIA_CITIES, VAL_TILE_NUMBERS, split_of
    from plinknet.study.paper import MODELS
    from plinknet.study.stats import SEEDS_PLANNED
    from plinknet.synthetic import InriaScaleConfig

    recipe = yaml.safe_load(Path(recipe_path).read_text())
    inria = InriaScaleConfig()  # Inria's labelled part: 36 tiles of 5000 px per city
    select = tuple(recipe.get("select_tiles") or ())
    grid = len(grid_windows(inria.tile_size, inria.tile_size, recipe["crop_size"]))
    numbers = range(1, inria.tiles_per_city + 1)
    tiles = {split: len(INRIA_CITIES) * sum(split_of(n, select) == split for n in numbers)
             for split in ("train", "select", "val")}  # fmt: skip
    train_crops = tiles["train"] * (recipe.get("samples_per_tile") or grid)
    select_crops = tiles["select"] * (recipe.get("val_samples_per_tile") or grid)
    epochs = recipe["epochs"]
    run_seconds = epochs * (train_crops + select_crops) / images_per_s + tiles["val"] * seconds_per_tile
    runs = len(MODELS) * SEEDS_PLANNED
    rounds = math.ceil(runs / gpus)
    return {"calculation": True, "recipe": str(recipe_path), "epochs": epochs,
            "batch_size": recipe["batch_size"], "crop_size": recipe["crop_size"], "tiles": tiles,
            "grid_crops_per_tile": grid, "train_crops_per_epoch": train_crops,
            "select_crops_per_epoch": select_crops, "scored_tiles_per_run": len(INRIA_CITIES) *
            len(VAL_TILE_NUMBERS), "images_per_s": images_per_s, "seconds_per_5000_tile": seconds_per_tile,
            "hours_per_run": run_seconds / 3600, "runs": runs, "gpus": gpus, "rounds": rounds,
            "hours": rounds * run_seconds / 3600,
            "hours_perfect_packing": runs * run_seconds / gpus / 3600,
            "how": "one run per GPU at the recipe's batch (make paper), ceil(runs / gpus) rounds; "
                   "training crops and selection crops at the given rate, validation tiles at the "
                   "measured seconds per tile; start-up, data check and checkpoints left out"}  # fmt: skip


def schedule_range(train: dict, seconds_per_tile: float, recipe_path: Path, gpus: int = 8) -> dict:
    """:func:`paper_schedule` at both ends of what the device check measured, each with its assumption.

    Least hours: every run trains at the rate one run reached alone through its loader (the node's CPUs keep 8
    loaders as fast as one). Most: each run at the lesser of the GPU's in-memory rate and the rate each of ``gpus``
    loaders got when run at once on this machine (a node with this machine's CPU cores). Without that second
    figure the hours are a lower bound only, and say so.
    """
    alone = paper_schedule(train["loader_images_per_s"], seconds_per_tile, recipe_path, gpus)
    result = {"calculation": True, "gpus": gpus, "runs": alone["runs"], "rounds": alone["rounds"],
              "epochs": alone["epochs"], "train_crops_per_epoch": alone["train_crops_per_epoch"],
              "least": alone, "hours_least": alone["hours"],
              "assumption_least": "every run trains as fast as one run alone through its loader: the node's CPUs "
                                  "keep all its loaders that fast"}  # fmt: skip
    concurrent = train.get("concurrent_loaders") or {}
    if concurrent.get("processes") == gpus and concurrent.get("slowest"):
        rate = min(train["in_memory_images_per_s"], concurrent["slowest"])
        most = paper_schedule(rate, seconds_per_tile, recipe_path, gpus)
        result.update(most=most, hours_most=most["hours"],
                      assumption_most=f"each run at the lesser of the GPU's in-memory rate and the slowest of "
                                      f"{gpus} loaders run at once on this machine's {train.get('cpu_cores_usable')} "
                                      f"CPU cores ({concurrent['workers']} workers each): a node with these "
                                      f"CPUs")  # fmt: skip
    else:
        result.update(most=None, hours_most=None,
                      assumption_most=f"not measured: {gpus} loaders at once were not run, so the hours are a lower "
                                      f"bound")  # fmt: skip
    return result


def judge(report: dict) -> dict:
    """Each target with its value and whether it was met (or why it cannot be said)."""
    steps, calc = report["steps"], report["calculations"]
    values = {
        "train_loader_images_per_s": steps.get("train", {}).get("loader_images_per_s"),
        "loader_ratio": steps.get("train", {}).get("loader_ratio"),
        "seconds_per_5000_tile": steps.get("predict", {}).get("seconds_per_5000_tile"),
        "paper_schedule_hours": calc.get("paper_schedule", {}).get("hours_most"),
        "total_seconds": report.get("total_seconds"),
    }
    judged = {}
    for name, (op, threshold, what) in TARGETS.items():
        value = values[name]
        if report["sizes"] == "small":
            met = SMALL_NOTE
        elif value is None:
            met = "not measured"
        else:
            met = bool(value >= threshold if op == ">=" else value <= threshold)
        judged[name] = {"target": f"{op} {threshold}", "what": what, "value": value, "met": met}
    return judged


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def describe(name: str, record: dict) -> str:
    """One table cell: what a step found, or why it found nothing."""
    if record["status"] == "failed":
        return f"**failed**: {record['error'][:160]}"
    if record["status"] != "ok":
        return record.get("note", record["status"])
    if name == "pytest_gpu":
        return (f"{record['passed']} passed, {record['skipped']} skipped ({len(record['skipped_as_expected'])} for "
                f"want of GPUs), {record['failed']} failed")  # fmt: skip
    if name == "train":
        return (f"{_fmt(record['in_memory_images_per_s'])} in memory, {_fmt(record['loader_images_per_s'])} through "
                f"the loader (ratio {_fmt(record['loader_ratio'], 2)}); {record['size']} px, batch {record['batch']}, "
                f"{record['workers']} workers, {record['precision']}; {loaders(record)}")  # fmt: skip
    if name == "predict":
        scaled = " (extrapolated by pixel count)" if record["extrapolated"] else ""
        return (f"{_fmt(record['seconds_per_5000_tile'], 2)} s per 5000 x 5000 tile with the network loaded, "
                f"{_fmt(record['seconds_per_5000_tile_whole_process'], 2)} s as a whole process{scaled}")  # fmt: skip
    if name == "ablation":
        runs = ", ".join(f"{r['model']} seed {r['seed']} {_fmt(r['train_seconds'])} s" for r in record["runs"])
        return f"training per run: {runs}"
    if name == "peak_memory":
        return f"{_fmt(record['allocated_mib'], 0)} MiB allocated, {_fmt(record['reserved_mib'], 0)} MiB reserved"
    return ""


def loaders(record: dict) -> str:
    concurrent = record.get("concurrent_loaders") or {}
    if not concurrent:
        return "loaders at once: not measured"
    return (f"{concurrent['processes']} loaders at once ({concurrent['workers']} workers each): slowest "
            f"{_fmt(concurrent['slowest'])}, together {_fmt(concurrent['total'])} crops/s")  # fmt: skip


LABELS = {"pytest_gpu": "`pytest -m gpu`", "train": "training images/s", "predict": "`plinknet predict`",
          "ablation": "tiny ablation, 2 seeds x 2 networks, 1 epoch", "peak_memory": "peak GPU memory"}  # fmt: skip


def readme(report: dict) -> str:
    """The human-readable table of ``gpu-check.json``."""
    p, small = report["provenance"], report["sizes"] == "small"
    title = p["device"] + (" at toy sizes (the plumbing works; no figure says anything about speed)" if small else "")
    lines = [f"# Device check: {title}", "",
             f"`python -m plinknet.trials.device_check --sizes {report['sizes']}`, {p['date']}: commit {p['commit']}, "
             f"torch {p['torch']}, plinknet {p['plinknet']}, {p['cpu_cores']} CPU cores, synthesised data only; "
             f"{_fmt(report.get('total_seconds'), 0)} s in all (budget {BUDGET_S} s on one H100/H200).", "",
             "| step | seconds | result |", "|---|---|---|"]  # fmt: skip
    for name in STEPS:
        record = report["steps"].get(name, {"status": "not run yet"})
        lines.append(f"| {LABELS[name]} | {_fmt(record.get('seconds'))} | {describe(name, record)} |")
    schedule = report["calculations"].get("paper_schedule") or {}
    if "hours_least" in schedule:
        most = (f"{schedule['hours_most']:.2f} h" if schedule.get("hours_most") is not None else "unknown")
        lines += ["", f"Calculation, not a run{' (from toy figures: meaningless)' if small else ''}: `make paper` "
                  f"({schedule['runs']} runs of {schedule['epochs']} epochs of {schedule['train_crops_per_epoch']:,} "
                  f"crops) on {schedule['gpus']} GPUs, one run per GPU ({schedule['rounds']} rounds): "
                  f"**{schedule['hours_least']:.2f} h to {most}**. At least {schedule['hours_least']:.2f} h if "
                  f"{schedule['assumption_least']}; at most {most} if {schedule['assumption_most']}. Start-up, the "
                  f"data check and checkpoints are left out: both ends are lower bounds."]  # fmt: skip
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for name, t in report["targets"].items():
        lines.append(f"| {name} {t['target']}: {t['what']} | {_fmt(t['value'], 2)} | {t['met']} |")
    if report["not_measured"]:
        lines += ["", "Not measured: " + "; ".join(report["not_measured"]) + "."]
    return "\n".join(lines) + "\n"


def write_report(report: dict, names: dict[str, Path]) -> None:
    """Both files under temporary names, renamed when complete; the JSON first, and whatever the table makes of it."""
    try:
        table = readme(report)
    except Exception as err:  # a figure the table did not expect must not cost the figures themselves
        table = f"# Device check\n\nNo table ({type(err).__name__}: {err}); the figures are in {names['json'].name}.\n"
    write_text(names["json"], json.dumps(report, indent=1, default=str))
    write_text(names["readme"], table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--out", type=Path, help="results folder (default: results/gpu-check-<device>/)")
    parser.add_argument("--tests", type=Path, default=Path("tests"), help="the test folder pytest -m gpu runs "
                        "(default: tests)")  # fmt: skip
    parser.add_argument("--recipe", type=Path, default=Path("book/params/paper.yaml"),
                        help="the recipe of make paper, for the schedule (default: "
                             "book/params/paper.yaml)")  # fmt: skip
    parser.add_argument("--device", default="cuda", help="the GPU to measure: cuda (the first) or cuda:N")
    parser.add_argument("--sizes", choices=sorted(SIZES), default="full",
                        help="full (default): the paper's sizes; small: toy sizes, the same steps in a minute "
                             "(figures that say nothing about speed)")  # fmt: skip
    return parser.parse_args(argv)


@contextmanager
def private_temporary_folder():
    """A folder for everything of the run's own, deleted at the end; meanwhile the TMPDIR and PLINKNET_CACHE of this
    process and its children, so that what libraries leave there (compile caches, session files, remembered data
    checks, ONNX exports) goes too."""
    temp = mark_folder(tempfile.mkdtemp(prefix="gpu-check-"), "the device check's own files, deleted at its end")
    tmp = temp / "t"  # short: DataLoader workers make unix sockets below it, 107 characters at most
    tmp.mkdir()
    saved = {key: os.environ.get(key) for key in ("PLINKNET_CACHE", "TMPDIR")}
    saved_tempdir = tempfile.tempdir
    os.environ["PLINKNET_CACHE"] = str(temp / "cache")
    if len(str(tmp)) <= 70:  # else a worker's socket path would not fit: the usual temporary folder stays
        os.environ["TMPDIR"] = tempfile.tempdir = str(tmp)
    try:
        yield temp
    finally:
        tempfile.tempdir = saved_tempdir
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            remove(temp)
        except NotPlinknetsError:
            raise
        except OSError as error:  # a child still writing there: what is left is marked, any later remove() takes it
            print(f"device check: could not delete all of {temp}: {error}", file=sys.stderr)


def run_steps(check: Check, report: dict, started: float) -> None:
    """Each step timed, its figures or its error kept, the report rewritten after each; then the calculation."""
    for number, name in enumerate(STEPS, 1):
        print(f"[{number}/{len(STEPS)}] {name}: started at {time.perf_counter() - started:.0f} s", flush=True)
        step_started = time.perf_counter()
        try:
            record = {"status": "ok", **getattr(check, name)()}
        except Exception as err:  # kept, reported, and the next step runs
            record = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc().splitlines()[-12:]}  # fmt: skip
        missing = [key for key in FIGURES.get(name, ())
                   if not (isinstance(record.get(key), (int, float)) and record[key] > 0)]  # fmt: skip
        if record["status"] == "ok" and missing:  # what it did measure stays in the record
            record.update(status="failed", error=f"{name} measured no {', '.join(missing)}")
        record["seconds"] = time.perf_counter() - step_started
        check.note_temp()
        report["steps"][name] = record
        print(f"[{number}/{len(STEPS)}] {name}: {record['status']} in {record['seconds']:.1f} s"
              + (f": {record['error']}" if record["status"] == "failed" else ""), flush=True)  # fmt: skip
        report["total_seconds"] = time.perf_counter() - started
        report["targets"] = judge(report)
        write_report(report, check.names)
    rate = report["steps"]["train"].get("loader_images_per_s")
    per_tile = report["steps"]["predict"].get("seconds_per_5000_tile")
    if not (rate and per_tile):
        schedule = {"calculation": True, "status": "not computed", "why": "no training rate or no prediction time"}
    else:
        try:
            schedule = {"status": "ok", **schedule_range(report["steps"]["train"], per_tile, check.recipe)}
        except Exception as err:
            schedule = {"calculation": True, "status": "failed", "error": f"{type(err).__name__}: {err}"}
        if report["sizes"] == "small":
            schedule["note"] = "from toy figures: meaningless, computed only to run the calculation"
    report["calculations"]["paper_schedule"] = schedule


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not devices.cuda_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    for path, what in ((args.tests, "--tests: the test folder"), (args.recipe, "--recipe: make paper's recipe")):
        if not path.exists():
            print(f"gpu-check: {path} does not exist ({what}); run it from the repository or give the path",
                  file=sys.stderr)  # fmt: skip
            return 2
    started = time.perf_counter()
    device = devices.resolve_device(args.device)
    label = devices.device_label(device)
    out = args.out or Path("results") / f"gpu-check-{slug(label)}"
    out.mkdir(parents=True, exist_ok=True)
    names = output_names(out)
    print(f"gpu-check on {label} ({device}, {args.sizes} sizes), writing {names['json']}", flush=True)
    # a hung step (say a DataLoader worker that lost a batch) prints every thread's stack and ends the process
    # instead of holding the GPU until someone notices
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    try:
        with private_temporary_folder() as temp:
            sizes = SIZES[args.sizes]
            check = Check(device, sizes, temp, names, args.tests, args.recipe)
            report = {"check": "gpu-check", "sizes": args.sizes, "device": label, "gpus": devices.gpu_count(),
                      "complete": False, "provenance": provenance(device), "settings": asdict(sizes),
                      "budget_seconds": BUDGET_S, "steps": {}, "calculations": {}, "targets": {},
                      "not_measured": []}  # fmt: skip
            run_steps(check, report, started)
    finally:
        faulthandler.cancel_dump_traceback_later()
    failed = [name for name, record in report["steps"].items() if record["status"] == "failed"]
    report["failed_steps"] = failed
    report["temp_peak_mib"] = check.temp_peak_mib
    if args.sizes == "small":
        report["not_measured"].append("every speed: this run used toy sizes, and its figures say nothing about a GPU")
    report["not_measured"] += [f"{name} (failed: {report['steps'][name]['error'][:200]})" for name in failed]
    report["total_seconds"] = time.perf_counter() - started
    report["targets"] = judge(report)
    report["complete"] = True
    write_report(report, names)
    failures = f", failed: {', '.join(failed)}" if failed else ""
    print(f"gpu-check: {len(STEPS) - len(failed)}/{len(STEPS)} steps ok{failures}; total "
          f"{report['total_seconds']:.0f} s (budget {BUDGET_S} s); {names['json']}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
