"""The run folder: what makes one, opening it safely, history.csv, the launches and the RNG state."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import torch

from plinknet.checkpoint import load_state
from plinknet.files import atomic_path
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
        state = load_state(out / "last.pt")
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

