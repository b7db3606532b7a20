"""CV plots (matplotlib, Agg): confusion matrix, per-class accuracy, training curves, classes per fold."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from vidkit.files import read_jsonl, save_figure  # noqa: E402


def plot_confusion(y, pred, classes: list[str], path: Path) -> None:
    cm = confusion_matrix(y, pred, labels=np.arange(len(classes)), normalize="true")
    n = len(classes)
    size = min(4 + 0.25 * n, 40)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(np.nan_to_num(cm), cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(n)
    font = float(np.clip(0.6 * size * 0.8 * 72 / n, 4, 10))  # ~60% of the points each row gets: 100+ names legible
    ax.set_xticks(ticks, classes, rotation=90, fontsize=font)
    ax.set_yticks(ticks, classes, fontsize=font)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=font,
                        color="white" if cm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_per_class(y, pred, classes: list[str], path: Path) -> None:
    acc = np.array([(pred[y == i] == i).mean() if (y == i).any() else np.nan for i in range(len(classes))])
    worst_first(acc, classes, "out-of-fold accuracy", "per-class accuracy (worst first)", path)


def worst_first(values: np.ndarray, names: list[str], xlabel: str, title: str, path: Path) -> None:
    """A horizontal bar per class, the lowest value first (NaN: a class with nothing to score, at the top)."""
    order = np.argsort(np.nan_to_num(values, nan=-1))
    fig, ax = plt.subplots(figsize=(8, max(3, 0.22 * len(names))))
    ax.barh(np.arange(len(names)), values[order], color="tab:blue")
    ax.set_yticks(np.arange(len(names)), [names[i] for i in order], fontsize=8)  # 0.22 in (16 pt) per row
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_curves(metric_files: list[Path], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for f in metric_files:
        records = read_jsonl(f)
        if not records:
            continue
        epochs = [r["epoch"] for r in records]
        name = f"fold {records[0]['fold']}"
        axes[0].plot(epochs, [r["train_loss"] for r in records], label=f"{name} train")
        if "val_loss" in records[0]:
            axes[0].plot(epochs, [r["val_loss"] for r in records], "--", label=f"{name} val")
            axes[1].plot(epochs, [r["val_score"] for r in records], label=name)
            axes[1].set_ylabel(records[0]["metric"])
        axes[2].plot(epochs, [r["lr"] for r in records], label=name)
    for ax, title in zip(axes, ("loss", "validation metric", "learning rate")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_fold_distribution(folds, classes: list[str], path: Path) -> None:
    """Stacked bars: how many videos of each class every fold validates on (folds.csv: label, fold)."""
    counts = folds.groupby(["fold", "label"]).size().unstack(fill_value=0).reindex(columns=classes, fill_value=0)
    fig, ax = plt.subplots(figsize=(min(6 + 0.6 * len(counts), 20), 4.5))
    bottom = np.zeros(len(counts))
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for i, c in enumerate(classes):
        ax.bar([f"fold {k}" for k in counts.index], counts[c].to_numpy(), bottom=bottom, color=cmap(i % cmap.N),
               label=c if len(classes) <= 20 else None)
        bottom += counts[c].to_numpy()
    ax.set_ylabel("videos")
    ax.set_title(f"class distribution per fold ({len(classes)} classes, {len(folds)} videos)")
    if len(classes) <= 20:
        ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_per_class_ap(per_class: dict[str, dict], path: Path) -> None:
    """Multi-label: each class's out-of-fold average precision (worst first)."""
    names = list(per_class)
    ap = np.array([per_class[c]["ap"] for c in names], dtype=float)
    worst_first(ap, names, "out-of-fold average precision", "per-class AP (worst first)", path)


def plot_label_distribution(y: np.ndarray, folds: np.ndarray, classes: list[str], path: Path) -> None:
    """Multi-label: videos carrying each class per fold (grouped bars)."""
    ks = np.unique(folds)
    counts = np.stack([y[folds == k].sum(0) for k in ks])  # (folds, classes)
    fig, ax = plt.subplots(figsize=(min(6 + 0.4 * len(classes), 20), 4.5))
    width = 0.8 / len(ks)
    for i, k in enumerate(ks):
        ax.bar(np.arange(len(classes)) + i * width, counts[i], width, label=f"fold {k}")
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=90, fontsize=7)
    ax.set_ylabel("videos with the label")
    ax.set_title(f"labels per fold ({len(classes)} classes, {len(y)} videos)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
