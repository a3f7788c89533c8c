"""The paper's question with its uncertainty: P-LinkNet against LinkNet34 over several seeds.

    plinknet ablate --config book/params/ablation-synthetic-cpu.yaml --seeds 0 1 2 3 4 \
        --out results/ablation-synthetic-cpu

The paper reports one run of each network (IoU 84.48 against 84.26). For each seed this
trains both networks with the same recipe, data order and augmentation, and the same starting
weights in every layer they share (only the pyramid differs), scores both on the whole
held-out tiles and keeps, in ``--out`` (small files, made to be committed):

* ``runs/seed<k>-<model>.json``: one per finished run: its config, history, best epoch, the
  scored split and tiles, threshold, window, overlap, data checksum, the SHA-256 of the
  ``best.pt`` scored, per-tile confusion counts, lab counts, provenance, and a SHA-256 of its own
  contents. A record is reused only when all of these match what is asked; a record of another
  recipe, one that fails its checksum, or one whose ``best.pt`` has changed since stops the
  command before anything is written. Checkpoints live in ``--runs-dir``, not here, and are never
  trained over (:func:`plinknet.train.train_or_reuse`);
* ``results.csv``: one row per (seed, model, tile) with the counts and the metrics;
* ``summary.json``: per-model mean and spread over seeds, the paired gaps with their
  intervals, both readings of the paper's number with the power analysis, the provenance, the
  checksums of its records and of itself.

The archive is append-only: each of these is written once and never rewritten. Another scoring
(split, threshold, window, overlap or data) goes into ``scores/<split>-<hash>/`` beside them,
scored again from the checkpoints (never retrained).

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
* the paper's +0.22 is read both as building IoU and as mIoU (chapter 6 argues mIoU is likelier):
  for each, the verdict, whether 0 and +0.22 lie inside the interval, the seed-to-seed σ of the
  gap with its chi-square interval, the seeds needed to detect +0.22 with a paired two-sided
  t-test at 5 % and 80 % power (statsmodels' ``TTestPower``) at σ and at the ends of its
  interval, and the smallest gap the 5 seeds of ``make paper`` detect;
* ``pairing``: σ of the paired gap against √2 × σ of one network, which is what independent
  runs would give: whether sharing the seed buys anything.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import yaml

from plinknet.files import check_seal, exclusive, file_sha256, seal, write_once
from plinknet.metrics import METRIC_NAMES, metrics_from_counts
from plinknet.provenance import provenance
from plinknet.study.paper import MODELS
from plinknet.study.stats import BOOTSTRAP_DRAWS, summarize

BOOK_ONLY_KEYS = ("synthetic", "run_dir", "examples", "example_size", "results_dir")  # notebook parameters


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
    from plinknet.checkpoint import load_checkpoint
    from plinknet.device import resolve_device
    from plinknet.infer.evaluate import evaluate_tiles
    from plinknet.infer.predict import PredictConfig
    from plinknet.study.lab import lab_counter
    from plinknet.train.loop import train_or_reuse
    from plinknet.train.run import read_history

    config = model_config(base, model, seed, runs_dir)
    train_or_reuse(config)
    started = time.perf_counter()
    best = Path(config.out_dir) / "best.pt"
    checkpoint_sha256 = file_sha256(best)  # what this record describes; a rerun compares it with the file
    network, state = load_checkpoint(best, resolve_device(config.device))
    # the window is the training crop (the context the pyramid learnt); the threshold is the recipe's
    window = PredictConfig(window=config.crop_size, threshold=config.threshold)
    scores = evaluate_tiles(network, config.data_dir, split, window, config.device, progress=progress,
                            counter=lab_counter(config.data_dir), select_tiles=config.select_tiles)  # fmt: skip
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
        "checkpoint": str(best),
        "checkpoint_sha256": checkpoint_sha256,
        "per_tile": scores.per_tile,
        "cities": {name: city for name, city in zip(scores.per_tile, _cities(config.data_dir, list(scores.per_tile)))},
        "lab": scores.counted,  # recall by size, false positives on look-alikes: synthetic samples only
        "train_provenance": state.get("provenance"),
        "launches": state.get("launches"),  # processes, batch per process, BatchNorm, precision of each stretch
        "train_seconds": sum(row["seconds"] for row in history),  # as logged, epoch by epoch
        "eval_seconds": time.perf_counter() - started,
        "provenance": provenance(resolve_device(config.device)),
    }


def _cities(data_dir, names: list[str]) -> list[str]:
    from plinknet.data.tiles import find_tiles

    by_name = {t.name: t.city for t in find_tiles(data_dir, "all")}
    return [by_name[n] for n in names]


SCORING = ("split", "tiles", "threshold", "window", "overlap", "data_sha256")  # what makes a scoring
RECORD_SEAL = "record_sha256"  # a record's checksum of its own contents
SUMMARY_SEAL = "summary_sha256"


def scoring_changes(record: dict, expected: dict) -> list[str]:
    """How an archived record's scoring differs from what is asked (split, tiles, threshold, window, overlap, data)."""
    return [f"{key}: recorded {record.get(key)!r}, asked {value!r}" for key, value in expected.items()
            if record.get(key) != value]  # fmt: skip


def scoring_name(scoring: dict) -> str:
    """The folder name, under an archive's ``scores/``, of a scoring other than the archive's first:
    ``<split>-<first 10 hex of the SHA-256 of the scoring>``."""
    digest = hashlib.sha256(json.dumps({k: scoring[k] for k in SCORING}, sort_keys=True).encode()).hexdigest()
    return f"{scoring['split']}-{digest[:10]}"


class ArchiveError(RuntimeError):
    """The archive cannot take what is asked (another recipe, a damaged record, a checkpoint that changed): nothing
    was written."""


def read_record(path: Path) -> dict:
    """An archived run record, checked against its own checksum.

    Raises:
        ArchiveError: the file cannot be read as JSON, carries no checksum, or its contents do not match it (edited
            by hand, cut); the message names it.
    """
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ArchiveError(
            f"{path} cannot be read ({error}): it was cut or damaged. plinknet trusts no record "
            f"it cannot check; move it away to score the run again. Nothing was written."
        ) from None
    wrong = check_seal(record, RECORD_SEAL)
    if wrong:
        raise ArchiveError(f"{path}: {wrong}. plinknet trusts no record it cannot check; restore it (git checkout) "
                           f"or move it away to score the run again. Nothing was written.")  # fmt: skip
    return record


def read_summary(folder: str | os.PathLike, scoring: str | None = None) -> dict | None:
    """An archive's ``summary.json`` (its first scoring), or that of ``scores/<scoring>/``, checked against its own
    checksum; None when there is none.

    Raises:
        ArchiveError: the summary carries no checksum or does not match it; the message names it.
    """
    path = Path(folder) / ("scores/" + scoring if scoring else "") / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ArchiveError(f"{path} cannot be read ({error}): it was cut or damaged") from None
    wrong = check_seal(summary, SUMMARY_SEAL)
    if wrong:
        raise ArchiveError(f"{path}: {wrong}; restore it (git checkout)")
    return summary


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
    data_sha256: str | None = None,
    retrain: bool = False,
) -> dict | None:
    """Run every (seed, model) not done yet, then write ``results.csv`` and ``summary.json``; an archive is append-only.

    The archive's first scoring (split, tiles, threshold, window, overlap, data checksum) lives at its top:
    ``runs/*.json``, ``results.csv``, ``summary.json``, ``config.yaml``. A scoring other than that one goes into its
    own folder beside it, ``scores/<split>-<hash>/`` (:func:`scoring_name`), with the same files; the runs it needs
    are scored again from their ``best.pt`` (never retrained). No file of an archive is ever rewritten: a record is
    written once per run and scoring, ``results.csv`` and ``summary.json`` once per scoring (a rerun finds them and
    stops). These stop everything before anything is written (:class:`ArchiveError`):

    * a record of another recipe (epochs included) in the archive;
    * a record that fails its own checksum (edited by hand, cut), or whose ``best.pt`` is present and is no longer
      the file it was scored from (trained on or replaced since);
    * a run to score again whose checkpoint of the same recipe is not in ``runs_dir``, unless ``retrain`` asks to
      train it again from scratch;
    * a summary already written for other seeds.

    Before anything is written the data are read once: every tile checked and the data hashed in one pass
    (:func:`plinknet.data.checks.check_and_hash`, remembered), and the encoder's ImageNet weights fetched once; the
    runs then neither check nor hash the data again.

    Several GPUs or machines: ``processes`` spreads the runs over that many worker processes, one per GPU this
    process was given (:func:`plinknet.device.assigned_gpus`: each worker's ``CUDA_VISIBLE_DEVICES`` names one of
    them), handing them the checksum; this process opens no CUDA context and alone writes the summary. On a
    cluster, one job per run with ``runs_only`` (each writes only its own record) and a last job without it give
    the same archive. Ctrl-C (or SIGTERM) stops the queue and its workers; every finished run is kept. Two ablates
    on one archive at once: each run and each summary is done by one, the other waits (file locks).

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
        data_sha256: the data's checksum, when the calling process has checked and hashed them (a worker's).
        retrain: train again, from scratch, the runs a new scoring needs whose checkpoints are not in ``runs_dir``
            (their records go into the new scoring's folder; the archived ones stay as they are).

    Returns:
        The summary (written to ``summary.json`` of the scoring's folder, or found there); None with ``runs_only``.
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
    gpus = _worker_gpus(base, processes)
    if split == "select" and not base.select_tiles:
        raise ValueError("--split select needs select_tiles in the recipe (the tiles best.pt is picked on)")
    out = Path(out_dir)
    runs_dir = Path(runs_dir) if runs_dir is not None else Path("runs") / "ablation" / out.name
    if data_sha256 is None:
        data_sha256 = _check_and_hash(base.data_dir, progress)
    todo, scoring, folder = _plan(base, seeds, models, out, runs_dir, split, data_sha256, retrain)
    if folder != out:
        print(f"scoring: {', '.join(f'{k} {v}' for k, v in scoring.items() if k != 'tiles')} differs from the "
              f"archive's first; written to {folder} (the archive's files stay as they are)", flush=True)  # fmt: skip
    if todo:
        fetch_encoder_weights(base)
    started = time.perf_counter()
    checked = replace(base, check_data=False)  # read once above: the runs neither check nor hash the data again
    if processes > 1 and todo:
        _run_in_processes(checked, todo, out, runs_dir, split, processes, gpus, data_sha256, retrain)
    else:
        for model, seed, why in todo:
            run_dir = model_config(base, model, seed, runs_dir).out_dir
            with exclusive(Path(run_dir).parent / f".{Path(run_dir).name}.lock", f"the run {run_dir}"):
                # another ablate may have done it while this one waited: plan it again, under the lock
                again, _, _ = _plan(base, [seed], [model], out, runs_dir, split, data_sha256, retrain, quiet=True)
                if not again:
                    print(f"{model}, seed {seed}: done by another process ({_record_path(folder, seed, model)})")
                    continue
                print(f"{model}, seed {seed}: {why} {run_dir}", flush=True)
                record = run_one(checked, model, seed, runs_dir, split, progress, data_sha256=data_sha256)
                if "again from scratch" in why:
                    record["retrained"] = "--retrain: its checkpoints were not found; trained again from scratch"
                write_once(_record_path(folder, seed, model), json.dumps(seal(record, RECORD_SEAL), indent=1))
    if runs_only:
        return None
    with exclusive(folder / ".summary.lock", f"the summary of {folder}"):
        found = read_summary(folder)
        if found is not None:  # written by another ablate meanwhile, or by an earlier call: never rewritten
            print(f"summary: {folder / 'summary.json'} holds these runs already (an archive is never rewritten)")
            return found
        records = [read_record(_record_path(folder, s, m)) for s in seeds for m in MODELS]
        write_once(folder / "results.csv", results_csv(records))
        write_once(folder / "config.yaml", yaml.safe_dump({**base.to_dict(), "seeds": list(seeds)}, sort_keys=False))
        summary = summarize(records, bootstrap_draws=bootstrap_draws)
        summary["overlap"] = scoring["overlap"]
        summary["wall_seconds_this_call"] = time.perf_counter() - started
        summary["compute_seconds"] = sum(r["train_seconds"] + r["eval_seconds"] for r in records)
        summary["data_dir"] = base.data_dir
        summary["data_sha256"] = scoring["data_sha256"]
        summary["data_kind"] = data_kind(base.data_dir)
        summary["records_sha256"] = {_record_path(folder, r["seed"], r["model"]).name: r[RECORD_SEAL]
                                     for r in records}  # fmt: skip
        summary["provenance"] = provenance()  # of this summary; each run's own is in runs/*.json
        summary["runs_provenance"] = {key: sorted({str(r["provenance"][key]) for r in records})
                                      for key in ("commit", "torch", "device", "date")}  # fmt: skip  # of the scoring
        summary["runs_provenance"]["train_commit"] = sorted({str((r.get("train_provenance") or {}).get("commit"))
                                                             for r in records})  # fmt: skip
        summary = seal(summary, SUMMARY_SEAL)
        write_once(folder / "summary.json", json.dumps(summary, indent=1))
    return summary


def _record_path(folder: Path, seed: int, model: str) -> Path:
    return folder / "runs" / f"seed{seed}-{MODELS[model]}.json"


def _scoring_folder(out: Path, scoring: dict) -> Path:
    """Where a scoring is written: the archive itself when it holds no record yet or its records are of this scoring
    (the first), else ``scores/<name>/``.

    Raises:
        ArchiveError: the archive's own records are of several scorings (written by an older plinknet).
    """
    kinds = {}
    for path in sorted((out / "runs").glob("*.json")):
        record = read_record(path)
        kinds.setdefault(json.dumps({k: record.get(k) for k in SCORING}, sort_keys=True), []).append(path.name)
    if len(kinds) > 1:
        ways = "; ".join(", ".join(names) for names in kinds.values())
        raise ArchiveError(
            f"the records in {out / 'runs'} were scored in {len(kinds)} ways ({ways}); choose another --out"
        )
    if not kinds or json.loads(next(iter(kinds))) == scoring:
        return out
    return out / "scores" / scoring_name(scoring)


def _plan(base, seeds, models, out: Path, runs_dir: Path, split: str, data_sha256: str,
          retrain: bool = False, quiet: bool = False) -> tuple[list[tuple[str, int, str]], dict, Path]:  # fmt: skip
    """The runs still to do as ``(model, seed, why)``, the scoring asked and the folder it goes to; nothing is written.

    Raises:
        ArchiveError: see :func:`run_ablation`.
    """
    from plinknet.data.tiles import find_tiles
    from plinknet.infer.predict import PredictConfig

    tiles = [t.name for t in find_tiles(base.data_dir, split, base.select_tiles)]
    window = PredictConfig(window=base.crop_size, threshold=base.threshold)
    scoring = {"split": split, "tiles": tiles, "threshold": window.threshold, "window": window.window,
               "overlap": window.overlap, "data_sha256": data_sha256}  # fmt: skip
    folder = _scoring_folder(out, scoring)
    summarized = read_summary(folder)
    if summarized is not None and not set(seeds) <= set(summarized["seeds"]):
        raise ArchiveError(f"{folder / 'summary.json'} summarizes seeds {summarized['seeds']}, asked {list(seeds)}: an "
                           f"archive is never rewritten; choose another --out (with --runs-dir {runs_dir}, the runs "
                           f"already trained are scored again, not retrained). Nothing was written.")  # fmt: skip
    todo, unreachable = [], []
    for seed in seeds:
        for model in models:
            config = model_config(base, model, seed, runs_dir)
            record_path = _record_path(folder, seed, model)
            elsewhere = [_record_path(out, seed, model), *sorted((out / "scores").glob(f"*/runs/{record_path.name}"))]
            paths = [record_path] if record_path.is_file() else [p for p in elsewhere if p.is_file()]
            earlier = {path: read_record(path) for path in paths}  # each read (and checked) once
            for path, record in earlier.items():
                _same_recipe(record, path, config, runs_dir)
            if record_path in earlier:
                _same_checkpoint(earlier[record_path], record_path, config)
                if not quiet:
                    print(f"{model}, seed {seed}: done ({record_path})", flush=True)
                continue
            if not earlier:
                todo.append((model, seed, "training into"))
                continue
            missing = _missing_checkpoint(Path(config.out_dir), "best.pt", config)
            first, record = next(iter(earlier.items()))
            if missing and not retrain:
                unreachable.append(f"{first} (to score again) needs {missing}; recorded run folder: "
                                   f"{record['config'].get('out_dir')}")  # fmt: skip
            elif missing:
                todo.append((model, seed, f"training again from scratch (--retrain; {missing}) into"))
            else:
                todo.append((model, seed, f"scoring again ({split}) from"))
    if unreachable:
        raise ArchiveError(f"{len(unreachable)} archived run(s) would have to be trained again, and ablate never "
                           f"retrains a run to score it: {'; '.join(unreachable)}. Point --runs-dir at the folder "
                           f"that holds their checkpoints (now {runs_dir}), or pass --retrain to train them again "
                           f"from scratch (their records go into the new scoring; the archived ones stay). Nothing "
                           f"was written.")  # fmt: skip
    return todo, scoring, folder


def _same_recipe(record: dict, path: Path, config, runs_dir: Path) -> None:
    """Raises ArchiveError when ``record`` (at ``path``) is of another recipe than ``config``, epochs included."""
    from plinknet.train.config import recipe_changes

    changed = recipe_changes(record["config"], config.to_dict())
    if record["config"].get("epochs") != config.epochs:
        changed.append(f"epochs: saved {record['config'].get('epochs')}, given {config.epochs}")
    if changed:
        raise ArchiveError(f"{path} records another recipe ({'; '.join(changed)}); choose another --out (plinknet "
                           f"never replaces an archived run; with --runs-dir {runs_dir} a longer schedule trains "
                           f"these runs on). Nothing was written.")  # fmt: skip


def _same_checkpoint(record: dict, path: Path, config) -> None:
    """Raises ArchiveError when the run's ``best.pt`` is present and is not the file ``record`` was scored from."""
    best = Path(config.out_dir) / "best.pt"
    recorded = record.get("checkpoint_sha256")
    if recorded is None or not best.is_file():
        return  # checkpoints are never committed: an archive stands without them
    now = file_sha256(best)
    if now != recorded:
        raise ArchiveError(f"{path} was scored from a best.pt of SHA-256 {recorded[:16]}, and {best} is now "
                           f"{now[:16]} (trained on or replaced since): the record no longer describes it. Score "
                           f"that checkpoint into another --out. Nothing was written.")  # fmt: skip


def _missing_checkpoint(run: Path, needed: str, config) -> str | None:
    """None when ``run`` holds ``needed`` (and last.pt) of ``config``'s recipe; else what is missing, in words."""
    from plinknet.train.config import recipe_changes

    for name in dict.fromkeys((needed, "last.pt")):
        if not (run / name).is_file():
            return f"{run / name}, not found"
    try:
        saved = yaml.safe_load((run / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as error:
        return f"{run / 'config.yaml'} to read ({error})"
    changed = recipe_changes(saved or {}, config.to_dict())
    return f"a run of the same recipe in {run} (it differs: {'; '.join(changed)})" if changed else None


def data_kind(data_dir) -> str:
    """``"synthetic"`` when ``data_dir`` holds a plinknet sample (its manifest says so), else ``"Inria layout"``: what a
    summary says it was computed on, so that no page calls a rehearsal on drawn cities a result on Inria."""
    from plinknet.synthetic import MANIFEST

    root = Path(data_dir)
    for base in (root / "AerialImageDataset", root):
        manifest = base / MANIFEST
        if manifest.is_file():
            try:
                return str(json.loads(manifest.read_text()).get("kind") or "synthetic")
            except (OSError, ValueError):
                return "synthetic"
    return "Inria layout"


def _check_and_hash(data_dir, progress: bool) -> str:
    """Every tile checked and the data hashed in one pass (nothing read when both are remembered); the checksum.

    Raises:
        InriaDataError: bad tiles, all counted and the first ten named, before anything is written.
    """
    from plinknet.data.checks import check_and_hash
    from plinknet.data.tiles import InriaDataError

    problems, checksum = check_and_hash(data_dir, progress=progress)
    if problems:
        listing = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise InriaDataError(f"{len(problems)} problem(s) in {data_dir} (run `plinknet check-data --data-dir "
                             f"{data_dir}` for the list): {listing}")  # fmt: skip
    print(f"data: {data_dir} checked and hashed (SHA-256 {checksum[:16]})", flush=True)
    return checksum


def fetch_encoder_weights(base) -> None:
    """Download the encoder's ImageNet weights once, here, before any worker starts (they then read the cache)."""
    if base.encoder_weights == "imagenet":
        from plinknet.model import build_encoder

        build_encoder(base.encoder_name, "imagenet")


def _worker_gpus(base, processes: int) -> list[str]:
    """The GPU each worker gets (:func:`plinknet.device.assigned_gpus`), or [] on the CPU; counts GPUs only.

    Raises:
        ValueError: more processes than GPUs this process was given.
    """
    from plinknet.device import assigned_gpus, resolve_device

    if processes == 1 or resolve_device(base.device).type != "cuda":
        return []
    gpus = assigned_gpus()
    if processes > len(gpus):
        raise ValueError(f"--processes {processes} but this process was given {len(gpus)} GPU(s) "
                         f"({', '.join(gpus) or 'none'}): one process per GPU")  # fmt: skip
    return gpus[:processes]


def _run_in_processes(base, todo, out: Path, runs_dir: Path, split: str, processes: int, gpus: list[str],
                      data_sha256: str, retrain: bool = False) -> None:  # fmt: skip
    """Share the runs among ``processes`` workers, each a ``plinknet ablate --runs-only`` of one run at a time.

    On CUDA worker k sees only ``gpus[k]`` (its ``CUDA_VISIBLE_DEVICES``); every worker runs on its share of this
    process's CPU cores (:func:`plinknet.device.core_shares`), from which its DataLoader workers and threads are
    sized. Each worker gets the data's checksum and checks nothing again. Each worker's output goes to
    ``<runs_dir>/logs/``. Every run is tried; a failed one is named with its log at the end (the others are kept,
    and a rerun resumes). Ctrl-C or SIGTERM stops the queue and every worker (SIGINT, then SIGKILL after 30 s),
    keeps every finished run and re-raises KeyboardInterrupt; on Linux a worker whose parent dies gets SIGTERM
    (``PR_SET_PDEATHSIG``), so that no worker trains on alone.

    Raises:
        RuntimeError: a run failed.
        KeyboardInterrupt: stopped; the message names the runs that finished and those stopped.
    """
    import queue
    import subprocess
    import sys
    import tempfile
    import threading

    from plinknet.device import core_shares, gpu_environment

    logs = runs_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    jobs: queue.Queue = queue.Queue()
    for job in todo:
        jobs.put(job)
    failed: list[str] = []
    finished: list[str] = []
    running: dict[int, tuple[subprocess.Popen, str]] = {}
    lock = threading.Lock()
    stopping = threading.Event()
    with tempfile.TemporaryDirectory() as folder:
        config_file = Path(folder) / "recipe.yaml"  # the resolved recipe, so every worker runs exactly it
        worker_config = {**base.to_dict(), "progress": False, "device": "cuda" if gpus else base.device}
        config_file.write_text(yaml.safe_dump(worker_config, sort_keys=False))

        shares = core_shares(processes)  # each worker on its own cores: its loader and threads are sized from them

        def worker(slot: int) -> None:
            env = gpu_environment(gpus[slot]) if gpus else {**os.environ, "OMP_NUM_THREADS": str(len(shares[slot]))}
            start = [sys.executable, "-m", "plinknet"]
            if sys.platform == "linux":  # on its share of the cores; stopped (SIGTERM) if this process dies
                start = [sys.executable, "-c", f"import ctypes, os, sys; os.sched_setaffinity(0, {shares[slot]}); "
                         f"ctypes.CDLL(None).prctl(1, 15); from plinknet.cli import main; "
                         f"sys.exit(main(sys.argv[1:]))"]  # fmt: skip
            while not stopping.is_set():
                try:
                    model, seed, why = jobs.get_nowait()
                except queue.Empty:
                    return
                name = f"{model} seed {seed}"
                log = logs / f"seed{seed}-{MODELS[model]}.log"
                where = f"GPU {gpus[slot]}" if gpus else f"process {slot}"
                with lock:
                    print(f"{model}, seed {seed}: {why} {model_config(base, model, seed, runs_dir).out_dir} on "
                          f"{where} (log: {log})", flush=True)  # fmt: skip
                started = time.perf_counter()
                command = [*start, "ablate", "--config", str(config_file), "--seeds",
                           str(seed), "--models", MODELS[model], "--runs-only", "--out", str(out), "--runs-dir",
                           str(runs_dir), "--split", split, "--data-sha256", data_sha256,
                           *(["--retrain"] if retrain else [])]  # fmt: skip
                with log.open("a") as file:
                    process = subprocess.Popen(command, stdout=file, stderr=subprocess.STDOUT, env=env)
                    with lock:
                        running[slot] = (process, name)
                    code = process.wait()
                    with lock:
                        running.pop(slot, None)
                minutes = (time.perf_counter() - started) / 60
                with lock:
                    if code == 0:
                        finished.append(name)
                        print(f"{model}, seed {seed}: done in {minutes:.1f} min", flush=True)
                    elif stopping.is_set():
                        print(f"{model}, seed {seed}: stopped after {minutes:.1f} min", flush=True)
                    else:
                        lines = log.read_text(errors="replace").strip().splitlines()
                        why = f"killed by {signal.Signals(-code).name}" if code < 0 else lines[-1] if lines else \
                            f"exit {code}"  # fmt: skip
                        failed.append(f"{name} ({why}; log: {log})")
                        print(f"{model}, seed {seed}: FAILED after {minutes:.1f} min; log: {log}", flush=True)

        threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(min(processes, len(todo)))]
        with _terminate_as_interrupt():
            try:
                for thread in threads:
                    thread.start()
                for thread in threads:
                    while thread.is_alive():
                        thread.join(0.5)
            except KeyboardInterrupt:
                stopping.set()
                with lock:
                    stopped = [name for _, name in running.values()]
                _stop(running, lock)
                for thread in threads:
                    thread.join()
                raise KeyboardInterrupt(f"stopped: {', '.join(stopped) or 'no run'} (their last epochs are kept "
                                        f"and resume); finished and kept: {', '.join(finished) or 'none'}; "
                                        f"{jobs.qsize()} not started") from None  # fmt: skip
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed, the others are kept (run again to resume): "
                           f"{'; '.join(failed)}")  # fmt: skip


def _stop(running: dict, lock, grace_s: float = 30.0) -> None:
    """SIGINT to every worker (its last saved epoch stays; its DataLoader workers end with it), SIGKILL to those still
    there after ``grace_s``."""
    import subprocess

    with lock:
        processes = [process for process, _ in running.values()]
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a scheduler's cancel, ``kill``) stops the queue as Ctrl-C does; only in the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def results_csv(records: list[dict]) -> str:
    """``results.csv``: one row per (seed, model, tile) with the counts, the metrics and the lab counts."""
    lab_keys = sorted({k for r in records if r["lab"] for c in r["lab"].values() for k in c})
    columns = ["seed", "model", "tile", "city", "tp", "fp", "fn", "tn", *METRIC_NAMES, *lab_keys]
    file = io.StringIO(newline="")
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
    return file.getvalue()
