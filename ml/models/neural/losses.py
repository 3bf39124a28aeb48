"""Training losses on standardised targets: masked Huber, pairwise hinge ranking, validity BCE."""
from __future__ import annotations

import torch
from torch import Tensor


def masked_huber(pred: Tensor, target: Tensor, mask: Tensor, delta: float = 1.0) -> Tensor:
    """Huber over the cells where ``mask`` is true (non-failed rows with finite targets)."""
    if not bool(mask.any()):
        return pred.sum() * 0.0
    return torch.nn.functional.huber_loss(pred[mask], target[mask], delta=delta)


def pairwise_hinge(pred: Tensor, target: Tensor, mask: Tensor, margin: float = 0.1) -> Tensor:
    """GATES-style ``mean(max(0, margin - sign(y_i - y_j) (s_i - s_j)))`` over in-batch pairs.

    Pairs are formed per metric among rows where ``mask`` holds and targets differ, so the model
    is rewarded for ordering genomes correctly, which is what the search consumes.
    """
    losses = []
    for j in range(pred.shape[1]):
        rows = mask[:, j]
        if int(rows.sum()) < 2:
            continue
        s, y = pred[rows, j], target[rows, j]
        sign = torch.sign(y[:, None] - y[None, :])
        keep = sign != 0
        if bool(keep.any()):
            diff = s[:, None] - s[None, :]
            losses.append(torch.relu(margin - sign[keep] * diff[keep]).mean())
    if not losses:
        return pred.sum() * 0.0
    return torch.stack(losses).mean()


def validity_bce(logit: Tensor, failed: Tensor) -> Tensor:
    known = torch.isfinite(failed)
    if not bool(known.any()):
        return logit.sum() * 0.0
    return torch.nn.functional.binary_cross_entropy_with_logits(logit[known], failed[known])
