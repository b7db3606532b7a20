"""Spotting's training windows as a Dataset for `vidkit.engine.train.fit`: videos held in memory at the model's
size, `per_video` windows of each per epoch: half put an event somewhere inside the window, a fraction of the rest
a hard negative (a false-positive peak of an earlier run), the others anywhere. Item i of epoch e (the index
`e * len + i` that `EpochSampler` yields) is a function of (seed, e, i) alone, so a resumed epoch draws the same
windows as an uninterrupted one, whatever the processes or workers."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def window_start(n_frames: int, window: int, rng: np.random.Generator, centres: np.ndarray | None = None) -> int:
    """A window start putting one of `centres` (drawn uniformly) anywhere inside the window; without centres, a
    start anywhere in the video; clipped to the video (a short video: 0)."""
    last = max(0, n_frames - window)
    if centres is None or not len(centres):
        return int(rng.integers(0, last + 1))
    start = int(rng.choice(centres)) - int(rng.integers(0, window))
    return int(np.clip(start, 0, last))


def cut(array: np.ndarray, start: int, window: int) -> np.ndarray:
    """Rows start .. start + window - 1 of `array`, the last row repeated past its end."""
    return array[np.minimum(np.arange(start, start + window), len(array) - 1)]


class SpotWindows(Dataset):
    """{"video": uint8 (T, H, W, 3), "label": per-frame targets (T, K) float or (T,) int} windows of `videos`.

    `events[v]`: event frames of video v; `hard[v]`: its hard-negative frames (may be empty);
    `hard_fraction`: the share of the non-event windows cut around them."""

    def __init__(self, videos: list[np.ndarray], targets: list[np.ndarray], events: list[np.ndarray], window: int,
                 per_video: int, hard: list[np.ndarray] | None = None, hard_fraction: float = 0.0):
        self.videos, self.targets, self.events, self.window, self.per_video = videos, targets, events, window, per_video
        self.hard = hard or [np.zeros(0, int)] * len(videos)
        self.hard_fraction, self.seed = hard_fraction, 0

    def __len__(self) -> int:
        return len(self.videos) * self.per_video

    def start(self, index: int) -> tuple[int, int]:
        """(video, window start) of item `index` (epoch * len + i)."""
        epoch, i = divmod(index, len(self))
        v, j = divmod(i, self.per_video)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, i]))
        around = self.per_video // 2 if len(self.events[v]) else 0
        hard = round(self.hard_fraction * (self.per_video - around)) if len(self.hard[v]) else 0
        centres = self.events[v] if j < around else self.hard[v] if j < around + hard else None
        return v, window_start(len(self.videos[v]), self.window, rng, centres)

    def __getitem__(self, index: int) -> dict:
        v, s = self.start(index)
        return {"video": torch.from_numpy(cut(self.videos[v], s, self.window)),
                "label": torch.from_numpy(cut(self.targets[v], s, self.window))}
