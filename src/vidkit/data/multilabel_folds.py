"""Grouped folds stratified on every label of a multi-label table: iterative stratification (Sechidis,
Tsoumakas & Vlahavas, 2011) over groups instead of videos.

The rule: each group carries the label counts of its videos. Each fold wants an even share of every label
(count / n_folds) and of the videos. Repeatedly take the label with the fewest positives still unassigned; give
each unassigned group carrying it (largest first, ties in seeded random order) to the fold that wants that label
most (ties: the fold that wants the most videos, then a seeded random fold), and lower that fold's wants by the
group's counts. Groups without a label go, largest first, to the fold that wants the most videos. Then a repair:
while moving one group to another fold, or swapping two groups of different folds, lowers the squared distance
of the folds' label and video counts from even, make the best such change.

Guaranteed: a group never straddles folds, and the folds are a local optimum of that squared distance (no single
move and no swap lowers it), unless the search was skipped (groups^2 x labels above 30 million) or stopped after
20 x groups changes; either is logged. This is not a bound per label: a group carries all its videos' labels at
once, so one label's count in a fold can be off even by up to that label's count in the largest group carrying it.
Measured, not guaranteed (tests/test_multilabel.py): with one video per group every label's count per fold ends
within one of even; with groups, within the largest group's count of that label.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from vidkit.data.labels import label_set, multi_hot

log = logging.getLogger(__name__)


def multilabel_group_folds(table: pd.DataFrame, n_folds: int, seed: int, label_sep: str) -> pd.DataFrame:
    classes = label_set(table["label"], label_sep)
    y = pd.DataFrame(multi_hot(table["label"], classes, label_sep), index=table.index)
    counts = y.groupby(table["group"].to_numpy()).sum()          # (groups, labels)
    sizes = table.groupby("group").size().reindex(counts.index).to_numpy()
    fold_of = assign_groups(counts.to_numpy(), sizes, n_folds, np.random.default_rng(seed))
    fold_of = repair(np.column_stack([counts.to_numpy(), sizes]).astype(np.float64), fold_of, n_folds)
    folds = table[["video_id", "group", "label"]].copy()
    folds["fold"] = table["group"].map(dict(zip(counts.index, fold_of))).to_numpy()
    return folds


def assign_groups(counts: np.ndarray, sizes: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """The fold of each group (rows of `counts`: label counts; `sizes`: videos), by the rule above."""
    want_labels = np.tile(counts.sum(0) / n_folds, (n_folds, 1))
    want_size = np.full(n_folds, sizes.sum() / n_folds)
    fold_of = np.full(len(counts), -1)
    order = rng.permutation(len(counts))

    def give(g: int, label: int | None) -> None:
        pool = want_labels[:, label] if label is not None else want_size
        best = np.flatnonzero(pool >= pool.max() - 1e-9)
        best = best[want_size[best] >= want_size[best].max() - 1e-9]
        k = rng.choice(best)
        fold_of[g] = k
        want_labels[k] -= counts[g]
        want_size[k] -= sizes[g]

    while True:
        left = fold_of < 0
        remaining = counts[left].sum(0)
        if not (remaining > 0).any():
            break
        label = int(np.argmin(np.where(remaining > 0, remaining, np.inf)))
        carrying = [g for g in order if left[g] and counts[g, label] > 0]
        for g in sorted(carrying, key=lambda g: -counts[g, label]):
            give(g, label)
    for g in sorted((g for g in order if fold_of[g] < 0), key=lambda g: -sizes[g]):
        give(g, None)
    return fold_of


def repair(counts: np.ndarray, fold_of: np.ndarray, n_folds: int, max_cells: int = 30_000_000) -> np.ndarray:
    """Best single move or pairwise swap of groups while it lowers sum((fold counts - even)^2); skipped when
    groups^2 x columns is too large to search (then the greedy assignment stands)."""
    g = len(counts)
    if g * g * counts.shape[1] > max_cells:
        log.warning("folds: %d groups x %d labels: too many to repair by moves and swaps; greedy folds kept",
                    g, counts.shape[1] - 1)
        return fold_of
    fold_of, even = fold_of.copy(), counts.sum(0) / n_folds
    sq = (counts ** 2).sum(1)
    for _ in range(20 * g):
        excess = np.stack([counts[fold_of == k].sum(0) for k in range(n_folds)]) - even  # (folds, columns)
        e = excess[fold_of]                                                             # each group's fold
        # move g to fold b: 2 c_g.(E_b - E_a) + 2|c_g|^2
        move = 2 * (counts @ excess.T - (counts * e).sum(1, keepdims=True)) + 2 * sq[:, None]
        move[np.arange(g), fold_of] = np.inf
        # swap g (fold a) with h (fold b): d = c_h - c_g; 2 d.(E_a - E_b) + 2|d|^2
        cross = counts @ counts.T
        d_sq = sq[:, None] + sq[None, :] - 2 * cross
        ce = counts @ e.T                                  # ce[i, j] = c_i . E_fold(j)
        diag = ce.diagonal()
        d_dot = ce.T + ce - diag[:, None] - diag[None, :]    # (c_j - c_i).(E_a - E_b)
        swap = 2 * d_dot + 2 * d_sq
        swap[fold_of[:, None] == fold_of[None, :]] = np.inf
        i_move, i_swap = np.unravel_index(move.argmin(), move.shape), np.unravel_index(swap.argmin(), swap.shape)
        if min(move[i_move], swap[i_swap]) >= -1e-9:
            return fold_of
        if move[i_move] <= swap[i_swap]:
            fold_of[i_move[0]] = i_move[1]
        else:
            a, b = i_swap
            fold_of[a], fold_of[b] = fold_of[b], fold_of[a]
    log.warning("folds: the repair stopped after %d changes, before a local optimum", 20 * g)
    return fold_of
