"""Grouped, stratified folds (sklearn StratifiedGroupKFold). Folds are data: made once, then reused."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from vidkit.errors import VidkitError
from vidkit.files import read_csv, write_csv

log = logging.getLogger(__name__)


def make_folds(table: pd.DataFrame, n_folds: int, seed: int = 42, label_sep: str | None = None) -> pd.DataFrame:
    """`label_sep`: a multi-label table (labels joined by it): iterative stratification with groups."""
    n_groups = table["group"].nunique()
    if n_groups < n_folds:
        raise VidkitError(f"n_folds={n_folds} but only {n_groups} groups: lower n_folds")
    if label_sep is not None:
        from vidkit.data.multilabel_folds import multilabel_group_folds
        return multilabel_group_folds(table, n_folds, seed, label_sep)
    from sklearn.model_selection import StratifiedGroupKFold  # 1-2 s to import; only when folds are drawn
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = table[["video_id", "group", "label"]].copy()
    folds["fold"] = -1
    for k, (_, val) in enumerate(splitter.split(table, table["label"], table["group"])):
        folds.loc[folds.index[val], "fold"] = k
    return folds


def load_or_make_folds(path: Path, table: pd.DataFrame, n_folds: int, seed: int = 42,
                       label_sep: str | None = None) -> pd.DataFrame:
    """Read folds from `path` if it exists (and still matches the data), else draw and write them."""
    if path.exists():
        folds = read_csv(path, ("video_id", "group", "label", "fold"), ("fold",),
                         {"video_id": str, "group": str, "label": str}, "folds file")
        if set(folds["video_id"]) != set(table["video_id"]):
            raise VidkitError(f"{path}: folds do not match the training videos "
                              f"({len(folds)} in folds, {len(table)} indexed); delete it to draw new folds")
        if folds["fold"].nunique() != n_folds:
            raise VidkitError(f"{path}: has {folds['fold'].nunique()} folds but n_folds={n_folds}")
        return folds.set_index("video_id").loc[table["video_id"]].reset_index()
    folds = make_folds(table, n_folds, seed, label_sep)
    write_csv(folds, path, index=False)
    log.info("wrote %s (%d folds)", path, n_folds)
    return folds


def folds_path(comp_path: str) -> Path:
    """The competition's canonical folds, next to its yaml, shared by every model."""
    p = Path(comp_path)
    return p.with_name(f"{p.stem}.folds.csv")
