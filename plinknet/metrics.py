"""Pixel confusion counts and the metrics derived from them.

The Inria benchmark reports IoU of the building class accumulated over all pixels of a
set ("micro" or dataset-level IoU); that is ``iou`` here. The paper's 84.x "IoU" is above
published building IoU on Inria (about 72 to 80.32 %, sources in the book's
``references.bib``), so the book argues it is more likely the mean of building and
background IoU, ``miou`` here. Results should always show both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

METRIC_NAMES = ("iou", "miou", "precision", "recall", "f1", "accuracy")


class BinaryConfusion:
    """Accumulates int64 TP/FP/FN/TN over batches, overall and optionally per group.

    Args:
        threshold: a pixel is "building" when ``sigmoid(logit) > threshold`` (0.5 in the paper).

    Example::

        cm = BinaryConfusion()
        cm.update(logits, masks, groups=["austin", "vienna"])  # one group per image
        cm.compute()          # {"iou": ..., "miou": ..., ...} over everything seen
        cm.compute("vienna")  # the same for one group
    """

    def __init__(self, threshold: float = 0.5):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self.counts = torch.zeros(4, dtype=torch.int64)  # tp, fp, fn, tn
        self.group_counts: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros(4, dtype=torch.int64))

    @torch.no_grad()
    def update(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        groups: Sequence[str] | None = None,
        valid: torch.Tensor | None = None,
    ) -> None:
        """Add a batch. ``logits``, ``target``: (B, 1, H, W) or (B, H, W); ``groups``: B names.

        ``valid`` (same shape, bool): only these pixels are counted (padding outside a tile
        is not).
        """
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
        if valid is not None and valid.shape != target.shape:
            raise ValueError(f"valid {tuple(valid.shape)} and target {tuple(target.shape)} differ in shape")
        # sigmoid(z) > t  <=>  z > logit(t): no sigmoid needed
        logit_threshold = torch.logit(torch.tensor(self.threshold, dtype=torch.float64)).item()
        pred = (logits.float() > logit_threshold).flatten(1)
        true = target.bool().flatten(1)
        keep = torch.ones_like(true) if valid is None else valid.bool().flatten(1)
        per_image = torch.stack(
            [
                (pred & true & keep).sum(1),
                (pred & ~true & keep).sum(1),
                (~pred & true & keep).sum(1),
                (~pred & ~true & keep).sum(1),
            ],
            dim=1,
        )  # (B, 4) on the logits' device
        self.update_counts(per_image, groups)

    def update_counts(self, per_image: torch.Tensor, groups: Sequence[str] | None = None) -> None:
        """Add (B, 4) per-image (tp, fp, fn, tn) counts, with optional group names."""
        per_image = per_image.to("cpu", torch.int64)
        self.counts += per_image.sum(0)
        if groups is not None:
            if len(groups) != per_image.shape[0]:
                raise ValueError(f"{len(groups)} group names for a batch of {per_image.shape[0]}")
            for name, row in zip(groups, per_image):
                self.group_counts[name] += row

    def merge_counts(self, counts: torch.Tensor, group: str | None = None) -> None:
        """Add raw (tp, fp, fn, tn) counts, e.g. gathered from other processes."""
        target = self.counts if group is None else self.group_counts[group]
        target += counts.to("cpu", torch.int64)

    @property
    def groups(self) -> list[str]:
        return sorted(self.group_counts)

    def compute(self, group: str | None = None) -> dict[str, float]:
        """Metrics (fractions in [0, 1]) over everything seen, or over one group."""
        counts = self.counts if group is None else self.group_counts[group]
        return metrics_from_counts(*counts.tolist())


def metrics_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """IoU, mIoU, precision, recall, F1 and pixel accuracy (fractions) from confusion counts, and the counts."""
    rates = count_metrics(np.array([tp, fp, fn, tn]))
    return {**{name: float(value) for name, value in rates.items()}, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def count_metrics(counts) -> dict[str, np.ndarray]:
    """The metrics of :data:`METRIC_NAMES` from (..., 4) [tp, fp, fn, tn] counts, as (...) arrays.

    The one place the package turns counts into metrics: per validation, per tile, per seed
    and per bootstrap draw. A ratio whose denominator is 0 (e.g. precision with no predicted
    building) is 0, except IoU/F1 with no building in prediction and truth, which are 1 (a
    perfect empty map). Counts are exact in float64 up to 2**53 pixels.
    """
    tp, fp, fn, tn = np.moveaxis(np.asarray(counts, dtype=np.float64), -1, 0)

    def ratio(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
        return np.divide(num, den, out=np.full(np.shape(den), empty), where=den > 0)

    iou = ratio(tp, tp + fp + fn, empty=1.0)
    return {
        "iou": iou,
        "miou": (iou + ratio(tn, tn + fp + fn, empty=1.0)) / 2,
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn, empty=1.0),
        "accuracy": ratio(tp + tn, tp + fp + fn + tn),
    }
