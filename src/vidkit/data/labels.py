"""Labels of a video as the training tables hold them, and as targets.

Single-label: one class name per video. Multi-label (`task: multilabel`): the `label` column holds a video's
labels joined by the competition's `label_sep` (default a space; an empty cell: no label), and the targets
are multi-hot rows (n_videos, n_classes) of float32.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from vidkit.config import Competition
from vidkit.data.media import natural_key


def is_multilabel(comp: Competition | dict | None) -> bool:
    """A competition, or a run's run.json (which records `task` and `label_sep`), of task: multilabel."""
    task = comp.get("task") if isinstance(comp, dict) else getattr(comp, "task", None)
    return task == "multilabel"


def _sep(comp: Competition | dict) -> str:
    return comp.get("label_sep", " ") if isinstance(comp, dict) else comp.label_sep


def split_labels(cell, sep: str = " ") -> list[str]:
    """'a b' -> ['a', 'b'] (sep ' ' splits on any whitespace); NaN or '' -> []."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    parts = str(cell).split() if sep == " " else str(cell).split(sep)
    return [p.strip() for p in parts if p.strip()]


def label_set(labels: pd.Series, sep: str) -> list[str]:
    """Every class named in a multi-label column, in natural order."""
    return sorted({c for cell in labels for c in split_labels(cell, sep)}, key=natural_key)


def multi_hot(labels, classes: list[str], sep: str = " ") -> np.ndarray:
    """(n_videos, n_classes) float32; labels not in `classes` are ignored (the index refused them earlier)."""
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for row, cell in enumerate(labels):
        for c in split_labels(cell, sep):
            if c in index:
                y[row, index[c]] = 1
    return y


def targets(labels, classes: list[str], comp: Competition | dict | None = None,
            missing: int | None = None) -> np.ndarray:
    """The metric's / loss's y: class indices (single-label; `missing` for a label not in classes, else NaN),
    or multi-hot rows (multi-label). `comp`: the competition, or a run's run.json."""
    if is_multilabel(comp):
        return multi_hot(labels, classes, _sep(comp))
    y = pd.Series(labels).map({c: i for i, c in enumerate(classes)})
    return y.fillna(missing).astype(int).to_numpy() if missing is not None else y.to_numpy()


def prior(labels, classes: list[str], comp: Competition | dict | None = None) -> np.ndarray:
    """The training prior: class frequencies (single-label, sum 1) or each class's positive rate (multi-label)."""
    if is_multilabel(comp):
        return multi_hot(labels, classes, _sep(comp)).mean(0).astype(np.float64)
    counts = pd.Series(labels).value_counts().astype(float).reindex(classes).fillna(0).to_numpy()
    return counts / counts.sum() if counts.sum() > 0 else np.full(len(classes), 1 / len(classes))
