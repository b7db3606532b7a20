"""`video_reduce`: a video's view scores (temporal clips x crops x flips, or the frames of a frame-level model)
to one video score, the same for the OOF and the test predictions.

`mean` (of probabilities) and `logits` (softmax of the mean logit) treat every class alike. `max`, `topk_mean`
and `confident` score one number per view: in a binary competition P(positive) (`reduce_positive`, default the
competition's `positive_class`), the other class getting 1 - p; with more classes each class's column, then
renormalised. `confident` is DFDC 1st place's rule (selimsef/dfdc_deepfake_challenge, `confident_strategy`):
when more than `min_fakes` views and more than `fake_share` of them are above `fake`, the mean of those; else
when more than `real_share` of the views are below `real`, the mean of those; else the plain mean.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from vidkit.errors import VidkitError

CONFIDENT = {"fake": 0.8, "real": 0.2, "min_fakes": 11, "fake_share": 0.4, "real_share": 0.9}
TOPK = {"k": 4}


def confident(p: np.ndarray, fake: float = 0.8, real: float = 0.2, min_fakes: int = 11, fake_share: float = 0.4,
              real_share: float = 0.9) -> float:
    """One video's score from its views' scores `p` (selimsef's thresholds by default)."""
    p = np.asarray(p, dtype=float)
    fakes = p > fake
    if fakes.sum() > math.floor(len(p) * fake_share + 1e-9) and fakes.sum() > min_fakes:
        return float(p[fakes].mean())
    reals = p < real
    if reals.sum() > real_share * len(p):
        return float(p[reals].mean())
    return float(p.mean())


def topk_mean(p: np.ndarray, k: int = 4) -> float:
    """The mean of the `k` highest view scores (all of them when there are fewer)."""
    return float(np.sort(np.asarray(p, dtype=float))[::-1][:max(1, int(k))].mean())


def view_max(p: np.ndarray) -> float:
    return float(np.max(p))


SCALAR = {"max": (view_max, {}), "topk_mean": (topk_mean, TOPK), "confident": (confident, CONFIDENT)}


def check_args(reduce: str, args: dict) -> dict:
    """`video_reduce_args` for `reduce`, checked: unknown keys are a one-line error."""
    allowed = SCALAR[reduce][1] if reduce in SCALAR else {}
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise VidkitError(f"video_reduce_args: {', '.join(unknown)} not known to video_reduce={reduce} "
                          f"(known: {', '.join(allowed) or 'none'})")
    return {**allowed, **args}


VIEW_MEANS = {  # (B, V, C) logits -> (B, C) probabilities, given the activation (softmax; multi-label: sigmoid)
    "mean": lambda logits, act: act(logits).mean(1),    # the mean of the views' probabilities
    "logits": lambda logits, act: act(logits.mean(1)),  # the activation of the mean logit
}


def reduce_probs(probs: np.ndarray, reduce: str, positive: int = 1, args: dict | None = None,
                 multilabel: bool = False) -> np.ndarray:
    """(B, V, C) view probabilities -> (B, C) with a scalar rule (`max`, `topk_mean`, `confident`); multi-label:
    each class on its own, not renormalised."""
    fn, defaults = SCALAR[reduce]
    kwargs = {**defaults, **(args or {})}
    b, _, c = probs.shape
    out = np.empty((b, c))
    if multilabel:
        return np.array([[fn(probs[i, :, j], **kwargs) for j in range(c)] for i in range(b)])
    if c == 2:
        for i in range(b):
            p = fn(probs[i, :, positive], **kwargs)
            out[i, positive], out[i, 1 - positive] = p, 1 - p
        return out
    for i in range(b):
        out[i] = [fn(probs[i, :, j], **kwargs) for j in range(c)]
    return out / np.clip(out.sum(1, keepdims=True), 1e-12, None)


def reduce_logits(logits: torch.Tensor, reduce: str = "mean", positive: int = 1,
                  args: dict | None = None, multilabel: bool = False) -> torch.Tensor:
    """(B, V, C) logits -> (B, C) probabilities by `reduce` (see the module doc); sigmoids for a multi-label model."""
    act = torch.sigmoid if multilabel else (lambda t: t.softmax(-1))
    if reduce in VIEW_MEANS:
        return VIEW_MEANS[reduce](logits, act)
    probs = act(logits)
    out = reduce_probs(probs.float().cpu().numpy(), reduce, positive, args, multilabel)
    return torch.as_tensor(out, dtype=probs.dtype, device=probs.device)


def video_reduce_of(cfg, classes: list | None = None) -> dict:
    """TTASpec's reduce fields from a config: `video_reduce` (default `tta_reduce`), the positive column (the
    class `reduce_positive` names, which `cv` sets from the competition's positive_class; else column 1) and the
    rule's parameters, checked."""
    reduce = cfg.video_reduce or cfg.tta_reduce
    args = check_args(reduce, dict(cfg.video_reduce_args or {}))
    positive = 1
    if cfg.reduce_positive is not None and classes is not None:
        if str(cfg.reduce_positive) not in map(str, classes):
            raise VidkitError(f"reduce_positive: {cfg.reduce_positive!r} is not one of {', '.join(map(str, classes))}")
        positive = [str(c) for c in classes].index(str(cfg.reduce_positive))
    return {"reduce": reduce, "positive": positive,
            "args": tuple(sorted(args.items())) if reduce in SCALAR else ()}
