"""Which frames make a clip. One factory, three samplers:

- `uniform`: TSN segments, the centre frame of each of `num_frames` equal segments (deterministic).
- `random`: a random start, then `num_frames` frames at a fixed stride (training).
- `multi`: clip `clip_index` of `num_clips` evenly spaced fixed-stride clips (TTA).

Videos shorter than a clip first lower the stride, then pad: `repeat` the last frame or `loop`.
"""
from __future__ import annotations

import numpy as np


def _pad(indices: np.ndarray, n_frames: int, pad_mode: str) -> np.ndarray:
    if pad_mode == "loop":
        return indices % n_frames
    return np.minimum(indices, n_frames - 1)


def _fit_stride(n_frames: int, num_frames: int, stride: int) -> int:
    if num_frames <= 1:
        return 1
    return max(1, min(stride, (n_frames - 1) // (num_frames - 1)))


def uniform_indices(n_frames: int, num_frames: int, pad_mode: str = "repeat") -> np.ndarray:
    if n_frames >= num_frames:
        edges = np.linspace(0, n_frames, num_frames + 1)
        return ((edges[:-1] + edges[1:]) / 2).astype(int)
    return _pad(np.arange(num_frames), n_frames, pad_mode)


def strided_indices(n_frames: int, num_frames: int, stride: int, start: int, pad_mode: str) -> np.ndarray:
    return _pad(start + np.arange(num_frames) * stride, n_frames, pad_mode)


def random_indices(n_frames: int, num_frames: int, stride: int, rng: np.random.Generator,
                   pad_mode: str = "repeat") -> np.ndarray:
    stride = _fit_stride(n_frames, num_frames, stride)
    span = (num_frames - 1) * stride + 1
    start = int(rng.integers(0, n_frames - span + 1)) if n_frames >= span else 0
    return strided_indices(n_frames, num_frames, stride, start, pad_mode)


def multi_indices(n_frames: int, num_frames: int, stride: int, clip_index: int, num_clips: int,
                  pad_mode: str = "repeat") -> np.ndarray:
    stride = _fit_stride(n_frames, num_frames, stride)
    span = (num_frames - 1) * stride + 1
    if num_clips == 1 or n_frames <= span:
        start = max(0, (n_frames - span) // 2)
    else:
        start = int(round(clip_index * (n_frames - span) / (num_clips - 1)))
    return strided_indices(n_frames, num_frames, stride, start, pad_mode)


def make_sampler(kind: str, num_frames: int, stride: int = 1, num_clips: int = 1, pad_mode: str = "repeat"):
    """A function (n_frames, clip_index, rng) -> frame indices."""
    if kind == "uniform":
        return lambda n, clip_index=0, rng=None: uniform_indices(n, num_frames, pad_mode)
    if kind == "random":
        return lambda n, clip_index=0, rng=None: random_indices(
            n, num_frames, stride, rng if rng is not None else np.random.default_rng(), pad_mode)
    if kind == "multi":
        return lambda n, clip_index=0, rng=None: multi_indices(n, num_frames, stride, clip_index, num_clips, pad_mode)
    raise ValueError(f"unknown sampler {kind!r} (uniform | random | multi)")
