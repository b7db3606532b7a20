"""Submission formats: how class probabilities fill the sample submission's columns, one function per value
of the competition yaml's `submission:`, keyed by name in `FORMATS`. Light (numpy, pandas) so that loading a
competition checks its format without loading a model."""
from __future__ import annotations

import logging
import os
import re

import numpy as np
import pandas as pd

from vidkit.choices import check_choice
from vidkit.errors import VidkitError

log = logging.getLogger(__name__)


def _label(comp, sample: pd.DataFrame, probs: np.ndarray, classes: list[str], spec: dict) -> dict:
    """The most probable class (binary: P(positive) against ensemble.yaml's tuned `threshold`)."""
    labels = predict_labels(probs, {**spec, "positive_class": spec.get("positive_class") or comp.positive_class},
                            classes)
    return {comp.target_column: [classes[i] for i in labels]}


def _probability(comp, sample: pd.DataFrame, probs: np.ndarray, classes: list[str], spec: dict) -> dict:
    """Binary: P(positive_class)."""
    check_choice("positive_class", None if comp.positive_class is None else str(comp.positive_class), classes)
    return {comp.target_column: probs[:, classes.index(str(comp.positive_class))]}


def _probabilities(comp, sample: pd.DataFrame, probs: np.ndarray, classes: list[str], spec: dict) -> dict:
    """One column per class, named as the sample names them."""
    columns = class_columns([c for c in sample.columns if c != comp.id_column], classes)
    return {column: probs[:, classes.index(c)] for column, c in columns.items()}


def _topk(comp, sample: pd.DataFrame, probs: np.ndarray, classes: list[str], spec: dict) -> dict:
    """The k most probable labels (or `label conf` pairs), as the sample's first row shows."""
    k, pairs = topk_style(sample[comp.target_column], len(classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return {comp.target_column: [" ".join(f"{classes[i]} {p[i]:.4f}" if pairs else classes[i] for i in row)
                                 for row, p in zip(order, probs)]}


def predict_labels(probs: np.ndarray, spec: dict, classes: list[str]) -> np.ndarray:
    """Class indices: the argmax, or for binary with a tuned `threshold`, P(positive) >= threshold."""
    probs = np.asarray(probs)
    if spec.get("threshold") is None or probs.shape[1] != 2:
        return probs.argmax(1)
    return thresholded(probs, spec["threshold"], positive_index(classes, spec.get("positive_class")))


def thresholded(probs: np.ndarray, threshold: float, pos: int) -> np.ndarray:
    return np.where(probs[:, pos] >= threshold, pos, 1 - pos)


def positive_index(classes: list[str], positive_class=None) -> int:
    return classes.index(str(positive_class)) if positive_class is not None and str(positive_class) in classes else 1
def _labels(comp, sample: pd.DataFrame, probs: np.ndarray, classes: list[str], spec: dict) -> dict:
    """Multi-label: the labels whose probability reaches their class's threshold (ensemble.yaml's `thresholds`,
    fitted on OOF; else 0.5), joined by a space; a video with none gets its most probable label."""
    given = spec.get("thresholds") or {}
    t = np.array([float(given.get(c, 0.5)) for c in classes])
    rows = []
    for p in probs:
        picked = np.flatnonzero(p >= t)
        picked = picked[np.argsort(-p[picked], kind="stable")] if len(picked) else [int(p.argmax())]
        rows.append(" ".join(classes[i] for i in picked))
    return {comp.target_column: rows}


def _pairs(comp, sample: pd.DataFrame, probs: np.ndarray, classes: list[str], spec: dict) -> dict:
    """YouTube-8M's LabelConfidencePairs: the top k `label confidence` pairs, k as the sample's first row shows
    (a placeholder row: the competition's gap_k)."""
    first = str(sample[comp.target_column].iloc[0]).split() if len(sample) else []
    k = len(first) // 2 if len(first) >= 4 else getattr(comp, "gap_k", 20)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :min(k, len(classes))]
    return {comp.target_column: [" ".join(f"{classes[i]} {p[i]:.6f}" for i in row) for row, p in zip(order, probs)]}


FORMATS = {  # `submission:` name: (comp, sample, probs, classes, ensemble spec) -> {column: values}; add one here
    "label": _label,
    "probability": _probability,
    "probabilities": _probabilities,
    "topk": _topk,
    "labels": _labels,      # multi-label
    "pairs": _pairs,        # multi-label (YouTube-8M)
}


def format_submission(comp, sample: pd.DataFrame, probs: np.ndarray, classes: list[str],
                      spec: dict | None = None) -> pd.DataFrame:
    """`probs` rows follow the sample's ids; `spec` (ensemble.yaml) may hold a binary `threshold`."""
    check_choice("submission", comp.submission, FORMATS)
    sub = pd.DataFrame({comp.id_column: sample[comp.id_column].to_numpy()})
    for column, values in FORMATS[comp.submission](comp, sample, probs, classes, spec or {}).items():
        sub[column] = values
    missing = [c for c in sample.columns if c not in sub.columns]
    if missing:
        raise VidkitError(f"sample submission column {missing[0]!r} is neither the id nor {comp.target_column!r}; "
                          f"check id_column/target_column/submission in the competition yaml")
    return sub[list(sample.columns)]


def _norm(name) -> str:
    return re.sub(r"[\s_\-]+", "_", str(name).strip().lower())


def class_columns(columns: list[str], classes: list[str]) -> dict[str, str]:
    """Sample column -> class: exact names, else case/separator-insensitive, else after a shared prefix/suffix
    (`prob_cat`, `cat_prob`)."""
    by_norm = {_norm(c): c for c in classes}
    prefix = os.path.commonprefix([_norm(c) for c in columns]) if len(columns) > 1 else ""
    suffix = os.path.commonprefix([_norm(c)[::-1] for c in columns])[::-1] if len(columns) > 1 else ""
    mapping = {}
    for col in columns:
        n = _norm(col)
        trimmed = n[len(prefix):len(n) - len(suffix)] if len(n) > len(prefix) + len(suffix) else n
        match = col if col in classes else by_norm.get(n) or by_norm.get(trimmed)
        if match is None:
            raise VidkitError(f"sample submission column {col!r} does not name a class "
                              f"(classes: {', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''})")
        mapping[col] = match
    if len(set(mapping.values())) < len(mapping):
        raise VidkitError("sample submission: two columns name the same class")
    left = [c for c in classes if c not in mapping.values()]
    if left:
        log.warning("%d classes have no column in the sample submission: %s", len(left), ", ".join(left[:5]))
    return mapping


def is_confidence(token: str) -> bool:
    """A `topk` confidence as written: a decimal in [0, 1]."""
    try:
        return any(ch in token for ch in ".eE") and 0 <= float(token) <= 1
    except ValueError:
        return False


def topk_style(column: pd.Series, n_classes: int) -> tuple[int, bool]:
    """(k, pairs) as the sample's first row shows: "a b c" -> (3, False), "a 0.9 b 0.1" -> (2, True).
    A first row with one label (a placeholder) means k = 5."""
    first = str(column.iloc[0]) if len(column) and pd.notna(column.iloc[0]) else ""
    tokens = first.split()
    pairs = len(tokens) >= 2 and len(tokens) % 2 == 0 and all(is_confidence(t) for t in tokens[1::2])
    k = len(tokens) // 2 if pairs else len(tokens)
    return min(n_classes, k if k > 1 else 5), pairs
