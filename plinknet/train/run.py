"""The run folder: what makes one, opening it safely, history.csv, the launches and the RNG state."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import torch

from plinknet.checkpoint import load_state
from plinknet.files import atomic_path, save_torch
from plinknet.metrics import METRIC_NAMES
from plinknet.train.config import SAFE_ON_RESUME, RunFolderError, TrainConfig, recipe_changes

HISTORY_COLUMNS = (
    "epoch", "lr", "train_loss", "val_loss", *METRIC_NAMES, "seconds", "images_per_s",
)  # fmt: skip


RUN_FILES = ("history.csv", "last.pt", "best.pt")  # what makes a folder a run (a config.yaml alone does not)


def _rng_state() -> dict:
    """Generators' states as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position,
            has_gauss, gauss], "python": random.getstate()}  # fmt: skip


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def launch_comment(launch: dict) -> str:
    """A run's launch as a YAML comment line for ``config.yaml`` (a comment, so the file stays a --config)."""
    return (f"# launched at epoch {launch['from_epoch']}: {launch['world_size']} process(es) x "
            f"{launch['batch_per_process']} images = global batch {launch['global_batch']}, "
            f"{launch['steps_per_epoch']} steps per epoch; {launch['batchnorm']}; {launch['precision']}\n")  # fmt: skip


def read_history(run_dir: str | Path) -> list[dict]:
    """Rows of ``history.csv`` as dicts of floats (epoch as int)."""
    path = Path(run_dir) / "history.csv"
    with path.open() as f:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _write_history(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in HISTORY_COLUMNS})


BEST_DROPS = ("optimizer", "scheduler", "rng", "scaler")  # best.pt: weights and configs only, all prediction needs


def best_of(checkpoint: dict) -> dict:
    """``best.pt``'s content from an epoch's ``last.pt`` content (the weights and configs, half the size)."""
    return {k: v for k, v in checkpoint.items() if k not in BEST_DROPS}


def complete_epoch(out: str | Path) -> dict | None:
    """Finish the saves of the epoch that ``last.pt`` holds, when a kill came between them; returns ``last.pt``'s state.

    An epoch saves ``last.pt`` first (its commit point: it holds the whole history), then ``best.pt`` when the
    epoch improved, then ``history.csv``. After a kill between two of them, ``best.pt`` (when the last epoch is the
    best: its weights are ``last.pt``'s) and ``history.csv`` are written again from ``last.pt``, so the run resumes
    or is finished as if the kill had not come.

    Raises:
        ValueError: ``last.pt`` cannot be read.
    """
    out = Path(out)
    if not (out / "last.pt").is_file():
        return None
    state = load_state(out / "last.pt")
    history = state.get("history") or []
    if not history:
        return state
    best_row = max(history, key=lambda row: row["iou"])  # the first of equal ones, as training picks it
    if best_row["epoch"] == history[-1]["epoch"]:
        try:
            saved_best = load_state(out / "best.pt")["epoch"]
        except (FileNotFoundError, ValueError):
            saved_best = None
        if saved_best != state["epoch"]:
            save_torch(best_of(state), out / "best.pt")
    try:
        written = read_history(out)
    except (OSError, ValueError, KeyError):
        written = None
    if written is None or [row["epoch"] for row in written] != [row["epoch"] for row in history]:
        _write_history(out / "history.csv", history)
    return state


def _open_run(config: TrainConfig, resume: bool, overwrite: bool) -> dict | None:
    """Check the run folder before any work; returns the state to resume from (or None).

    Raises:
        RunFolderError: resume without ``last.pt``, a changed recipe on resume, nothing left
            to train, or a run already in the folder without ``overwrite``.
    """
    out = Path(config.out_dir)
    if resume and overwrite:
        raise RunFolderError("choose --resume or --overwrite, not both")
    if resume:
        if not (out / "last.pt").is_file():
            raise RunFolderError(f"cannot resume: {out / 'last.pt'} does not exist (train without --resume to start)")
        state = complete_epoch(out)  # a kill between the last epoch's saves: finish them first
        saved, given = state["config"], config.to_dict()
        changed = recipe_changes(saved, given)
        if changed:
            raise RunFolderError(f"cannot resume {out} with a different recipe ({'; '.join(changed)}); only "
                                 f"{', '.join(SAFE_ON_RESUME)} may change on resume. Use another --out-dir "
                                 f"for a new recipe")  # fmt: skip
        done = state["epoch"] + 1
        if config.epochs <= done:
            raise RunFolderError(f"{out} has already trained {done} of {config.epochs} epoch(s); "
                                 f"pass a larger --epochs to continue it")  # fmt: skip
        return state
    present = [name for name in RUN_FILES if (out / name).exists()]
    if present and not overwrite:
        raise RunFolderError(f"{out} already holds a run ({', '.join(present)}); use --resume to continue it, "
                             f"--overwrite to replace it, or another --out-dir")  # fmt: skip
    return None

