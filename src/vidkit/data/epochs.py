"""Which training videos an epoch visits, in which order: a shuffle (or class-balanced draws) that depends only on
(seed, fold, epoch), so a resumed epoch sees the same order."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Shuffles (or, with `weights`, samples with replacement) with a generator seeded by (seed, epoch):
    the same seed, fold and epoch always give the same order, also after a resume. It yields
    `epoch * n + i`, which VideoDataset (with its `seed` set) reads as item i of that epoch."""

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.weights = torch.as_tensor(weights, dtype=torch.double) if weights is not None else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        else:
            order = torch.randperm(self.n, generator=g)
        return iter((order + self.epoch * self.n).tolist())


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Each video drawn with probability 1 / its class's frequency (`balanced_sampler=true`)."""
    counts = np.bincount(labels)
    return 1.0 / counts[labels]
