"""Dice + BCE, the paper's loss (Section 2.3)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class DiceBCELoss(nn.Module):
    """``bce_weight * BCE + dice_weight * (1 - soft Dice)`` on logits.

    BCE is ``binary_cross_entropy_with_logits`` (stable for large logits). Soft Dice is
    computed over the whole batch at once: ``2 sum(p t) / (sum(p) + sum(t))`` with
    ``p = sigmoid(logits)``. When the batch holds no building pixel at all the Dice term is
    0 (as in segmentation-models-pytorch), so background-only batches train on BCE alone
    instead of dividing by zero.

    Args:
        bce_weight: weight of the BCE term.
        dice_weight: weight of the Dice term.
        eps: floor of the Dice denominator.
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, eps: float = 1e-7):
        super().__init__()
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of a batch; ``valid`` (same shape, bool) leaves pixels out, e.g. outside a tile."""
        # logits, target: (B, 1, H, W); target in {0, 1}
        logits = logits.float()
        target = target.to(logits.dtype)
        weight = None if valid is None else valid.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
        bce = bce / (weight.sum().clamp_min(1) if weight is not None else target.numel())
        prob = F.logsigmoid(logits).exp()  # sigmoid without overflow warnings for large |logits|
        if weight is not None:
            prob, target = prob * weight, target * weight
        intersection = (prob * target).sum()
        cardinality = prob.sum() + target.sum()
        dice = 2 * intersection / cardinality.clamp_min(self.eps)
        dice_loss = (1 - dice) * (target.sum() > 0)
        return self.bce_weight * bce + self.dice_weight * dice_loss
