"""Index a competition's media into a table: video_id, label, group, path, kind, n_frames, height, width, files
(one row per entry of `vidkit.data.layouts.walk`, which raises on the first problem)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from vidkit.config import Competition
from vidkit.data.features import is_feature_file
from vidkit.data.layouts import Entry, media_id, walk
from vidkit.data.media import list_frames, natural_key, probe
from vidkit.errors import VidkitError

COLUMNS = ["video_id", "label", "group", "path", "kind", "n_frames", "height", "width", "files"]


def entry_row(entry: Entry) -> dict:
    """An index row: the entry and its media's frame count, size and (frame folders) file names."""
    kind = entry.kind
    n, h, w = probe(entry.path) if entry.path and not is_feature_file(entry.path) else \
        (1, 1, 1) if entry.path else (0, 0, 0)  # a features_dir file: one "frame", read by the heads
    return {"video_id": entry.video_id, "label": entry.label, "group": entry.group,
            "path": str(entry.path) if entry.path else None, "kind": kind, "n_frames": n, "height": h, "width": w,
            "files": list_frames(entry.path) if kind == "frames" else []}


def media_row(path: str | Path) -> dict:
    """The index row of one video file or frame folder a user names (`predict`)."""
    path = Path(path)
    video_id = media_id(path)
    if not path.exists():
        raise VidkitError(f"{path}: file not found")
    if video_id is None:
        raise VidkitError(f"{path}: not a video file (.mp4 .avi .mkv .webm .mov) or a folder of frames")
    row = entry_row(Entry(video_id, path, "test"))
    if row["n_frames"] < 1:
        raise VidkitError(f"{path}: no readable frames")
    return row


def index_train(comp: Competition) -> pd.DataFrame:
    entries = walk(comp, "train")
    if not entries:
        raise VidkitError(f"{comp.resolve(comp.train_dir)}: no training videos found (expected "
                          "{class}/{video_id}/*.jpg or {class}/{video_id}.mp4, or a train_csv)")
    table = pd.DataFrame([entry_row(e) for e in entries], columns=COLUMNS)
    table["label"] = table["label"].astype(str)
    return table


def index_test(comp: Competition) -> pd.DataFrame:
    """One row per submission id; `path` is None where no media was found (the caller decides)."""
    return pd.DataFrame([entry_row(e) for e in walk(comp, "test")], columns=COLUMNS)


def classes_of(comp: Competition, table: pd.DataFrame) -> list[str]:
    if comp.task == "multilabel":  # labels were checked against `classes` by the layout
        from vidkit.data.labels import label_set
        return [str(c) for c in comp.classes] if comp.classes else label_set(table["label"], comp.label_sep)
    if comp.classes:
        classes = [str(c) for c in comp.classes]
        unknown = sorted(set(table["label"]) - set(classes))
        if unknown:
            raise VidkitError(f"labels not in the competition's classes: {', '.join(unknown[:5])}")
        return classes
    return sorted(table["label"].unique(), key=natural_key)
