"""Index a competition's media into a table: video_id, label, group, path, kind, n_frames, height, width, files."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from vidkit.config import Competition
from vidkit.data.media import VIDEO_EXTS, is_video, list_frames, natural_key, probe
from vidkit.errors import VidkitError

log = logging.getLogger(__name__)
COLUMNS = ["video_id", "label", "group", "path", "kind", "n_frames", "height", "width", "files"]


def _media_row(video_id: str, path: Path) -> dict:
    n, h, w = probe(path)
    kind = "frames" if path.is_dir() else "video"
    files = list_frames(path) if kind == "frames" else []
    return {"video_id": video_id, "path": str(path), "kind": kind, "n_frames": n,
            "height": h, "width": w, "files": files}


def find_media(folder: Path, video_id: str) -> Path | None:
    """Media for an id: `folder/id/` frames or `folder/id.<ext>`; the id may carry its own extension."""
    candidates = [folder / video_id]
    stem = Path(video_id).stem if Path(video_id).suffix.lower() in VIDEO_EXTS else video_id
    candidates += [folder / stem] + [folder / f"{stem}{ext}" for ext in sorted(VIDEO_EXTS)]
    for c in candidates:
        if c.is_dir() or (c.is_file() and is_video(c)):
            return c
    return None


def _entries(folder: Path):
    """(video_id, path) for each frame folder or video file directly under `folder`."""
    for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            yield p.name, p
        elif is_video(p):
            yield p.stem, p


def index_train(comp: Competition) -> pd.DataFrame:
    train_dir = comp.resolve(comp.train_dir)
    if comp.train_csv:
        rows = _index_csv(comp, train_dir)
    else:
        if train_dir is None or not train_dir.is_dir():
            raise VidkitError(f"{train_dir}: train_dir not found")
        rows = []
        for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for video_id, path in _entries(class_dir):
                rows.append({**_media_row(video_id, path), "label": class_dir.name, "group": None})
    if not rows:
        raise VidkitError(f"{train_dir}: no training videos found (expected {{class}}/{{video_id}}/*.jpg "
                          "or {class}/{video_id}.mp4, or a train_csv)")
    table = pd.DataFrame(rows)
    table["label"] = table["label"].astype(str)
    dupes = table["video_id"][table["video_id"].duplicated()].unique()
    if len(dupes):
        raise VidkitError(f"{train_dir}: duplicate video ids across classes: {', '.join(map(str, dupes[:5]))}")
    table["group"] = [_group(comp, vid, g) for vid, g in zip(table["video_id"], table["group"])]
    return table[COLUMNS].reset_index(drop=True)


def read_train_csv(comp: Competition) -> tuple[Path, pd.DataFrame]:
    """The competition's train_csv (video_id, label[, group]), checked."""
    csv = comp.resolve(comp.train_csv)
    if not csv.is_file():
        raise VidkitError(f"{csv}: train_csv not found")
    df = pd.read_csv(csv, dtype=str)
    for col in ("video_id", "label"):
        if col not in df.columns:
            raise VidkitError(f"{csv}: missing column {col!r} (have: {', '.join(df.columns)})")
    return csv, df


def _index_csv(comp: Competition, train_dir: Path) -> list[dict]:
    csv, df = read_train_csv(comp)
    rows = []
    for rec in df.to_dict("records"):
        path = find_media(train_dir, rec["video_id"])
        if path is None:
            raise VidkitError(f"{csv}: no media for video_id {rec['video_id']!r} under {train_dir}")
        rows.append({**_media_row(rec["video_id"], path), "label": rec["label"], "group": rec.get("group")})
    return rows


def _group(comp: Competition, video_id: str, csv_group) -> str:
    if comp.group_regex:
        m = re.search(comp.group_regex, video_id)
        if m is None:
            raise VidkitError(f"group_regex {comp.group_regex!r} does not match video id {video_id!r}")
        return m.group(1) if m.groups() else m.group(0)
    if isinstance(csv_group, str) and csv_group:
        return csv_group
    return video_id


def classes_of(comp: Competition, table: pd.DataFrame) -> list[str]:
    if comp.classes:
        classes = [str(c) for c in comp.classes]
        unknown = sorted(set(table["label"]) - set(classes))
        if unknown:
            raise VidkitError(f"labels not in the competition's classes: {', '.join(unknown[:5])}")
        return classes
    return sorted(table["label"].unique(), key=natural_key)


def test_ids(comp: Competition) -> list[str]:
    """Test ids in the sample submission's order (else the test folder's)."""
    if comp.sample_submission:
        sample = comp.resolve(comp.sample_submission)
        if not sample.is_file():
            raise VidkitError(f"{sample}: sample_submission not found")
        df = pd.read_csv(sample, dtype=str)
        if comp.id_column not in df.columns:
            raise VidkitError(f"{sample}: no id column {comp.id_column!r} (have: {', '.join(df.columns)})")
        return df[comp.id_column].tolist()
    return [vid for vid, _ in _entries(comp.resolve(comp.test_dir))]


def index_test(comp: Competition) -> pd.DataFrame:
    """One row per submission id; `path` is None where no media was found (the caller decides)."""
    test_dir = comp.resolve(comp.test_dir)
    if test_dir is None or not test_dir.is_dir():
        raise VidkitError(f"{test_dir}: test_dir not found")
    rows = []
    for vid in test_ids(comp):
        path = find_media(test_dir, vid)
        row = _media_row(vid, path) if path else {"video_id": vid, "path": None, "kind": "missing",
                                                  "n_frames": 0, "height": 0, "width": 0, "files": []}
        rows.append({**row, "label": None, "group": None})
    known = {r["video_id"] for r in rows} | {Path(r["path"]).name for r in rows if r["path"]}
    extra = [vid for vid, p in _entries(test_dir) if vid not in known and p.name not in known]
    if extra:
        log.warning("%d test videos are not in the sample submission and will not be written: %s",
                    len(extra), ", ".join(extra[:5]))
    return pd.DataFrame(rows)[COLUMNS]
