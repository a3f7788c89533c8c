"""Evaluation on whole validation tiles, overall and per city.

    plinknet evaluate --data data/inria --checkpoint runs/plinknet/best.pt

Each tile is predicted with the sliding-window predictor (the same code as ``plinknet
predict``), so the numbers are those of whole 5000x5000 scenes, not of crops.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from plinknet.data import find_tiles, read_mask
from plinknet.metrics import BinaryConfusion
from plinknet.predict import PredictConfig, predict_scene
from plinknet.train import load_checkpoint, resolve_device


def evaluate_tiles(
    model: torch.nn.Module,
    data_dir: str | Path,
    split: str = "val",
    config: PredictConfig | None = None,
    device: str = "auto",
    progress: bool = True,
) -> BinaryConfusion:
    """Predict every tile of ``split`` and accumulate confusion counts, grouped by city."""
    config = config or PredictConfig()
    confusion = BinaryConfusion(config.threshold)
    tiles = find_tiles(data_dir, split)
    for tile in tqdm(tiles, desc=f"evaluate {split}", unit="tile", disable=not progress):
        prob = predict_scene(model, tile.image_path, config, device=device, progress=False)
        mask = torch.from_numpy(read_mask(tile.mask_path))[None, None]  # (1, 1, H, W)
        logits = torch.logit(torch.from_numpy(prob).clamp(1e-7, 1 - 1e-7))[None, None]
        confusion.update(logits, mask, groups=[tile.city])
    return confusion


def evaluation_report(confusion: BinaryConfusion) -> dict:
    """``{"overall": metrics, "per_city": {city: metrics}}`` as plain floats."""
    return {
        "overall": confusion.compute(),
        "per_city": {city: confusion.compute(city) for city in confusion.groups},
    }


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
) -> dict:
    """The ``plinknet evaluate`` command: metrics of a checkpoint on whole tiles, written to ``metrics.json``.

    Returns the report, which also records the data folder, split, checkpoint and device.
    """
    model, state = load_checkpoint(checkpoint)
    config = config or PredictConfig(window=state["config"].get("crop_size", 512))
    started = time.perf_counter()
    report = evaluation_report(evaluate_tiles(model, data_dir, split, config, device, progress))
    dev = resolve_device(device)
    report.update(
        checkpoint=str(checkpoint),
        data_dir=str(data_dir),
        split=split,
        device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        seconds=time.perf_counter() - started,
        window=config.window,
        overlap=config.overlap,
    )
    out = Path(out) if out is not None else Path(checkpoint).parent / "metrics.json"
    out.write_text(json.dumps(report, indent=2))
    return report
