"""Spotting: training a dense per-frame model on windows, sliding-window inference over a whole video (streamed,
memory bounded), and the event list from per-frame scores (smoothing, peaks at a minimum distance, thresholds)."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from vidkit.config import Config
from vidkit.data.events import frame_targets, window_starts
from vidkit.engine.optim import make_scheduler
from vidkit.engine.peaks import pick_events, smooth  # noqa: F401  (one import for the spotting engine)

from vidkit.files import save_safetensors

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
        x = to_input(torch.from_numpy(clips).to(device), spec)
        with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
            return torch.stack([to_scores(m(x).float(), target) for m in models]).mean(0).cpu().numpy()
    return predict


# ---------------------------------------------------------------- training

def window_batches(videos: list[np.ndarray], targets: list[np.ndarray], events: list[np.ndarray], window: int,
                   per_video: int, batch_size: int, rng: np.random.Generator):
    """One epoch of (uint8 clips (B, T, H, W, 3), targets (B, T[, K])) windows, around events and at random."""
    items = [(v, s) for v, frames in enumerate(events)
             for s in window_starts(len(videos[v]), frames, window, per_video, rng)]
    order = rng.permutation(len(items))
    for i in range(0, len(order), batch_size):
        chosen = [items[j] for j in order[i:i + batch_size]]
        clips = np.stack([_cut(videos[v], s, window) for v, s in chosen])
        ys = np.stack([_cut(targets[v], s, window) for v, s in chosen])
        yield torch.from_numpy(clips), torch.from_numpy(ys)


def _cut(array: np.ndarray, start: int, window: int) -> np.ndarray:
    idx = np.minimum(np.arange(start, start + window), len(array) - 1)
    return array[idx]


def loss_fn(logits: torch.Tensor, y: torch.Tensor, cfg: Config, n_classes: int) -> torch.Tensor:
    """Heat: BCE with event frames weighted up; class: CE with the background class weighted down."""
    if cfg.spot_target == "heat":
        weight = 1 + (cfg.spot_pos_weight - 1) * y
        return nn.functional.binary_cross_entropy_with_logits(logits, y, weight=weight)
    weight = torch.ones(n_classes + 1, device=logits.device)
    weight[0] = 1 / cfg.spot_pos_weight
    return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), weight=weight)


def train_spotter(cfg: Config, model: nn.Module, videos: list[np.ndarray], events: list, n_classes: int,
                  accelerator, evaluate, fold_dir: Path) -> dict:
    """Train on windows of the training videos (each in memory at the model's size); after each epoch
    `evaluate(model) -> score` (validation mAP); the best epoch's weights are kept. Returns the best record."""
    rng = np.random.default_rng(cfg.seed if isinstance(cfg.seed, int) else 0)
    window = model.input_spec.num_frames
    targets = [frame_targets(len(v), f, k, n_classes, cfg.spot_sigma, cfg.spot_target) for v, (f, k) in
               zip(videos, events)]
    steps = cfg.epochs * -(-len(videos) * cfg.spot_windows // cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(cfg.scheduler, optimizer, int(cfg.warmup_ratio * steps), steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    spec, best, fold_dir = accelerator.unwrap_model(model).input_spec, None, Path(fold_dir)
    fold_dir.mkdir(parents=True, exist_ok=True)
    log_file = (fold_dir / "metrics.jsonl").open("w")
    for epoch in range(cfg.epochs):
        model.train()
        start, losses = time.time(), []
        for clips, y in window_batches(videos, targets, [f for f, _ in events], window, cfg.spot_windows,
                                       cfg.batch_size, rng):
            logits = model(to_input(clips.to(accelerator.device), spec))
            loss = loss_fn(logits.float(), y.to(accelerator.device), cfg, n_classes)
            optimizer.zero_grad()
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        model.eval()
        score = evaluate(accelerator.unwrap_model(model))
        record = {"fold": fold_dir.name.removeprefix("fold"), "metric": "spotting_map", "epoch": epoch,
                  "train_loss": float(np.mean(losses)), "val_score": score,
                  "lr": scheduler.get_last_lr()[0], "seconds": round(time.time() - start, 1)}
        record["best"] = best is None or score > best["val_score"]
        if record["best"]:
            best = record
            state = {k: v.detach().cpu().contiguous() for k, v in accelerator.unwrap_model(model).state_dict().items()}
            save_safetensors(state, fold_dir / "model.safetensors")
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        accelerator.print(f"{fold_dir.name} epoch {epoch}: loss {record['train_loss']:.4f} "
                          f"val spotting_map {score:.4f}")
    log_file.close()
    return best
