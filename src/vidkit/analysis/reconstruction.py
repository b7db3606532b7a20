"""Pretraining figures (matplotlib, Agg): reconstruction.png (input, masked input, reconstruction per clip, as in
the VideoMAE paper's figure) and the loss curve of a pretraining run."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vidkit.files import save_figure


def plot_reconstruction(views: dict, path: Path, frames: int = 4) -> None:
    """`views`: input / masked / reconstruction arrays (clips, T, H, W, C) in [0, 1]: one row each per clip,
    `frames` evenly spaced frames per row."""
    n, t = views["input"].shape[:2]
    picks = np.linspace(0, t - 1, min(frames, t)).round().astype(int)
    rows = [(i, name) for i in range(n) for name in ("input", "masked", "reconstruction")]
    fig, axes = plt.subplots(len(rows), len(picks), figsize=(1.6 * len(picks), 1.6 * len(rows)), squeeze=False)
    for r, (i, name) in enumerate(rows):
        for c, f in enumerate(picks):
            ax = axes[r, c]
            ax.imshow(views[name][i, f])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{i}: {name}", fontsize=7)
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=7)
    fig.suptitle(f"masked-autoencoding reconstruction (loss {views.get('loss', float('nan')):.3f})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_pretrain_curves(metrics_jsonl: Path, path: Path) -> None:
    """Reconstruction loss and learning rate per epoch."""
    records = [json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = [r["epoch"] for r in records]
    axes[0].plot(epochs, [r["train_loss"] for r in records], marker="o")
    axes[1].plot(epochs, [r["lr"] for r in records], marker="o")
    for ax, title in zip(axes, ("reconstruction loss (normalised pixels, hidden patches)", "learning rate")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
