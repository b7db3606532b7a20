"""What the optimiser sees: parameter groups (no decay on norms/biases, layer-wise lr decay, head lr), the lr
schedule, progressive unfreezing, class weights and a per-epoch seeded sampler."""
from __future__ import annotations

import logging
import math
import re

import numpy as np
import torch

from vidkit.choices import check_choice
from vidkit.errors import VidkitError

log = logging.getLogger(__name__)
_LAYER = re.compile(r"(?:^|\.)(?:([a-z]+)_)?(?:layers?|blocks)\.(\d+)\.")  # optional stage: spatial_layers.3.


def _is_head(model, name: str) -> bool:
    head = getattr(model, "classifier_name", None)
    return bool(head) and (name == head or name.startswith(head + "."))


def layer_ids(model) -> dict[str, int]:
    """Depth of each parameter for layer-wise lr decay: embeddings 0, block i -> i + 1, the rest (final norm,
    head) num_blocks + 1. Works for transformers' `encoder.layer.N`, timm's `blocks.N`, and stacked stages
    (VideoPrism's `spatial_layers.N` then `temporal_layers.N`: a stage's blocks and its own embeddings
    (`temporal_embeddings`) come after the previous stage's, in the order the model lists them)."""
    blocks, stages = {}, {}
    for name, _ in model.named_parameters():
        if m := _LAYER.search(name):
            stage, i = m.group(1) or "", int(m.group(2))
            blocks[name] = stage, i
            stages[stage] = max(stages.get(stage, 0), i + 1)
    if not blocks:
        raise VidkitError("layer_decay: the model has no numbered transformer blocks (use it with videomae, "
                          "timesformer, vivit, vjepa2, videoprism or a timm ViT backbone)")
    start, total = {}, 0
    for stage, n in stages.items():
        start[stage], total = total, total + n

    def depth(name: str) -> int:
        if name in blocks:
            return start[blocks[name][0]] + blocks[name][1] + 1
        if "embed" in name:
            return next((start[s] for s in start if s and f"{s}_embed" in name), 0)
        return total + 1
    return {name: depth(name) for name, _ in model.named_parameters()}


def param_groups(model, weight_decay: float, lr: float, layer_decay: float = 1.0, head_lr_scale: float = 1.0):
    """AdamW groups; every parameter is listed (frozen ones too, so unfreezing later needs no new optimiser)."""
    depth = layer_ids(model) if layer_decay != 1.0 else {}
    top = max(depth.values()) if depth else 0
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        scale = layer_decay ** (top - depth[name]) if depth else 1.0
        if _is_head(model, name):
            scale *= head_lr_scale
        wd = 0.0 if p.ndim <= 1 else weight_decay
        group = groups.setdefault((scale, wd), {"params": [], "weight_decay": wd, "lr": lr * scale})
        group["params"].append(p)
    return list(groups.values())


def _warmup_then(hf_name: str):
    """A transformers schedule after a linear warmup of `warmup` optimiser steps."""
    def make(optimizer, warmup: int, total: int, factor: float, patience: int, mode: str):
        from transformers import get_scheduler
        return get_scheduler(hf_name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    return make


def _step(optimizer, warmup: int, total: int, factor: float, patience: int, mode: str):
    """The lr times `factor` after each third of training, after the warmup."""
    def lr_lambda(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return factor ** min(2, math.floor(3 * (step - warmup) / max(1, total - warmup)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def _plateau(optimizer, warmup: int, total: int, factor: float, patience: int, mode: str):
    """`ReduceLROnPlateau`: times `factor` after `patience` epochs without improvement of the validation metric
    (`mode` max or min); stepped once per epoch with the metric, no warmup."""
    from transformers import get_scheduler
    return get_scheduler("reduce_lr_on_plateau", optimizer,
                         scheduler_specific_kwargs={"mode": mode, "factor": factor, "patience": patience})


SCHEDULERS = {  # the config's `scheduler` (its choice list: vidkit.choices)
    "cosine": _warmup_then("cosine"),
    "linear": _warmup_then("linear"),
    "step": _step,
    "plateau": _plateau,
    "constant": _warmup_then("constant_with_warmup"),
}


def make_scheduler(name: str, optimizer, warmup: int, total: int, factor: float = 0.1, patience: int = 1,
                   mode: str = "max"):
    """The lr schedule `name` of `SCHEDULERS` (transformers' `get_scheduler` where it has it)."""
    return SCHEDULERS[check_choice("scheduler", name, SCHEDULERS)](optimizer, warmup, total, factor, patience, mode)


def is_plateau(scheduler) -> bool:
    """ReduceLROnPlateau steps once per epoch on the metric, not per optimiser step."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def set_trainable(model, backbone: bool, only: list[str] | None = None) -> None:
    """The classifier always trains; the backbone trains when `backbone`, restricted to the modules named in
    `only` (e.g. ["layer3", "layer4"]) when given."""
    for name, p in model.named_parameters():
        if _is_head(model, name):
            p.requires_grad = True
        else:
            p.requires_grad = backbone and (only is None or any(f".{m}." in f".{name}" for m in only))


CLASS_WEIGHTS = {  # the config's `class_weights`: inverse class frequency -> loss weight (None: unweighted)
    "none": None,
    "inverse": lambda inverse: inverse,
    "sqrt": np.sqrt,
}


def class_weights(labels: np.ndarray, num_classes: int, kind: str) -> torch.Tensor | None:
    """Inverse-frequency (or its square root) class weights, mean 1 over the classes present."""
    scale = CLASS_WEIGHTS[check_choice("class_weights", kind, CLASS_WEIGHTS)]
    if scale is None:
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    weights = scale(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 0.0))
    weights /= weights[counts > 0].mean()
    log.info("class weights: %s", np.round(weights, 3).tolist())
    return torch.tensor(weights, dtype=torch.float32)
