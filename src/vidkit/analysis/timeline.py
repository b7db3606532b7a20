"""Spotting timeline: a video's per-frame scores per class against its ground-truth and detected events."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vidkit.files import save_figure


def plot_timeline(scores: np.ndarray, classes: list[str], truth: list[tuple[int, str]],
                  found: list[tuple[int, str, float]], path: Path, title: str = "") -> None:
    """One row per class: the score curve, ground-truth events (green lines), detections (red dots)."""
    fig, axes = plt.subplots(len(classes), 1, figsize=(14, 1.6 * len(classes) + 0.6), sharex=True, squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[:, 0], classes)):
        ax.plot(np.arange(len(scores)), scores[:, k], lw=0.8, color="tab:blue")
        for frame, event in truth:
            if event == name:
                ax.axvline(frame, color="tab:green", lw=1, alpha=0.7)
        hits = [(f, s) for f, e, s in found if e == name]
        if hits:
            ax.plot(*zip(*hits), "o", color="tab:red", ms=3)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(name, rotation=0, ha="right")
    axes[-1, 0].set_xlabel("frame (green: ground truth, red: detections)")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    plt.close(fig)
