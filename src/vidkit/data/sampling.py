"""Which frames make a clip. Samplers are named strategies in `SAMPLERS`, next to their code:

- `random`: a random start, then `num_frames` frames at a fixed stride (training).
- `uniform`: TSN segments, the centre frame of each of `num_frames` equal segments (deterministic).
- `multi`: clip `clip_index` of `num_clips` evenly spaced fixed-stride clips (TTA).

TTA's `tta_offsets` start each clip at a given frame (`offset_indices`). Videos shorter than a clip first lower
the stride (`fit_stride`), then pad (`PAD_MODES`): `repeat` the last frame or `loop`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple

import numpy as np

PAD_MODES = {  # how a clip runs past the end of a short video
    "repeat": lambda indices, n_frames: np.minimum(indices, n_frames - 1),  # the last frame again
    "loop": lambda indices, n_frames: indices % n_frames,                   # back to the start
}


def _pad(indices: np.ndarray, n_frames: int, pad_mode: str) -> np.ndarray:
    return PAD_MODES[pad_mode](indices, n_frames)


def fit_stride(n_frames: int, num_frames: int, stride: int) -> int:
    """The stride, lowered until `num_frames` frames fit in the video (never below 1)."""
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
    stride = fit_stride(n_frames, num_frames, stride)
    span = (num_frames - 1) * stride + 1
    start = int(rng.integers(0, n_frames - span + 1)) if n_frames >= span else 0
    return strided_indices(n_frames, num_frames, stride, start, pad_mode)


def multi_indices(n_frames: int, num_frames: int, stride: int, clip_index: int, num_clips: int,
                  pad_mode: str = "repeat") -> np.ndarray:
    stride = fit_stride(n_frames, num_frames, stride)
    span = (num_frames - 1) * stride + 1
    if num_clips == 1 or n_frames <= span:
        start = max(0, (n_frames - span) // 2)
    else:
        start = int(round(clip_index * (n_frames - span) / (num_clips - 1)))
    return strided_indices(n_frames, num_frames, stride, start, pad_mode)


def offset_indices(n_frames: int, num_frames: int, stride: int, offset: int, pad_mode: str) -> np.ndarray:
    """A fixed-stride clip starting at frame `offset`, moved back (then strided tighter) to fit short videos."""
    stride = fit_stride(n_frames, num_frames, stride)
    start = min(offset, max(0, n_frames - ((num_frames - 1) * stride + 1)))
    return strided_indices(n_frames, num_frames, stride, start, pad_mode)


@dataclass(frozen=True)
class Clip:
    """What a sampler is asked for: `num_frames` frames `stride` apart, as clip `clip_index` of `num_clips`
    (`multi`), a short video padded by `pad_mode`."""
    num_frames: int
    stride: int = 1
    num_clips: int = 1
    pad_mode: str = "repeat"


def _random(n_frames: int, clip: Clip, clip_index: int, rng) -> np.ndarray:
    rng = rng if rng is not None else np.random.default_rng()
    return random_indices(n_frames, clip.num_frames, clip.stride, rng, clip.pad_mode)


def _uniform(n_frames: int, clip: Clip, clip_index: int, rng) -> np.ndarray:
    return uniform_indices(n_frames, clip.num_frames, clip.pad_mode)


def _multi(n_frames: int, clip: Clip, clip_index: int, rng) -> np.ndarray:
    return multi_indices(n_frames, clip.num_frames, clip.stride, clip_index, clip.num_clips, clip.pad_mode)


class Sampler(NamedTuple):
    indices: Callable  # (n_frames, Clip, clip_index, rng) -> frame indices
    train: bool        # may be a config's `train_sampler`


SAMPLERS = {  # name: strategy; add a sampler here (the config's train_sampler choices follow)
    "random": Sampler(_random, train=True),
    "uniform": Sampler(_uniform, train=True),
    "multi": Sampler(_multi, train=False),  # TTA's evenly spaced clips
}


def _sample(indices: Callable, clip: Clip, n_frames: int, clip_index: int = 0, rng=None) -> np.ndarray:
    return indices(n_frames, clip, clip_index, rng)


def make_sampler(kind: str, num_frames: int, stride: int = 1, num_clips: int = 1, pad_mode: str = "repeat"):
    """A function (n_frames, clip_index=0, rng=None) -> frame indices."""
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r} ({' | '.join(SAMPLERS)})")
    return partial(_sample, SAMPLERS[kind].indices, Clip(num_frames, stride, num_clips, pad_mode))
