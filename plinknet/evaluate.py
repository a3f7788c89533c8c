"""Evaluation on whole validation tiles, overall, per city and per tile.

    plinknet evaluate --data data/inria --checkpoint runs/plinknet/best.pt
    torchrun --nproc_per_node=4 -m plinknet evaluate --data data/inria --checkpoint ...   # tiles split over GPUs

Each tile is predicted with the sliding-window predictor (the same code as ``plinknet
predict``), so the numbers are those of whole 5000x5000 scenes, not of crops. On the
synthetic sample, whose tiles carry lab labels, the report also holds recall by building
size and false positives on look-alikes (:mod:`plinknet.lab`). Under torchrun
each process predicts every ``world_size``-th tile and the confusion counts are summed, so
the report equals the single-process one (it records ``world_size``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from rasterio.errors import NotGeoreferencedWarning
from tqdm import tqdm

from plinknet import distributed
from plinknet.data import find_tiles, read_mask
from plinknet.lab import COUNT_KEYS, lab_paths, lab_rates, sum_counts, tile_lab_counts
from plinknet.metrics import BinaryConfusion, metrics_from_counts
from plinknet.predict import PredictConfig, predict_scene
from plinknet.scenes import NoCRSWarning
from plinknet.train import load_checkpoint, resolve_device, write_json


@dataclass
class TileScores:
    """What :func:`evaluate_tiles` counted: pixels overall, per city and per tile; the lab per tile."""

    confusion: BinaryConfusion  # overall and per city
    per_tile: dict[str, list[int]]  # tile name -> [tp, fp, fn, tn]
    lab: dict[str, dict[str, int]] | None  # tile name -> plinknet.lab counts (synthetic lab only)


def evaluate_tiles(
    model: torch.nn.Module,
    data_dir: str | Path,
    split: str = "val",
    config: PredictConfig | None = None,
    device: str = "auto",
    progress: bool = True,
    tiles: list[str] | None = None,
    lab: bool | None = None,
    select_tiles: tuple[int, ...] = (),
) -> TileScores:
    """Predict every tile of ``split`` and count (tp, fp, fn, tn), grouped by city and per tile.

    Under torchrun the tiles are shared among processes and the counts summed over them.

    Args:
        tiles: tile names (e.g. ``["austin1"]``) to evaluate instead of the whole split.
        lab: also count :mod:`plinknet.lab` metrics (recall by building size, false positives
            on look-alikes) from the synthetic lab labels; None: when every tile has them.
        select_tiles: the run's selection tile numbers (its ``select_tiles``): the ``select``
            split, and left out of ``train``.
    """
    config = (config or PredictConfig()).for_checkpoint(None)  # unset: window 512, threshold 0.5
    rank, world_size = distributed.rank_and_size()
    if split == "select" and tiles is None and not select_tiles:
        raise ValueError("split 'select' needs the run's select_tiles; this run has none (it picked best.pt on "
                         "the val tiles)")  # fmt: skip
    every = find_tiles(data_dir, split if tiles is None else "all", tuple(select_tiles))
    if tiles is not None:
        unknown = sorted(set(tiles) - {t.name for t in every})
        if unknown:
            raise ValueError(f"no tile(s) {unknown} in {data_dir}; names look like {every[0].name}")
        every = [t for t in every if t.name in tiles]
    if lab is None:
        lab = all(path.is_file() for t in every for path in lab_paths(t.image_path))
    counts = torch.zeros(len(every), 4, dtype=torch.int64)  # (tiles, [tp, fp, fn, tn]); this rank's rows
    lab_counts = torch.zeros(len(every), len(COUNT_KEYS), dtype=torch.int64)
    mine = range(rank, len(every), world_size)
    for i in tqdm(mine, desc=f"evaluate {split}", unit="tile", disable=not (progress and rank == 0)):
        tile = every[i]
        with warnings.catch_warnings():  # tiles need no georeference to be scored
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            warnings.simplefilter("ignore", NoCRSWarning)
            prob = predict_scene(model, tile.image_path, config, device=device, progress=False)
        mask = torch.from_numpy(read_mask(tile.mask_path))[None, None]  # (1, 1, H, W)
        logits = torch.logit(torch.from_numpy(prob).clamp(1e-7, 1 - 1e-7))[None, None]
        one = BinaryConfusion(config.threshold)
        one.update(logits, mask)
        counts[i] = one.counts
        if lab:
            found = tile_lab_counts(prob > config.threshold, tile.image_path)
            lab_counts[i] = torch.tensor([found[key] for key in COUNT_KEYS])
    counts = distributed.all_reduce(counts)  # every tile's row was filled by exactly one rank
    lab_counts = distributed.all_reduce(lab_counts)
    confusion = BinaryConfusion(config.threshold)
    confusion.update_counts(counts, groups=[t.city for t in every])
    return TileScores(
        confusion,
        {t.name: row.tolist() for t, row in zip(every, counts)},
        {t.name: dict(zip(COUNT_KEYS, row.tolist())) for t, row in zip(every, lab_counts)} if lab else None,
    )


def evaluation_report(scores: TileScores) -> dict:
    """Metrics as plain numbers: ``overall``, ``per_city``, ``per_tile`` and, with the lab, ``lab``.

    ``lab`` holds the summed counts and :func:`plinknet.lab.lab_rates` of them.
    """
    confusion = scores.confusion
    report = {
        "overall": confusion.compute(),
        "per_city": {city: confusion.compute(city) for city in confusion.groups},
        "per_tile": {name: metrics_from_counts(*row) for name, row in scores.per_tile.items()},
    }
    if scores.lab is not None:
        total = sum_counts(scores.lab.values())
        report["lab"] = {"counts": total, "rates": lab_rates(total), "per_tile": scores.lab}
    return report


def format_table(report: dict) -> str:
    """A plain-text table of IoU, mIoU, precision, recall, F1 and accuracy (in %) per city and overall."""
    names = ("iou", "miou", "precision", "recall", "f1", "accuracy")
    lines = [f"{'':12s}" + "".join(f"{n:>10s}" for n in names)]
    rows = [*report["per_city"].items(), ("overall", report["overall"])]
    for city, m in rows:
        lines.append(f"{city:12s}" + "".join(f"{100 * m[n]:10.2f}" for n in names))
    return "\n".join(lines)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    out: str | Path | None = None,
    split: str = "val",
    config: PredictConfig | None = None,
    device: str = "auto",
    progress: bool = True,
    tiles: list[str] | None = None,
) -> dict:
    """Metrics of a checkpoint on whole tiles; with ``out``, also written there as JSON.

    Under torchrun, call it in every process: each predicts its share of the tiles and every
    process returns the whole report; only rank 0 writes.

    Returns the report, which also records the data folder, split, checkpoint, device,
    window and ``world_size``.
    """
    model, state = load_checkpoint(checkpoint)
    recipe = state.get("config") or {}
    config = (config or PredictConfig()).for_checkpoint(recipe.get("crop_size"), recipe.get("threshold"))
    started = time.perf_counter()
    scores = evaluate_tiles(model, data_dir, split, config, device, progress, tiles,
                            select_tiles=tuple(recipe.get("select_tiles") or ()))  # fmt: skip
    report = evaluation_report(scores)
    dev = resolve_device(device)
    report.update(
        checkpoint=str(checkpoint),
        data_dir=str(data_dir),
        split=split if tiles is None else "tiles",
        device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        window=config.window,
        overlap=config.overlap,
        threshold=config.threshold,
        world_size=distributed.rank_and_size()[1],
        seconds=time.perf_counter() - started,
    )
    if out is not None and distributed.rank_and_size()[0] == 0:
        write_json(report, out)
    return report
