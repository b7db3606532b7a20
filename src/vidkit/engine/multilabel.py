"""Multi-label training (`task: multilabel`): multi-hot targets, BCE on logits with `class_weights` as positive
weights, label smoothing towards 0.5 (t (1 - s) + s / 2), and timm's mixup/cutmix in its multi-label mode (the
multi-hot rows mixed by the clips' lambda, smoothed there)."""
from __future__ import annotations

import logging

import numpy as np
import torch
from timm.data import Mixup

from vidkit.config import Config
from vidkit.engine import distill
from vidkit.errors import VidkitError

log = logging.getLogger(__name__)


def check_options(cfg: Config) -> None:
    """What multi-label training does not do: one line each."""
    for key, on in (("balanced_sampler", cfg.balanced_sampler),):
        if on:
            raise VidkitError(f"{key}: not available for task: multilabel competitions")


def pos_weights(y: np.ndarray, kind: str) -> torch.Tensor | None:
    """BCE positive weights per class: negatives / positives (`inverse`) or its square root (`sqrt`); a class
    without positives weighs 1."""
    if kind == "none":
        return None
    pos = y.sum(0)
    weights = np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)
    if kind == "sqrt":
        weights = np.sqrt(weights)
    log.info("positive weights: %s", np.round(weights, 3).tolist())
    return torch.tensor(weights, dtype=torch.float32)


def bce_loss(smoothing: float, pos_weight: torch.Tensor | None):
    """loss(logits, multi-hot target, batch): BCE with targets smoothed as t (1 - s) + s / 2."""
    bce = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def loss(logits, target, batch=None):
        target = target.float() * (1 - smoothing) + smoothing / 2
        return bce(logits.float(), target)
    return loss


def setup(cfg: Config, train_y: np.ndarray, num_classes: int, device, signal: dict | None = None):
    """(loss_fn, mixup or None) of a multi-label fold; with pseudo-labels or a teacher (`signal`, see
    engine.distill) the batch's per-video targets, teacher sigmoids and weights make the loss."""
    check_options(cfg)
    if signal is not None:  # positive weights from the videos with a label (teacher-only ones have none)
        labelled = np.isfinite(signal["target"]).all(1)
        weights = pos_weights(signal["target"][labelled], cfg.class_weights)
        weights = weights.to(device) if weights is not None else None
        return (lambda logits, target, batch: distill.multilabel_signal_loss(
            logits, batch, weights, cfg.label_smoothing, cfg.alpha, cfg.temperature)), None
    weights = pos_weights(train_y, cfg.class_weights)
    mixer = None
    if cfg.mixup or cfg.cutmix:  # timm smooths the mixed targets itself
        mixer = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                      label_smoothing=cfg.label_smoothing, num_classes=num_classes, multi_label=True)
    loss = bce_loss(0.0 if mixer else cfg.label_smoothing, weights.to(device) if weights is not None else None)
    return loss, mixer
