"""Spotting: training a dense per-frame model on windows (through `vidkit.engine.train.fit`), sliding-window
inference over a whole video (streamed, memory bounded), and the event list from per-frame
scores (smoothing, peaks at a minimum distance, thresholds)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn

from vidkit.config import Config
from vidkit.data.epochs import EpochSampler
from vidkit.engine.optim import is_plateau, make_scheduler, param_groups
from vidkit.engine.peaks import pick_events, smooth  # noqa: F401  (one import for the spotting engine)
from vidkit.engine.runtime import bare, build_model, to_device
from vidkit.engine.train import Fold, Progress, loader

log = logging.getLogger(__name__)


def to_input(frames: torch.Tensor, spec) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> normalised float (B, T, 3, H, W)."""
    x = frames.permute(0, 1, 4, 2, 3).float().div_(255)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 1, 3, 1, 1)
    return (x - mean) / std


def to_scores(logits: torch.Tensor, target: str) -> torch.Tensor:
    """Per-frame event scores in [0, 1], (..., K): sigmoid (heat) or softmax without the background (class)."""
    return logits.sigmoid() if target == "heat" else logits.softmax(-1)[..., 1:]


def num_outputs(n_classes: int, target: str) -> int:
    return n_classes if target == "heat" else n_classes + 1


# ---------------------------------------------------------------- sliding windows over a stream of frames

class Slider:
    """Overlapping windows over a video's frames, pushed one at a time (decoded once, in order), into per-frame
    scores averaged where windows overlap; the last window ends at the last frame, and a video shorter than a
    window is one window with its last frame repeated. Holds at most window + stride frames and `batch` windows,
    whatever the video's length. `predict(uint8 (B, T, H, W, 3)) -> (B, T, K)` scores."""

    def __init__(self, predict, window: int, stride: int, n_outputs: int, batch: int = 4, size_hint: int = 0):
        if not 1 <= stride <= window:
            raise ValueError(f"stride {stride} must be in 1 .. window ({window})")
        self.predict, self.window, self.stride, self.batch = predict, window, stride, batch
        self.buf, self.base, self.start, self.n, self.pending, self.slots = [], 0, 0, 0, [], None
        self.stitcher = Stitcher(n_outputs, size_hint)

    def push(self, frame: np.ndarray) -> None:
        self.buf.append(frame)
        self.n += 1
        if self.n - self.start == self.window:
            self._emit(self.start, self.buf[self.start - self.base:], self.window)
            self.start += self.stride
            drop = min(self.start, self.n - self.window + 1) - self.base  # the closing window needs the rest
            if drop > 0:
                del self.buf[:drop]
                self.base += drop

    def _emit(self, start: int, frames: list[np.ndarray], valid: int) -> None:
        """Copy a window into the next slot of one batch array, allocated once and reused (a stream of fresh
        multi-MB arrays fragments the heap: RSS then grows with the video's length)."""
        if self.slots is None:
            self.slots = np.empty((self.batch, self.window, *frames[0].shape), frames[0].dtype)
        np.stack(frames, out=self.slots[len(self.pending)])
        self.pending.append((start, valid))
        if len(self.pending) == self.batch:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            out = self.predict(self.slots[:len(self.pending)])
            for (start, valid), scores in zip(self.pending, out):
                self.stitcher.add(start, np.asarray(scores)[:valid])
            self.pending.clear()

    def finish(self) -> np.ndarray:
        """The (n_frames, K) scores (empty for a video without frames)."""
        if 0 < self.n < self.window:
            self._emit(0, self.buf + [self.buf[-1]] * (self.window - self.n), self.n)
        elif self.n and self.start - self.stride + self.window < self.n:
            self._emit(self.n - self.window, self.buf[self.n - self.window - self.base:], self.window)
        self._flush()
        self.buf = []
        return self.stitcher.result() if self.n else np.zeros((0, self.stitcher.sum.shape[1]), np.float32)


class Stitcher:
    """Per-frame score sums and window counts of one video, grown as frames come."""

    def __init__(self, n_outputs: int, size_hint: int = 0):
        self.sum = np.zeros((max(size_hint, 1), n_outputs), np.float64)
        self.count = np.zeros(max(size_hint, 1), np.int32)
        self.n = 0

    def add(self, start: int, scores: np.ndarray) -> None:
        end = start + len(scores)
        if end > len(self.sum):  # grow (doubling) when the header understated the frame count
            grow = max(end, 2 * len(self.sum)) - len(self.sum)
            self.sum = np.concatenate([self.sum, np.zeros((grow, self.sum.shape[1]))])
            self.count = np.concatenate([self.count, np.zeros(grow, np.int32)])
        self.sum[start:end] += scores
        self.count[start:end] += 1
        self.n = max(self.n, end)

    def result(self) -> np.ndarray:
        return (self.sum[:self.n] / np.maximum(self.count[:self.n], 1)[:, None]).astype(np.float32)


def stream_friendly_malloc() -> None:
    """Whole-video inference makes the same multi-MB tensors thousands of times. Under the heap tuning of
    vidkit.data.media (blocks under 64 MiB served from the heap, for the training loaders), torch's freed CPU
    tensors are not reused and RSS grows with the video's length (2.2 GiB after 36k frames of 64 px, batches of
    8 windows of 64 frames); this sends blocks of 4 MiB and more back to mmap, freed to the OS at once."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


@torch.no_grad()
def sliding_scores(predict, frames: Iterable[np.ndarray], window: int, stride: int, n_outputs: int,
                   batch: int = 4, size_hint: int = 0) -> np.ndarray:
    """(n_frames, K) scores of a streamed video (see `Slider`)."""
    slider = Slider(predict, window, stride, n_outputs, batch, size_hint)
    for frame in frames:
        slider.push(frame)
    return slider.finish()


def model_predictor(models: list[nn.Module], spec, target: str, device):
    """predict() for `sliding_scores`: the mean score of every (fold) model on the same windows."""
    def predict(clips: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(clips).to(device)
        x = x.float() if spec.layout == "features" else to_input(x, spec)  # features: (B, T, D) as stored
        with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
            return torch.stack([to_scores(m(x).float(), target) for m in models]).mean(0).cpu().numpy()
    return predict


# ---------------------------------------------------------------- training

def loss_fn(logits: torch.Tensor, y: torch.Tensor, cfg: Config, n_classes: int) -> torch.Tensor:
    """Heat: BCE with event frames weighted up; class: CE with the background class weighted down."""
    if cfg.spot_target == "heat":
        weight = 1 + (cfg.spot_pos_weight - 1) * y
        return nn.functional.binary_cross_entropy_with_logits(logits, y, weight=weight)
    weight = torch.ones(n_classes + 1, device=logits.device)
    weight[0] = 1 / cfg.spot_pos_weight
    return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), weight=weight)


def frame_loss(scores: np.ndarray, targets: np.ndarray, target: str) -> float:
    """The validation loss of stitched per-frame scores (N, K): BCE against the heat, or the negative
    log-likelihood of each frame's class (background: one minus the event scores)."""
    p = np.clip(scores.astype(np.float64), 1e-6, 1 - 1e-6)
    if target == "heat":
        return float(-(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean())
    full = np.concatenate([np.clip(1 - scores.sum(1, keepdims=True), 1e-6, 1), p], 1)
    return float(-np.log(full[np.arange(len(full)), targets]).mean())


def setup_spot_fold(cfg: Config, dataset, n_classes: int, fold: int, out_dir: Path, accelerator,
                    evaluate=None):
    """The pieces of training's `Fold` for a dense spotting model on `dataset` (`vidkit.data.windows.SpotWindows`):
    per-frame targets, the spotting loss, validation by `evaluate(run)` (sliding windows over the held-out
    videos: their spotting mAP, for early stopping); AMP, accumulation, schedules, EMA, resume as for clips."""
    model = build_model(cfg, num_outputs(n_classes, cfg.spot_target), cfg.pretrained)
    sampler = EpochSampler(len(dataset), int(cfg.seed) * 1000 + fold)
    dataset.seed = sampler.seed
    train_dl = loader(cfg, dataset, train=True, sampler=sampler)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.lr, cfg.layer_decay, cfg.head_lr_scale),
                                  lr=cfg.lr)
    total = cfg.epochs * -(-len(train_dl) // cfg.grad_accum)
    scheduler = make_scheduler(cfg.scheduler, optimizer, int(cfg.warmup_ratio * total), total, cfg.lr_factor,
                               cfg.plateau_patience, "max" if evaluate else "min")
    model = to_device(model, accelerator.device, cfg.channels_last)
    if is_plateau(scheduler):
        model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    else:
        model, optimizer, train_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, scheduler)
    ema = ModelEmaV3(bare(accelerator, model), decay=cfg.ema_decay) if cfg.ema else None
    return Fold(cfg, accelerator, model, optimizer, scheduler, train_dl, None, sampler,
                lambda logits, y, batch=None: loss_fn(logits.float(), y, cfg, n_classes), None, ema, Progress(),
                True, out_dir, evaluate=evaluate)
