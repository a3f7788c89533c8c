"""The paper's question with its uncertainty: P-LinkNet against LinkNet34 over several seeds.

    plinknet ablate --config book/params/ablation-synthetic-cpu.yaml --seeds 0 1 2 3 4 \\
        --out results/ablation-synthetic-cpu

The paper reports one run of each network (IoU 84.48 against 84.26). For each seed this
trains both networks with the same recipe, data order and augmentation, and the same starting
weights in every layer they share (only the pyramid differs), scores both on the whole
held-out tiles and keeps, in ``--out`` (small files, made to be committed):

* ``runs/seed<k>-<model>.json``: one per finished run: its config, history, best epoch, the
  scored split and tiles, threshold, window, data checksum, per-tile confusion counts, lab
  counts and provenance. A record is reused only when all of these match what is asked; when
  only the scoring differs the run is scored again from its checkpoint (never retrained), and a
  record of another recipe stops the command before anything is written. Checkpoints live in
  ``--runs-dir``, not here, and are never trained over (:func:`plinknet.train.train_or_reuse`);
* ``results.csv``: one row per (seed, model, tile) with the counts and the metrics;
* ``summary.json``: per-model mean and spread over seeds, the paired gaps with their
  intervals, both readings of the paper's number with the power analysis, and the provenance.

Several GPUs: ``--processes N`` shares the runs among N worker processes, one per GPU, and
this process alone writes ``results.csv`` and ``summary.json``; on a cluster, ``--runs-only``
jobs (one per run, each writing only its record) then one call without it give the same
archive.

Statistics (stated in ``summary.json`` too):

* a network's score for one seed is computed from the confusion counts summed over the
  held-out tiles (the Inria benchmark's convention);
* the gap is P-LinkNet minus LinkNet34, seed by seed, averaged over seeds; its 95 % interval is
  a paired t-interval over the per-seed gaps (the benchmark's tiles held fixed; calibrated at
  any number of seeds, where a percentile bootstrap over 5 seeds covers about 84 %). A
  bootstrap over seeds and tiles, tiles resampled within their city, is kept as a sensitivity
  line;
* the paper's +0.22 is read both as building IoU and as mIoU (chapter 6 finds mIoU likelier):
  for each, the verdict, whether 0 and +0.22 lie inside the interval, the seed-to-seed σ of the
  gap with its chi-square interval, the seeds needed to detect +0.22 with a paired two-sided
  t-test at 5 % and 80 % power (statsmodels' ``TTestPower``) at σ and at the ends of its
  interval, and the smallest gap the 5 seeds of ``make paper`` detect;
* ``pairing``: σ of the paired gap against √2 × σ of one network, which is what independent
  runs would give: whether sharing the seed buys anything.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml
from scipy import stats
from statsmodels.stats.power import TTestIndPower, TTestPower

from plinknet.lab import SIZE_CLASSES_M2, lab_rates, sum_counts
from plinknet.metrics import METRIC_NAMES, metrics_from_counts
from plinknet.provenance import data_checksum, provenance
from plinknet.train import write_json

MODELS = {"P-LinkNet": "plinknet", "LinkNet34": "linknet34"}  # name -> file slug
PAPER = {"P-LinkNet": {"iou": 84.48, "second": 91.50}, "LinkNet34": {"iou": 84.26, "second": 91.04}}
PAPER_GAP = 0.22  # points of the paper's "IoU" (84.48 - 84.26), which chapter 6 finds most likely mIoU
READINGS = {"iou": "building IoU", "miou": "mIoU"}  # the two readings of the paper's metric
ALPHA, POWER = 0.05, 0.8  # two-sided test at 5 %, 80 % power
SEEDS_PLANNED = 5  # seeds of `make paper`
BOOTSTRAP_DRAWS = 10_000
BOOK_ONLY_KEYS = ("synthetic", "run_dir", "examples", "example_size", "results_dir")  # notebook parameters
LAB_GAPS = ("recall_small", "recall_medium", "recall_large", "fp_rate")


def model_config(base, model: str, seed: int, runs_dir: Path):
    """The training config of one run: ``base`` with the seed, the pyramid on or off and its folder."""
    bins = (base.pyramid_bins or (1, 2, 3, 6)) if model == "P-LinkNet" else ()
    return replace(base, seed=seed, pyramid_bins=bins, out_dir=str(runs_dir / f"seed{seed}" / MODELS[model]))


def run_one(base, model: str, seed: int, runs_dir: Path, split: str = "val", progress: bool = True,
            data_sha256: str | None = None) -> dict:  # fmt: skip
    """Train (or resume, or reuse) one network for one seed and score it on whole tiles; the run's record.

    A finished run is only scored again (from its ``best.pt``), never retrained; a run folder holding another
    recipe is refused (:class:`plinknet.train.RunFolderError`), never trained over.
    """
    from plinknet.evaluate import evaluate_tiles
    from plinknet.predict import PredictConfig
    from plinknet.train import load_checkpoint, read_history, resolve_device, train_or_reuse

    config = model_config(base, model, seed, runs_dir)
    train_or_reuse(config)
    started = time.perf_counter()
    network, state = load_checkpoint(Path(config.out_dir) / "best.pt", resolve_device(config.device))
    # the window is the training crop (the context the pyramid learnt); the threshold is the recipe's
    window = PredictConfig(window=config.crop_size, threshold=config.threshold)
    scores = evaluate_tiles(network, config.data_dir, split, window, config.device, progress=progress,
                            select_tiles=config.select_tiles)  # fmt: skip
    history = read_history(config.out_dir)
    return {
        "seed": seed,
        "model": model,
        "config": config.to_dict(),
        "best_epoch": state["epoch"] + 1,
        "best_on": state.get("best_on"),
        "history": history,
        "split": split,
        "tiles": list(scores.per_tile),
        "threshold": window.threshold,
        "window": window.window,
        "overlap": window.overlap,
        "data_sha256": data_sha256,
        "per_tile": scores.per_tile,
        "cities": {name: city for name, city in zip(scores.per_tile, _cities(config.data_dir, list(scores.per_tile)))},
        "lab": scores.lab,
        "train_provenance": state.get("provenance"),
        "launches": state.get("launches"),  # processes, batch per process, BatchNorm, precision of each stretch
        "train_seconds": sum(row["seconds"] for row in history),  # as logged, epoch by epoch
        "eval_seconds": time.perf_counter() - started,
        "provenance": provenance(resolve_device(config.device)),
    }


def _cities(data_dir, names: list[str]) -> list[str]:
    from plinknet.data import find_tiles

    by_name = {t.name: t.city for t in find_tiles(data_dir, "all")}
    return [by_name[n] for n in names]


def scoring_changes(record: dict, expected: dict) -> list[str]:
    """How an archived record's scoring differs from what is asked (split, tiles, threshold, window, data)."""
    return [f"{key}: recorded {record.get(key)!r}, asked {value!r}" for key, value in expected.items()
            if record.get(key) != value]  # fmt: skip


class ArchiveError(RuntimeError):
    """The archive folder holds records of another recipe: nothing was written."""


def run_ablation(
    base,
    seeds: list[int],
    out_dir: str | os.PathLike,
    runs_dir: str | os.PathLike | None = None,
    split: str = "val",
    progress: bool = True,
    bootstrap_draws: int = BOOTSTRAP_DRAWS,
    models: list[str] | None = None,
    runs_only: bool = False,
    processes: int = 1,
) -> dict | None:
    """Run every (seed, model) not done yet, then write ``results.csv`` and ``summary.json``.

    A record in ``out_dir/runs`` is reused when its recipe, scored split and tiles, threshold, window and data
    checksum are what is asked; when only the scoring differs, the run is scored again from its checkpoint (never
    retrained); a record of another recipe stops everything before anything is written (:class:`ArchiveError`).

    Several GPUs or machines: ``processes`` spreads the runs over that many worker processes (one per GPU, each
    seeing only its own through ``CUDA_VISIBLE_DEVICES``), then this process alone writes the summary; on a cluster,
    one job per run with ``runs_only`` (each writes only its own record) and a last job without it give the same
    archive.

    Args:
        base: a :class:`plinknet.train.TrainConfig`; ``seed``, ``pyramid_bins`` and ``out_dir``
            are set per run (P-LinkNet keeps ``base.pyramid_bins``, or the paper's when empty).
        seeds: one pair of runs per seed.
        out_dir: the archive (small files).
        runs_dir: checkpoints and run folders (default ``runs/ablation/<out_dir name>``).
        split: the held-out tiles that are scored (``val``: tiles 1-5; ``select``: the recipe's select tiles;
            ``train``: the training tiles, select tiles left out).
        models: the networks to run (names of :data:`MODELS`; default both); the summary needs both.
        runs_only: train and score the runs asked for and write their records only (a job of a job array).
        processes: worker processes to share the runs among (see above); 1 runs them here.

    Returns:
        The summary (also written to ``summary.json``); None with ``runs_only``.
    """
    models = list(MODELS) if models is None else list(models)
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"models must be among {', '.join(MODELS)}, got {models}")
    if not runs_only and (len(seeds) < 2 or len(set(seeds)) != len(seeds)):
        raise ValueError(f"need at least two distinct seeds for a spread, got {seeds}")
    if not runs_only and set(models) != set(MODELS):
        raise ValueError(f"the summary compares both networks; run {models} with --runs-only, or ask for both")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    cuda = processes > 1 and _on_cuda(base)
    if cuda and processes > _gpu_count():
        raise ValueError(f"--processes {processes} but torch sees {_gpu_count()} GPU(s) here: one process per GPU")
    if split == "select" and not base.select_tiles:
        raise ValueError("--split select needs select_tiles in the recipe (the tiles best.pt is picked on)")
    out = Path(out_dir)
    runs_dir = Path(runs_dir) if runs_dir is not None else Path("runs") / "ablation" / out.name
    todo, scoring = _plan(base, seeds, models, out, runs_dir, split)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if not runs_only:
        (out / "config.yaml").write_text(yaml.safe_dump({**base.to_dict(), "seeds": list(seeds)}, sort_keys=False))
    started = time.perf_counter()
    if processes > 1 and todo:
        _run_in_processes(base, todo, out, runs_dir, split, processes, cuda)
    else:
        for model, seed, why in todo:
            print(f"{model}, seed {seed}: {why} {model_config(base, model, seed, runs_dir).out_dir}", flush=True)
            record = run_one(base, model, seed, runs_dir, split, progress, data_sha256=scoring["data_sha256"])
            write_json(record, _record_path(out, seed, model))
    if runs_only:
        return None
    records = [json.loads(_record_path(out, s, m).read_text()) for s in seeds for m in MODELS]
    write_results_csv(records, out / "results.csv")
    summary = summarize(records, bootstrap_draws=bootstrap_draws)
    summary["wall_seconds_this_call"] = time.perf_counter() - started
    summary["compute_seconds"] = sum(r["train_seconds"] + r["eval_seconds"] for r in records)
    summary["data_dir"] = base.data_dir
    summary["data_sha256"] = scoring["data_sha256"]
    summary["provenance"] = provenance()  # of this summary; each run's own is in runs/*.json
    summary["runs_provenance"] = {key: sorted({str(r["provenance"][key]) for r in records})
                                  for key in ("commit", "torch", "device", "date")}  # fmt: skip  # of the scoring
    summary["runs_provenance"]["train_commit"] = sorted({str((r.get("train_provenance") or {}).get("commit"))
                                                         for r in records})  # fmt: skip
    write_json(summary, out / "summary.json")
    return summary


def _record_path(out: Path, seed: int, model: str) -> Path:
    return out / "runs" / f"seed{seed}-{MODELS[model]}.json"


def _plan(base, seeds, models, out: Path, runs_dir: Path, split: str) -> tuple[list[tuple[str, int, str]], dict]:
    """The runs still to do as ``(model, seed, why)``, and what scoring is asked; nothing is written.

    Raises:
        ArchiveError: a record of another recipe (or of more epochs) is in the archive.
    """
    from plinknet.data import find_tiles
    from plinknet.train import recipe_changes

    tiles = [t.name for t in find_tiles(base.data_dir, split, base.select_tiles)]
    scoring = {"split": split, "tiles": tiles, "threshold": base.threshold, "window": base.crop_size,
               "data_sha256": data_checksum(base.data_dir)}  # fmt: skip
    todo = []
    for seed in seeds:
        for model in models:
            record_path = _record_path(out, seed, model)
            if not record_path.is_file():
                todo.append((model, seed, "training into"))
                continue
            record = json.loads(record_path.read_text())
            changed = recipe_changes(record["config"], model_config(base, model, seed, runs_dir).to_dict())
            recorded_epochs = record["config"].get("epochs")
            if recorded_epochs > base.epochs:
                changed.append(f"epochs: saved {recorded_epochs}, given {base.epochs}")
            if changed:
                raise ArchiveError(f"{record_path} records another recipe ({'; '.join(changed)}); choose another "
                                   f"--out (plinknet never replaces an archived run)")  # fmt: skip
            rescore = scoring_changes(record, scoring)
            if recorded_epochs < base.epochs:  # a longer schedule: the run is resumed, then scored again
                todo.append((model, seed, f"training on from epoch {recorded_epochs} to {base.epochs} in"))
            elif rescore:
                todo.append((model, seed, f"scoring again ({'; '.join(rescore)}) from"))
            else:
                print(f"{model}, seed {seed}: done ({record_path})", flush=True)
    return todo, scoring


def _on_cuda(base) -> bool:
    from plinknet.train import resolve_device

    return resolve_device(base.device).type == "cuda"


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def _run_in_processes(base, todo, out: Path, runs_dir: Path, split: str, processes: int, cuda: bool) -> None:
    """Share the runs among ``processes`` workers, each a ``plinknet ablate --runs-only`` of one run at a time.

    On CUDA worker k sees only GPU k (``CUDA_VISIBLE_DEVICES``); on the CPU the cores are divided among the
    workers. Each worker's output goes to ``<runs_dir>/logs/``. Every run is tried; a failed one is named with
    its log at the end (the others are kept, and a rerun resumes).

    Raises:
        RuntimeError: a run failed.
    """
    import queue
    import subprocess
    import sys
    import tempfile
    import threading

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    logs = runs_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    jobs: queue.Queue = queue.Queue()
    for job in todo:
        jobs.put(job)
    failed: list[str] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory() as folder:
        config_file = Path(folder) / "recipe.yaml"  # the resolved recipe, so every worker runs exactly it
        worker_config = {**base.to_dict(), "progress": False, "device": "cuda" if cuda else base.device}
        config_file.write_text(yaml.safe_dump(worker_config, sort_keys=False))

        def worker(slot: int) -> None:
            env = dict(os.environ)
            if cuda:
                env["CUDA_VISIBLE_DEVICES"] = str(slot)
            else:
                env["OMP_NUM_THREADS"] = str(max(1, cores // processes))
            while True:
                try:
                    model, seed, why = jobs.get_nowait()
                except queue.Empty:
                    return
                log = logs / f"seed{seed}-{MODELS[model]}.log"
                where = f"GPU {slot}" if cuda else f"process {slot}"
                with lock:
                    print(f"{model}, seed {seed}: {why} {model_config(base, model, seed, runs_dir).out_dir} on "
                          f"{where} (log: {log})", flush=True)  # fmt: skip
                started = time.perf_counter()
                command = [sys.executable, "-m", "plinknet", "ablate", "--config", str(config_file), "--seeds",
                           str(seed), "--models", MODELS[model], "--runs-only", "--out", str(out), "--runs-dir",
                           str(runs_dir), "--split", split]  # fmt: skip
                with log.open("a") as file:
                    code = subprocess.run(command, stdout=file, stderr=subprocess.STDOUT, env=env).returncode
                minutes = (time.perf_counter() - started) / 60
                with lock:
                    if code == 0:
                        print(f"{model}, seed {seed}: done in {minutes:.1f} min", flush=True)
                    else:
                        lines = log.read_text(errors="replace").strip().splitlines()
                        failed.append(f"{model} seed {seed} ({lines[-1] if lines else f'exit {code}'}; log: {log})")
                        print(f"{model}, seed {seed}: FAILED after {minutes:.1f} min; log: {log}", flush=True)

        threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(min(processes, len(todo)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed, the others are kept (run again to resume): "
                           f"{'; '.join(failed)}")  # fmt: skip


# --------------------------------------------------------------------------- tables and statistics


def write_results_csv(records: list[dict], path: Path) -> None:
    """One row per (seed, model, tile): counts, metrics and lab counts."""
    lab_keys = sorted({k for r in records if r["lab"] for c in r["lab"].values() for k in c})
    columns = ["seed", "model", "tile", "city", "tp", "fp", "fn", "tn", *METRIC_NAMES, *lab_keys]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        for r in records:
            for tile, counts in r["per_tile"].items():
                metrics = metrics_from_counts(*counts)
                row = {"seed": r["seed"], "model": r["model"], "tile": tile, "city": r["cities"][tile],
                       **{k: metrics[k] for k in ("tp", "fp", "fn", "tn")},
                       **{k: round(100 * metrics[k], 4) for k in METRIC_NAMES}}  # fmt: skip
                if r["lab"]:
                    row.update(r["lab"][tile])
                writer.writerow(row)


def _score(counts: np.ndarray, metric: str) -> np.ndarray:
    """A pixel metric in points from (..., 4) summed [tp, fp, fn, tn] counts."""
    tp, fp, fn, tn = (counts[..., k].astype(np.float64) for k in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 1.0)
        if metric == "iou":
            return 100 * iou
        if metric == "miou":
            return 100 * (iou + np.where(tn + fp + fn > 0, tn / (tn + fp + fn), 1.0)) / 2
        if metric == "f1":
            return 100 * np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
        if metric == "precision":
            return 100 * np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    raise ValueError(f"unknown metric {metric}")


def _lab_score(counts: np.ndarray, keys: list[str], rate: str) -> np.ndarray:
    """A lab rate in points from (..., len(keys)) summed lab counts."""
    if rate == "fp_rate":
        num, den = keys.index("distractor_false_positives"), keys.index("distractor_pixels")
    else:
        size = rate.removeprefix("recall_")
        num, den = keys.index(f"{size}_detected"), keys.index(f"{size}_total")
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100 * counts[..., num] / counts[..., den]


def paired_t_interval(gaps, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The t-interval of the mean of paired gaps over seeds (the last axis): the primary interval of every gap.

    The benchmark's tiles are held fixed, as the paper's question is; each seed's gap is one draw of the training's
    randomness. Exact for normal gaps at any number of seeds (``scipy.stats.ttest_1samp``); vectorised, so the
    coverage test can run thousands of replications at once.
    """
    result = stats.ttest_1samp(np.asarray(gaps, dtype=np.float64), 0.0, axis=-1)
    interval = result.confidence_interval(confidence)
    return interval.low, interval.high


def paired_bootstrap(first: np.ndarray, second: np.ndarray, score, draws: int, seed: int = 0,
                     groups: list[str] | None = None) -> np.ndarray:  # fmt: skip
    """Bootstrap draws of ``mean over seeds of score(first) - score(second)``, resampling seeds and tiles.

    The sensitivity line beside :func:`paired_t_interval`: it also treats the tiles as drawn from their city.
    At a handful of seeds it is too narrow (a percentile bootstrap over 5 seeds covers about 84 %).

    Args:
        first, second: (seeds, tiles, k) counts of the two networks, paired by seed and tile.
        score: maps (..., k) counts summed over tiles to a number per seed.
        draws: bootstrap draws.
        groups: the city of each tile; tiles are resampled within their city (None: one group).

    Returns:
        (draws,) gaps.
    """
    rng = np.random.default_rng(seed)
    n_seeds, n_tiles = first.shape[:2]
    groups = groups or ["all"] * n_tiles
    tile_weights = np.zeros((draws, n_tiles))  # (draws, tiles): how often each tile is drawn
    for group in dict.fromkeys(groups):
        members = [i for i, g in enumerate(groups) if g == group]
        tile_weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=draws)
    seed_picks = rng.integers(0, n_seeds, size=(draws, n_seeds))  # (draws, seeds)
    gaps = []
    for counts in (first, second):
        summed = np.einsum("dt,stk->dsk", tile_weights, counts.astype(np.float64))  # (draws, seeds, k)
        per_seed = score(np.take_along_axis(summed, seed_picks[:, :, None], axis=1))  # (draws, seeds)
        gaps.append(per_seed.mean(axis=1))
    return gaps[0] - gaps[1]


def runs_needed(sigma: float, gap: float, alpha: float = ALPHA, power: float = POWER, paired: bool = True) -> int:
    """Runs of each network for a two-sided t-test at ``alpha`` to detect ``gap`` with ``power``.

    ``paired``: seeds shared (statsmodels' ``TTestPower`` on the per-seed gaps, whose spread is ``sigma``); else two
    independent samples (``TTestIndPower``, ``sigma`` the spread of one network). The noncentral t, exact at small n.
    """
    if sigma <= 0:
        return 2
    effect = gap / sigma
    test = TTestPower() if paired else TTestIndPower()
    with warnings.catch_warnings():  # its root finder gives up (NaN, with a warning) for very small effects
        warnings.simplefilter("ignore")
        n = test.solve_power(effect_size=effect, alpha=alpha, power=power, alternative="two-sided")
    if not np.isfinite(n):  # then n is large, where Guenther's normal form with its t correction is within a run
        z_alpha, z_power = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
        k = 1 if paired else 2  # an independent sample's mean difference has twice the variance
        n = k * ((z_alpha + z_power) / effect) ** 2 + z_alpha**2 / (2 * k)
    return max(2, math.ceil(n))


def detectable_gap(sigma: float, seeds: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true gap that ``seeds`` paired runs detect with ``power`` (two-sided paired t-test at ``alpha``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        effect = TTestPower().solve_power(nobs=seeds, alpha=alpha, power=power, alternative="two-sided")
    return float(effect * sigma)


def sigma_interval(sigma: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The chi-square confidence interval of a standard deviation estimated from ``n`` values."""
    df = n - 1
    return (float(sigma * math.sqrt(df / stats.chi2.ppf((1 + confidence) / 2, df))),
            float(sigma * math.sqrt(df / stats.chi2.ppf((1 - confidence) / 2, df))))  # fmt: skip


def reading(summary: dict, metric: str, paper_gap: float = PAPER_GAP, seeds_planned: int = SEEDS_PLANNED) -> dict:
    """The paper's +0.22 read as ``metric`` (``iou`` or ``miou``): verdict, flags and power with their ranges."""
    low, high = summary[f"gap_{metric}_ci95"]
    sigma = summary[f"sigma_{metric}"]
    sigma_low, sigma_high = sigma_interval(sigma, len(summary["seeds"]))
    return {
        "metric": metric,
        "paper_gap": paper_gap,
        "verdict": _verdict_word(low, high, paper_gap),
        "paper_gap_inside_ci95": bool(low <= paper_gap <= high),
        "zero_inside_ci95": bool(low <= 0 <= high),
        "sigma": sigma,
        "sigma_ci95": [sigma_low, sigma_high],
        "runs_needed": runs_needed(sigma, paper_gap),
        "runs_needed_ci95": [runs_needed(sigma_low, paper_gap), runs_needed(sigma_high, paper_gap)],
        "seeds_planned": seeds_planned,
        "detectable_gap": detectable_gap(sigma, seeds_planned),
        "detectable_gap_ci95": [detectable_gap(sigma_low, seeds_planned), detectable_gap(sigma_high, seeds_planned)],
    }


def _stack(records: list[dict], model: str, seeds: list[int], tiles: list[str], field: str, keys=None) -> np.ndarray:
    by_seed = {r["seed"]: r for r in records if r["model"] == model}
    if field == "per_tile":
        return np.array([[by_seed[s]["per_tile"][t] for t in tiles] for s in seeds], dtype=np.int64)
    return np.array([[[by_seed[s]["lab"][t][k] for k in keys] for t in tiles] for s in seeds], dtype=np.int64)


def summarize(records: list[dict], bootstrap_draws: int = BOOTSTRAP_DRAWS) -> dict:
    """The ablation's statistics from the run records (see the module docstring)."""
    seeds = sorted({r["seed"] for r in records})
    tiles = list(records[0]["per_tile"])
    cities = [records[0].get("cities", {}).get(t, "all") for t in tiles]
    counts = {m: _stack(records, m, seeds, tiles, "per_tile") for m in MODELS}  # (seeds, tiles, 4)
    summary: dict = {"seeds": seeds, "tiles": tiles, "split": records[0]["split"], "window": records[0]["window"],
                     "threshold": records[0].get("threshold"), "models": {}, "paper": PAPER}  # fmt: skip
    per_seed = {}
    for model, c in counts.items():
        summed = c.sum(axis=1)  # (seeds, 4)
        per_seed[model] = {metric: _score(summed, metric) for metric in ("iou", "miou", "f1", "precision")}
        summary["models"][model] = {
            **{f"{metric}_{stat}": float(fn(values)) for metric, values in per_seed[model].items()
               for stat, fn in (("mean", np.mean), ("std", lambda v: np.std(v, ddof=1)))},
            **{f"{metric}_per_seed": [round(float(v), 4) for v in values]
               for metric, values in per_seed[model].items()},
            "best_epochs": [r["best_epoch"] for s in seeds for r in records if r["model"] == model and r["seed"] == s],
            "epochs": [r["config"]["epochs"] for s in seeds for r in records
                       if r["model"] == model and r["seed"] == s and "config" in r],
        }  # fmt: skip
    first, second = counts["P-LinkNet"], counts["LinkNet34"]
    summary["pairing"] = {}
    for metric in ("iou", "miou", "f1"):
        gaps = per_seed["P-LinkNet"][metric] - per_seed["LinkNet34"][metric]
        low, high = paired_t_interval(gaps)
        draws = paired_bootstrap(first, second, lambda c, m=metric: _score(c, m), bootstrap_draws, groups=cities)
        summary[f"gap_{metric}_mean"] = float(gaps.mean())
        summary[f"gap_{metric}_per_seed"] = [round(float(g), 4) for g in gaps]
        summary[f"gap_{metric}_ci95"] = [float(low), float(high)]
        summary[f"gap_{metric}_ci95_bootstrap"] = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
        summary[f"sigma_{metric}"] = float(np.std(gaps, ddof=1))
        one = float(np.sqrt((summary["models"]["P-LinkNet"].get(f"{metric}_std", np.nan) ** 2
                             + summary["models"]["LinkNet34"].get(f"{metric}_std", np.nan) ** 2) / 2))  # fmt: skip
        summary["pairing"][metric] = {"sigma_paired_gap": summary[f"sigma_{metric}"], "sigma_one_network": one,
                                      "sqrt2_sigma_one_network": math.sqrt(2) * one}  # fmt: skip
    summary["paper_gap"] = PAPER_GAP
    summary["readings"] = {metric: reading(summary, metric) for metric in READINGS}
    for metric, r in summary["readings"].items():  # unpaired: two networks trained independently, as in the paper
        r["runs_needed_unpaired"] = runs_needed(summary["pairing"][metric]["sigma_one_network"], PAPER_GAP,
                                                paired=False)  # fmt: skip
    if all(r["lab"] for r in records):
        summary["lab"] = _lab_summary(records, seeds, tiles, cities, bootstrap_draws)
    summary["method"] = (
        "score per seed from counts summed over the held-out tiles; gap = P-LinkNet - LinkNet34 per seed, "
        "averaged; 95 % interval: paired t-interval over the per-seed gaps (tiles held fixed; scipy.stats); "
        "sensitivity: percentile bootstrap over seeds and tiles, tiles resampled within their city "
        f"({bootstrap_draws} draws); sigma: standard deviation over seeds of the per-seed gap, with its chi-square "
        "95 % interval; runs needed: paired two-sided t-test at 5 % with 80 % power (statsmodels TTestPower), "
        f"for the paper's {PAPER_GAP}-point gap read as IoU and as mIoU, at sigma and at the ends of its interval"
    )
    return summary


def _lab_summary(records, seeds, tiles, cities, draws) -> dict:
    keys = list(next(iter(records[0]["lab"].values())))
    counts = {m: _stack(records, m, seeds, tiles, "lab", keys) for m in MODELS}
    lab = {"size_classes_m2": {k: [lo, None if math.isinf(hi) else hi] for k, (lo, hi) in SIZE_CLASSES_M2.items()},
           "models": {}}  # fmt: skip
    for model, c in counts.items():
        per_seed = [lab_rates(sum_counts(dict(zip(keys, row)) for row in c[s].tolist())) for s in range(len(seeds))]
        lab["models"][model] = {
            rate: {"mean": _mean_or_none([100 * p[rate] for p in per_seed if p[rate] is not None]),
                   "per_seed": [None if p[rate] is None else round(100 * p[rate], 4) for p in per_seed]}
            for rate in per_seed[0]
        }  # fmt: skip
    lab["totals"] = {k: int(v) for k, v in zip(keys, counts["P-LinkNet"][0].sum(axis=0))}
    for rate in LAB_GAPS:
        samples = paired_bootstrap(counts["P-LinkNet"], counts["LinkNet34"], lambda c, r=rate: _lab_score(c, keys, r),
                                   draws, groups=cities)  # fmt: skip
        with np.errstate(invalid="ignore", divide="ignore"):
            first = _lab_score(counts["P-LinkNet"].sum(axis=1), keys, rate)
            second = _lab_score(counts["LinkNet34"].sum(axis=1), keys, rate)
        gaps, samples = (first - second)[np.isfinite(first - second)], samples[np.isfinite(samples)]
        lab[f"gap_{rate}_mean"] = _mean_or_none(gaps)  # None: no instance of that size in these tiles
        lab[f"gap_{rate}_ci95"] = [float(v) for v in paired_t_interval(gaps)] if len(gaps) >= 2 else None
        lab[f"gap_{rate}_ci95_bootstrap"] = ([float(np.percentile(samples, q)) for q in (2.5, 97.5)]
                                             if samples.size else None)  # fmt: skip
    return lab


def _mean_or_none(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _verdict_word(low: float, high: float, paper_gap: float) -> str:
    if low > 0:
        return "reproduced"
    if high < paper_gap:
        return "not reproduced"
    return "inconclusive"


def verdict(summary: dict | None, metric: str = "iou") -> str:
    """One word on the paper's claim (the pyramid improves its metric by +0.22) read as ``metric``.

    * ``not tested at paper scale``: no summary (nobody has run ``make paper`` yet);
    * ``reproduced``: the 95 % interval of the gap lies above 0 (the pyramid helps; the
      summary says whether by more or less than 0.22);
    * ``not reproduced``: the interval lies below the paper's +0.22 and reaches 0 or less
      (a gain as large as the paper's is ruled out and no gain is not);
    * ``inconclusive``: the interval holds both 0 and +0.22.
    """
    if summary is None:
        return "not tested at paper scale"
    low, high = summary[f"gap_{metric}_ci95"]
    return _verdict_word(low, high, summary.get("paper_gap", PAPER_GAP))


def format_summary(summary: dict) -> str:
    """A plain-text account of an ablation summary: scores over seeds, the gaps, both readings and the power."""
    n = len(summary["seeds"])
    lines = [f"{n} seeds {summary['seeds']}, {len(summary['tiles'])} {summary['split']} tiles, window "
             f"{summary['window']}; points, mean +- standard deviation over seeds"]  # fmt: skip
    lines.append(f"{'':12s}{'IoU':>16s}{'mIoU':>16s}{'F1':>16s}")
    for model, m in summary["models"].items():
        cells = "".join(f"{m[f'{k}_mean']:9.2f} +- {m[f'{k}_std']:4.2f}" for k in ("iou", "miou", "f1"))
        lines.append(f"{model:12s}{cells}")
    for metric in ("iou", "miou", "f1"):
        low, high = summary[f"gap_{metric}_ci95"]
        blow, bhigh = summary[f"gap_{metric}_ci95_bootstrap"]
        lines.append(f"gap {metric:5s} P-LinkNet - LinkNet34: {summary[f'gap_{metric}_mean']:+.2f} points, "
                     f"95 % t-interval [{low:+.2f}, {high:+.2f}] (bootstrap over seeds and tiles: "
                     f"[{blow:+.2f}, {bhigh:+.2f}])")  # fmt: skip
    for metric, r in summary["readings"].items():
        lines.append(f"the paper's +{r['paper_gap']} read as {READINGS[metric]}: {r['verdict']}; sigma "
                     f"{r['sigma']:.2f} [{r['sigma_ci95'][0]:.2f}, {r['sigma_ci95'][1]:.2f}]; runs per network to "
                     f"detect it at 80 % power: {r['runs_needed']} [{r['runs_needed_ci95'][0]}, "
                     f"{r['runs_needed_ci95'][1]}]; {r['seeds_planned']} seeds detect "
                     f"{r['detectable_gap']:.2f} points")  # fmt: skip
    pairing = summary["pairing"]["iou"]
    lines.append(f"pairing: sigma of the paired IoU gap {pairing['sigma_paired_gap']:.2f} against sqrt(2) x sigma of "
                 f"one network {pairing['sqrt2_sigma_one_network']:.2f}")  # fmt: skip
    if "lab" in summary:
        lab = summary["lab"]
        for rate in LAB_GAPS:
            if lab[f"gap_{rate}_ci95"] is None:
                lines.append(f"lab {rate}: nothing to count in these tiles")
                continue
            low, high = lab[f"gap_{rate}_ci95"]
            means = ", ".join(f"{model} {lab['models'][model][rate]['mean']:.2f}" for model in MODELS)
            lines.append(f"lab {rate}: {means}; gap {lab[f'gap_{rate}_mean']:+.2f} [{low:+.2f}, {high:+.2f}]")
    return "\n".join(lines)
