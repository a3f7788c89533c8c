"""Protocol forensics: which metrics can the paper's two numbers be?

The paper's Table 1 gives two numbers per network, (84.48, 91.50) for P-LinkNet and
(84.26, 91.04) for LinkNet34, called IoU and a second metric, without saying how they are
computed. Published building IoU on Inria runs from about 72 % (Sariturk et al. 2023, the
best of twelve U-Net, LinkNet and FPN variants) to 80.32 % (ICT-Net, Chatterjee and Poullis
2019, first on the benchmark's leaderboard in 2019; both in the book's ``references.bib``),
so the first is often read as the mean of building and background IoU (mIoU); the second could be
precision, F1, recall or pixel accuracy. And each could be computed from counts summed
over whole tiles (the Inria benchmark's convention) or averaged over crops.

Two tools answer this as far as it can be answered:

* :func:`solve_reading` treats the two numbers as whole-count metrics of a test set whose
  building fraction is ``p`` (about 0.15 on Inria) and finds the precision and recall
  that produce them, or shows that none can: a reading whose pair is impossible, or that
  needs an absurd recall, is ruled out. F1 is a function of building IoU on whole counts
  (``F1 = 2 IoU / (1 + IoU)``), so (IoU, F1) is either exact or impossible;
* :func:`score_conventions` scores a model's predictions under each convention, counts over
  whole tiles and means over tiles or crops, to show how far the conventions move the same
  metric.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from plinknet.data.dataset import grid_windows
from plinknet.metrics import metrics_from_counts

PAPER_ROWS = {"P-LinkNet": (84.48, 91.50), "LinkNet34": (84.26, 91.04)}  # Table 1, in %
INRIA_BUILDING_FRACTION = 0.15  # about 15 % of Inria's pixels are building
FIRST_READINGS = ("iou", "miou")  # what the paper calls IoU
SECOND_READINGS = ("precision", "f1", "recall", "accuracy")  # what its second number may be
TOLERANCE = 0.005  # points: the paper rounds to two decimals


def metrics_from_rates(precision: float, recall: float, building_fraction: float) -> dict[str, float] | None:
    """Whole-count metrics (fractions) of a prediction with this precision and recall; None if impossible.

    Counts are fractions of all pixels: ``tp = recall * p``, ``fn = p - tp``,
    ``fp = tp (1 - precision) / precision``, ``tn = 1 - p - fp`` (must not be negative).
    """
    p = building_fraction
    tp = recall * p
    fp = tp * (1 - precision) / precision
    fn, tn = p - tp, 1 - p - fp
    if tn < 0:
        return None
    return {k: v for k, v in metrics_from_counts(tp, fp, fn, tn).items() if k not in ("tp", "fp", "fn", "tn")}


def solve_reading(
    first: str,
    first_value: float,
    second: str,
    second_value: float,
    building_fraction: float = INRIA_BUILDING_FRACTION,
    steps: int = 4000,
) -> list[dict[str, float]]:
    """Precision/recall pairs under which ``first`` = ``first_value`` and ``second`` = ``second_value``.

    Values in % (as the paper prints them). Searches recall on a fine grid; for each recall
    the precision that gives ``first_value`` is found by bisection (both IoU and mIoU grow
    with precision at fixed recall), then the ``second`` metric is compared. Solutions are
    where it crosses ``second_value``, refined by bisection.

    Returns:
        Every solution as the full set of implied metrics in %, plus ``precision`` and
        ``recall`` themselves (an empty list: this reading is impossible at this building
        fraction).
    """
    target1, target2 = first_value / 100, second_value / 100

    def precision_for(recall: float) -> float | None:
        def value(precision):
            m = metrics_from_rates(precision, recall, building_fraction)
            return None if m is None else m[first]

        low, high = 1e-6, 1.0
        v_low, v_high = value(low), value(high)
        if v_high is None or v_high < target1 or (v_low is not None and v_low > target1):
            return None
        for _ in range(60):
            mid = (low + high) / 2
            v = value(mid)
            if v is None or v < target1:
                low = mid
            else:
                high = mid
        return high

    def residual(recall: float) -> float | None:
        precision = precision_for(recall)
        if precision is None:
            return None
        return metrics_from_rates(precision, recall, building_fraction)[second] - target2

    recalls = np.linspace(1e-4, 1.0, steps)
    values = [residual(r) for r in recalls]
    solutions = []
    for (r0, v0), (r1, v1) in itertools.pairwise(zip(recalls, values)):
        if v0 is None or v1 is None or (v0 > 0) == (v1 > 0):
            if v1 is not None and abs(v1) < TOLERANCE / 100 and (v0 is None or abs(v0) >= abs(v1)):
                solutions.append(r1)  # a touch without a crossing (e.g. F1 from IoU)
            continue
        for _ in range(60):
            mid = (r0 + r1) / 2
            vm = residual(mid)
            if vm is None:
                break
            r0, r1, v0 = (mid, r1, vm) if (vm > 0) == (v0 > 0) else (r0, mid, v0)
        solutions.append((r0 + r1) / 2)
    found = []
    for recall in solutions:
        precision = precision_for(recall)
        metrics = metrics_from_rates(precision, recall, building_fraction)
        errors = (abs(100 * metrics[first] - first_value), abs(100 * metrics[second] - second_value))
        if max(errors) <= TOLERANCE:
            found.append({k: round(100 * float(v), 2) for k, v in metrics.items()})
    return _distinct(found)


def _distinct(solutions: list[dict]) -> list[dict]:
    kept: list[dict] = []
    for s in solutions:
        if all(abs(s["recall"] - k["recall"]) > 0.05 for k in kept):
            kept.append(s)
    return kept


def reading_table(building_fraction: float = INRIA_BUILDING_FRACTION) -> list[dict]:
    """Every (first, second) reading of the paper's two rows: feasible or not, and what it implies.

    Returns:
        One dict per (reading, network): ``first``, ``second``, ``network``, ``solutions``
        (from :func:`solve_reading`).
    """
    rows = []
    for first, second in itertools.product(FIRST_READINGS, SECOND_READINGS):
        for network, (a, b) in PAPER_ROWS.items():
            rows.append({"first": first, "second": second, "network": network,
                         "solutions": solve_reading(first, a, second, b, building_fraction)})  # fmt: skip
    return rows


METRICS = ("iou", "miou", "precision", "recall", "f1", "accuracy")
CONVENTIONS = {
    "whole": "counts summed over all tiles (the Inria benchmark)",
    "tile_mean": "mean over tiles of each tile's metrics",
    "crop_mean": "mean over crops, a crop without building anywhere scoring IoU = F1 = 1",
    "crop_mean_skip_empty": "mean over crops, crops without building anywhere left out",
}


def score_conventions(pairs, crop: int = 512) -> dict[str, dict[str, float]]:
    """The same predictions scored under each convention of ``CONVENTIONS``.

    Args:
        pairs: iterable of (prediction, truth) (H, W) {0, 1} masks, one pair per tile.
        crop: side of the crops of the crop means (the paper's 512), on :func:`grid_windows`.

    Returns:
        ``{convention: {metric: fraction}}`` for the ``METRICS``.
    """

    def counts(p, t):
        return int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum()), int((~p & ~t).sum())

    total = np.zeros(4, np.int64)
    per_tile, per_crop = [], []
    for prediction, truth in pairs:
        prediction, truth = prediction.astype(bool), truth.astype(bool)
        tile_counts = counts(prediction, truth)
        total += tile_counts
        per_tile.append(metrics_from_counts(*tile_counts))
        for row, col in grid_windows(*truth.shape, crop):
            window = (slice(row, row + crop), slice(col, col + crop))
            per_crop.append(metrics_from_counts(*counts(prediction[window], truth[window])))
    non_empty = [m for m in per_crop if m["tp"] + m["fp"] + m["fn"] > 0]

    def mean(ms):
        return {n: float(np.mean([m[n] for m in ms])) if ms else math.nan for n in METRICS}

    whole = metrics_from_counts(*total.tolist())
    return {"whole": {n: whole[n] for n in METRICS}, "tile_mean": mean(per_tile), "crop_mean": mean(per_crop),
            "crop_mean_skip_empty": mean(non_empty)}  # fmt: skip


def readings_markdown(building_fraction: float = INRIA_BUILDING_FRACTION) -> str:
    """Markdown: each reading of the paper's two numbers on whole counts, possible or not, and what it implies."""
    names = {"iou": "building IoU", "miou": "mIoU", "precision": "precision", "f1": "F1", "recall": "recall",
             "accuracy": "accuracy"}  # fmt: skip
    rows = ["| 'IoU' is | second is | P-LinkNet (84.48, 91.50) | LinkNet34 (84.26, 91.04) |", "|---|---|---|---|"]
    by_reading: dict[tuple[str, str], list] = {}
    for row in reading_table(building_fraction):
        by_reading.setdefault((row["first"], row["second"]), []).append(row["solutions"])
    for (first, second), cells in by_reading.items():
        shown = []
        for solutions in cells:
            if not solutions:
                shown.append("impossible")
                continue
            s = solutions[0]
            other = [k for k in ("iou", "miou", "precision", "recall", "f1", "accuracy") if k not in (first, second)]
            shown.append(", ".join(f"{names[k]} {s[k]:.2f}" for k in other))
        rows.append(f"| {names[first]} | {names[second]} | {shown[0]} | {shown[1]} |")
    return "\n".join(rows)


DISPLAY = {"iou": "building IoU", "miou": "mIoU", "precision": "precision", "f1": "F1", "recall": "recall",
           "accuracy": "accuracy"}  # fmt: skip


def possible_readings_markdown(fractions=(0.10, 0.15, 0.20)) -> str:
    """Markdown: for each building fraction, the readings possible for both of the paper's rows."""
    rows = ["| building fraction | readings possible for both rows (first number + second) |", "|---:|---|"]
    for p in fractions:
        table = reading_table(p)
        possible = sorted({(r["first"], r["second"]) for r in table if r["solutions"]}
                          - {(r["first"], r["second"]) for r in table if not r["solutions"]})  # fmt: skip
        rows.append(f"| {p:.2f} | {', '.join(f'{DISPLAY[a]} + {DISPLAY[b]}' for a, b in possible)} |")
    return "\n".join(rows)


def conventions_markdown(scores: dict[str, dict[str, float]], note: str) -> str:
    """Markdown: :func:`score_conventions` as a table (in %), with ``note`` (data, device) above it.

    The last column is the F1 that building IoU implies on whole counts, ``2 IoU / (1 + IoU)``:
    equal to F1 there, not under the means.
    """
    rows = [note, "", "| convention | IoU | mIoU | precision | recall | F1 | F1 from IoU |",
            "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, m in scores.items():
        cells = [f"{100 * m[k]:.2f}" for k in ("iou", "miou", "precision", "recall", "f1")]
        rows.append(f"| {CONVENTIONS[name]} | {' | '.join(cells)} | {200 * m['iou'] / (1 + m['iou']):.2f} |")
    return "\n".join(rows)


def conventions_gap_markdown(scores: dict[str, dict[str, dict[str, float]]], first: str = "P-LinkNet",
                             second: str = "LinkNet34") -> str:  # fmt: skip
    """Markdown: the gap ``first`` minus ``second`` (points) under each convention and metric, and what holds.

    Args:
        scores: ``{model: score_conventions(...)}`` for both models, the same tiles and crops.

    Returns:
        A table, then one sentence per metric saying whether the gap's sign is the same under every convention
        (computed, never assumed).
    """
    metrics = ("iou", "miou", "precision", "recall", "f1", "accuracy")
    names = {"iou": "IoU", "miou": "mIoU", "precision": "precision", "recall": "recall", "f1": "F1",
             "accuracy": "accuracy"}  # fmt: skip
    rows = [f"| {first} − {second}, points | " + " | ".join(names[m] for m in metrics) + " |",
            "|---|" + "---:|" * len(metrics)]  # fmt: skip
    gaps = {c: {m: 100 * (scores[first][c][m] - scores[second][c][m]) for m in metrics} for c in scores[first]}
    for convention, row in gaps.items():
        rows.append(f"| {CONVENTIONS[convention]} | " + " | ".join(f"{row[m]:+.2f}" for m in metrics) + " |")
    same = [names[m] for m in metrics if len({math.copysign(1, g[m]) for g in gaps.values()}) == 1]
    changes = [names[m] for m in metrics if names[m] not in same]
    readings = ("the sign differs between building IoU and mIoU under at least one convention"
                if any(math.copysign(1, g["iou"]) != math.copysign(1, g["miou"]) for g in gaps.values())
                else "building IoU and mIoU agree in sign under every convention")  # fmt: skip
    text = (f"Across the four conventions the gap keeps its sign in {', '.join(same) or 'no metric'}"
            + (f" and changes sign in {', '.join(changes)}" if changes else "")
            + f"; {readings}.")  # fmt: skip
    return "\n".join(rows) + "\n\n" + text
