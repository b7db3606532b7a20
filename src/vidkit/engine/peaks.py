"""Spotting post-processing, light (numpy, scipy): per-frame scores -> an event list."""
from __future__ import annotations

import numpy as np


def smooth(scores: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return scores
    from scipy.ndimage import uniform_filter1d
    return uniform_filter1d(scores, width, axis=0, mode="nearest")


def pick_events(scores: np.ndarray, classes: list[str], min_distance: int = 4, width: int = 1,
                thresholds: dict | None = None) -> list[tuple[int, str, float]]:
    """(frame, event, score) of every local maximum of each class's smoothed scores that is at least its
    threshold, detections of one class at least `min_distance` frames apart (the higher kept)."""
    from scipy.signal import find_peaks
    scores = smooth(scores, width)
    events = []
    for k, name in enumerate(classes):
        floor = (thresholds or {}).get(name, 0.0)
        peaks, _ = find_peaks(np.pad(scores[:, k], 1, constant_values=-1.0), height=max(floor, 1e-6),
                              distance=max(1, min_distance))
        events += [(int(p - 1), name, float(scores[p - 1, k])) for p in peaks]
    return sorted(events)
