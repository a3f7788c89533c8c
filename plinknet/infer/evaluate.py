"""Evaluation on whole validation tiles, overall, per city and per tile.

    plinknet evaluate --data-dir data/inria --checkpoint runs/plinknet/best.pt
    torchrun --nproc_per_node=4 -m plinknet evaluate --data-dir data/inria --checkpoint ...   # tiles split over GPUs

Each tile is predicted with the sliding-window predictor (the same code as ``plinknet
predict``), so the numbers are those of whole 5000x5000 scenes, not of crops. On the
``counter`` a caller may count more per tile from the binary prediction (the study's lab counts
recall by building size and false positives on look-alikes this way, :mod:`plinknet.study.lab`);
the method itself knows nothing of it. Under torchrun
each process predicts every ``world_size``-th tile and the confusion counts are summed, so
the report equals the single-process one (it records ``world_size``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rasterio.errors import NotGeoreferencedWarning
from tqdm import tqdm

from plinknet import distributed
from plinknet.checkpoint import load_checkpoint
from plinknet.data.tiles import Tile, find_tiles, read_mask
from plinknet.device import device_label, resolve_device
from plinknet.files import write_json
from plinknet.infer.predict import PredictConfig, predict_scene
from plinknet.infer.scenes import NoCRSWarning
from plinknet.metrics import BinaryConfusion, metrics_from_counts


@dataclass(frozen=True)
class TileCounter:
    """More integer counts per tile, from its binary prediction: ``count(prediction, tile)`` returns ``keys``.

    The counts are summed over processes under torchrun, so they must be additive (pixels, instances).
    """

    keys: tuple[str, ...]
    count: Callable[[np.ndarray, Tile], dict[str, int]]  # ((H, W) bool prediction, tile) -> {key: count}


@dataclass
class TileScores:
    """What :func:`evaluate_tiles` counted: pixels overall, per city and per tile; a counter's counts per tile."""

    confusion: BinaryConfusion  # overall and per city
    per_tile: dict[str, list[int]]  # tile name -> [tp, fp, fn, tn]
    counted: dict[str, dict[str, int]] | None  # tile name -> the TileCounter's counts (None without one)


def evaluate_tiles(
    model: torch.nn.Module,
    data_dir: str | Path,
    split: str = "val",
    config: PredictConfig | None = None,
    device: str = "auto",
    progress: bool = True,
    tiles: list[str] | None = None,
    counter: TileCounter | None = None,
    select_tiles: tuple[int, ...] = (),
) -> TileScores:
    """Predict every tile of ``split`` and count (tp, fp, fn, tn), grouped by city and per tile.

    Under torchrun the tiles are shared among processes and the counts summed over them.

    Args:
        tiles: tile names (e.g. ``["austin1"]``) to evaluate instead of the whole split.
        counter: more counts per tile from its binary prediction (see :class:`TileCounter`).
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
    counts = torch.zeros(len(every), 4, dtype=torch.int64)  # (tiles, [tp, fp, fn, tn]); this rank's rows
    keys = counter.keys if counter is not None else ()
    counted = torch.zeros(len(every), len(keys), dtype=torch.int64)  # (tiles, keys)
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
        if counter is not None:
            found = counter.count(prob > config.threshold, tile)
            counted[i] = torch.tensor([found[key] for key in keys])
    counts = distributed.all_reduce(counts)  # every tile's row was filled by exactly one rank
    counted = distributed.all_reduce(counted)
    confusion = BinaryConfusion(config.threshold)
    confusion.update_counts(counts, groups=[t.city for t in every])
    return TileScores(
        confusion,
        {t.name: row.tolist() for t, row in zip(every, counts)},
        {t.name: dict(zip(keys, row.tolist())) for t, row in zip(every, counted)} if counter is not None else None,
    )


def evaluation_report(scores: TileScores) -> dict:
    """Metrics as plain numbers: ``overall``, ``per_city`` and ``per_tile`` (a counter's counts are not in it)."""
    confusion = scores.confusion
    report = {
        "overall": confusion.compute(),
        "per_city": {city: confusion.compute(city) for city in confusion.groups},
        "per_tile": {name: metrics_from_counts(*row) for name, row in scores.per_tile.items()},
    }
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
    counter: TileCounter | None = None,
    extend: Callable[[dict, TileScores], None] | None = None,
) -> dict:
    """Metrics of a checkpoint on whole tiles; with ``out``, also written there as JSON.

    ``counter`` counts more per tile (see :func:`evaluate_tiles`) and ``extend(report, scores)`` adds to the
    report before it is written (the study's lab adds its rates this way).

    Under torchrun, call it in every process: each predicts its share of the tiles and every
    process returns the whole report; only rank 0 writes.

    Returns the report, which also records the data folder, split, checkpoint, device,
    window and ``world_size``.
    """
    model, state = load_checkpoint(checkpoint)
    recipe = state.get("config") or {}
    config = (config or PredictConfig()).for_checkpoint(recipe.get("crop_size"), recipe.get("threshold"))
    started = time.perf_counter()
    scores = evaluate_tiles(model, data_dir, split, config, device, progress, tiles, counter,
                            select_tiles=tuple(recipe.get("select_tiles") or ()))  # fmt: skip
    report = evaluation_report(scores)
    if extend is not None:
        extend(report, scores)
    dev = resolve_device(device)
    report.update(
        checkpoint=str(checkpoint),
        data_dir=str(data_dir),
        split=split if tiles is None else "tiles",
        device=device_label(dev) if dev.type == "cuda" else "cpu",
        window=config.window,
        overlap=config.overlap,
        threshold=config.threshold,
        world_size=distributed.rank_and_size()[1],
        seconds=time.perf_counter() - started,
    )
    if out is not None and distributed.rank_and_size()[0] == 0:
        write_json(report, out)
    return report
