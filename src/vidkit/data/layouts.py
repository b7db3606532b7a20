"""Where a competition's videos are: one walker over every data layout (after pytorchvideo's LabeledVideoPaths).

A layout is a function (comp, report) yielding (video_id, label, CSV group, media path) per video; `LAYOUTS`
lists them per split, and the first one the competition selects walks that split. `walk` turns what it
yields into `Entry`s (group from group_regex, else the CSV, else the video itself; duplicate ids checked)
and reports every problem through `report(kind, path, video_id, detail)`: the index (`strict`) raises on the
first that would make it wrong, `vidkit check` lists them all as findings.
"""
from __future__ import annotations

import glob
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from vidkit.config import Competition
from vidkit.data.media import VIDEO_EXTS, is_video, natural_key
from vidkit.errors import VidkitError
from vidkit.files import read_csv, read_json

log = logging.getLogger(__name__)
Report = Callable[[str, "Path | str", "str | None", str], None]  # (kind, path, video_id, detail)

# kind: what an index does when the walker reports it (`vidkit check` lists every one as a finding)
PROBLEMS = {
    "missing_train": "raise",   # a train_csv id without media
    "duplicate_id": "raise",    # two training videos with one id
    "group_regex": "raise",     # a video id the group_regex does not match: its folds' group would be a guess
    "unlisted_test": "warn",    # test media the sample submission does not list: never predicted
    "missing_test": "warn",     # a sample id without media keeps a row without a path (submit: the prior)
    "non_image": "ignore",      # a file beside the videos that is neither a frame folder nor a video file
    "empty": "ignore",          # a class folder without videos
    "unknown_original": "warn", # train_json: an `original` not in the set (its fakes still share one group)
    "missing_crop": "warn",     # crops_dir: a training video `crop` did not write (undecodable): left out
}


@dataclass
class Entry:
    video_id: str
    path: Path | None           # a frame folder or a video file; None: a test id without media
    split: str                  # train | test
    label: str | None = None
    group: str | None = None

    @property
    def kind(self) -> str:
        return "missing" if self.path is None else "frames" if self.path.is_dir() else "video"


def strict(kind: str, path: Path | str, video_id: str | None, detail: str) -> None:
    """The index's `report`: a one-line VidkitError naming the file for a problem that would make the index
    wrong, a warning for one it lives with; the rest are `vidkit check`'s to list."""
    if PROBLEMS[kind] == "raise":
        raise VidkitError(f"{path}: {detail}")
    if PROBLEMS[kind] == "warn":
        log.warning("%s: %s", path, detail)


def media_id(path: Path) -> str | None:
    """The video id of a frame folder (its name) or a video file (its stem); None for anything else."""
    if path.is_dir():
        return path.name
    return path.stem if path.is_file() and is_video(path) else None


def media_in(folder: Path, report: Report) -> Iterator[tuple[str, Path]]:
    """(video_id, path) of each frame folder and video file directly in `folder`, in natural order; anything
    else there (hidden files included) is reported."""
    for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        video_id = None if p.name.startswith(".") else media_id(p)
        if video_id is None:
            report("non_image", p, None, "not a frame folder or video file")
        else:
            yield video_id, p


def find_media(folder: Path, video_id: str) -> Path | None:
    """Media for an id: `folder/id/` frames or `folder/id.<ext>`; the id may carry its own extension."""
    candidates = [folder / video_id]
    stem = Path(video_id).stem if Path(video_id).suffix.lower() in VIDEO_EXTS else video_id
    candidates += [folder / stem] + [folder / f"{stem}{ext}" for ext in sorted(VIDEO_EXTS)]
    for c in candidates:
        if c.is_dir() or (c.is_file() and is_video(c)):
            return c
    return None


def _folder(comp: Competition, key: str) -> Path:
    folder = comp.resolve(getattr(comp, key))
    if folder is None or not folder.is_dir():
        raise VidkitError(f"{folder}: {key} not found")
    return folder


def read_train_csv(comp: Competition) -> tuple[Path, pd.DataFrame]:
    """The competition's train_csv, its columns renamed from the yaml's mapping (train_id_column, ...) to
    video_id, label, group and path; checked."""
    csv = comp.resolve(comp.train_csv)
    df = read_csv(csv, dtype=str, what="train_csv").fillna("")
    mapping = {"video_id": comp.train_id_column, "label": comp.train_label_column,
               "group": comp.train_group_column, "path": comp.train_path_column}
    need = {"video_id": comp.train_path_column is None, "label": not _class_columns(comp, df), "path": True}
    for col, key in (("video_id", "train_id_column"), ("label", "train_label_column"), ("path", "train_path_column")):
        source = mapping[col]
        if source is not None and source not in df.columns and need[col]:
            raise VidkitError(f"{csv}: missing column {source!r} ({key}; have: {', '.join(df.columns)})")
    if comp.task == "multilabel" and mapping["label"] not in df.columns:
        df[mapping["label"]] = [comp.label_sep.join(c for c in comp.classes if str(row[c]).strip() in ("1", "1.0"))
                                for row in df.to_dict("records")]
    renamed = {source: col for col, source in mapping.items() if source is not None and source in df.columns}
    df = df[list(renamed)].rename(columns=renamed)
    if "video_id" not in df.columns:  # ids from the media paths: their file names without the extension
        df["video_id"] = [Path(p).stem for p in df["path"]]
    empty = (df["video_id"] == "").to_numpy()
    if empty.any():
        raise VidkitError(f"{csv}: row {int(empty.argmax()) + 2} has no video id (cut short?)")
    return csv, df


def _class_columns(comp: Competition, df: pd.DataFrame) -> bool:
    """Multi-label labels as one 0/1 column per class (named as the yaml's `classes`), no label column."""
    return (comp.task == "multilabel" and comp.train_label_column not in df.columns and bool(comp.classes)
            and all(str(c) in df.columns for c in comp.classes))


def test_ids(comp: Competition) -> list[str]:
    """Test ids in the sample submission's order (else the test folder's)."""
    if not comp.sample_submission:
        return [vid for vid, _ in media_in(_folder(comp, "test_dir"), lambda *problem: None)]
    sample = comp.resolve(comp.sample_submission)
    return read_csv(sample, (comp.id_column,), dtype=str, what="sample_submission")[comp.id_column].tolist()


# ---------------------------------------------------------------- the layouts

def class_folders(comp: Competition, report: Report):
    """train_dir/{class}/{video_id}/*.jpg|png or train_dir/{class}/{video_id}.<ext>."""
    train_dir = _folder(comp, "train_dir")
    for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        videos = list(media_in(class_dir, report))
        if not videos:
            report("empty", class_dir, None, "class folder without videos")
        for video_id, path in videos:
            yield video_id, class_dir.name, None, path


def csv_rows(comp: Competition, report: Report):
    """train_csv rows (columns mapped by the yaml: train_id_column, train_label_column, train_group_column,
    train_path_column); media at train_dir/{path} when a path column is mapped, else train_dir/{video_id}/ or
    train_dir/{video_id}.<ext>. Multi-label cells are checked against `classes` here, naming the file."""
    csv, df = read_train_csv(comp)
    train_dir = _folder(comp, "train_dir")
    for rec in df.to_dict("records"):
        if "path" in rec:
            path = _inside(train_dir, rec["path"], csv)
            path = path if path.is_dir() or (path.is_file() and is_video(path)) else None
        else:
            path = find_media(train_dir, rec["video_id"])
        label = _label_cell(comp, rec["label"], csv, rec["video_id"])
        if path is None:
            report("missing_train", csv, rec["video_id"],
                   f"no media for video_id {rec['video_id']!r} under {train_dir}")
        else:
            yield rec["video_id"], label, rec.get("group") or None, path


def _inside(folder: Path, relative: str, csv: Path) -> Path:
    """train_dir/relative, refused when it leaves train_dir (`..`, an absolute path)."""
    path = (folder / str(relative).lstrip("/")).resolve()  # "/train/x.avi" (UCF101 on Kaggle): under folder
    if not path.is_relative_to(folder.resolve()):
        raise VidkitError(f"{csv}: path {relative!r} points outside {folder}")
    return path


def _label_cell(comp: Competition, cell: str, csv: Path, video_id: str) -> str:
    """Single-label: the cell. Multi-label: its labels (split on label_sep), each in `classes` when the yaml
    lists them, joined again by label_sep; an empty set only with `allow_empty_labels: true`."""
    if comp.task != "multilabel":
        return cell
    from vidkit.data.labels import split_labels
    labels = split_labels(cell, comp.label_sep)
    if not labels and not comp.allow_empty_labels:
        raise VidkitError(f"{csv}: video {video_id!r} has no label (set allow_empty_labels: true if the "
                          "competition has videos with none)")
    known = set(map(str, comp.classes)) if comp.classes else None
    unknown = [c for c in labels if known is not None and c not in known]
    if unknown:
        raise VidkitError(f"{csv}: video {video_id!r}: label {unknown[0]!r} is not in the competition's classes")
    return comp.label_sep.join(labels)


def sample_ids(comp: Competition, report: Report):
    """The sample submission's ids in its order, media at test_dir/{id}/ or test_dir/{id}.<ext> (or None)."""
    test_dir = _folder(comp, "test_dir")
    ids, known = test_ids(comp), set()
    for vid in ids:
        path = find_media(test_dir, vid)
        if path is None:
            report("missing_test", test_dir / vid, vid, "a sample id without media (no frame folder or video "
                   "file of that name); it gets the training prior")
        else:
            known.add(path.name)
        yield vid, None, None, path
    known |= set(ids)
    extra = [vid for vid, p in media_in(test_dir, report) if vid not in known and p.name not in known]
    if extra:
        report("unlisted_test", test_dir, None, f"{len(extra)} test videos are not in the sample submission and "
               f"will not be written: {', '.join(extra[:5])}")


def test_folder(comp: Competition, report: Report):
    """test_dir/{video_id}/ or test_dir/{video_id}.<ext>, when there is no sample submission."""
    for vid, path in media_in(_folder(comp, "test_dir"), report):
        yield vid, None, None, path


def feature_train(comp: Competition, report: Report):
    """features_dir: train_csv rows, each video's "media" its feature file (features_dir/{video_id}.npy ...)."""
    from vidkit.data.features import find_feature_file
    if not comp.train_csv:
        raise VidkitError(f"{comp.path}: features_dir needs a train_csv (video_id,label[,group])")
    csv, df = read_train_csv(comp)
    folder = _folder(comp, "features_dir")
    for rec in df.to_dict("records"):
        path = find_feature_file(folder, rec["video_id"])
        if path is None:
            report("missing_train", csv, rec["video_id"], f"no feature file for video_id {rec['video_id']!r} in {folder}")
        else:
            yield rec["video_id"], rec["label"], rec.get("group"), path


def feature_test(comp: Competition, report: Report):
    """features_dir: the sample submission's ids, each with its feature file or None (submit: the prior)."""
    from vidkit.data.features import find_feature_file
    folder = _folder(comp, "features_dir")
    for vid in test_ids(comp):
        path = find_feature_file(folder, vid)
        if path is None:
            report("missing_test", folder / vid, vid, "a sample id without a feature file; it gets the training prior")
        yield vid, None, None, path


# ---------------------------------------------------------------- DFDC's metadata.json

def json_files(comp: Competition) -> list[Path]:
    """The files `train_json` names: a path or a glob (`dfdc_train_part_*/metadata.json`)."""
    pattern = str(comp.resolve(comp.train_json))
    files = sorted(Path(p) for p in glob.glob(pattern))
    if not files:
        raise VidkitError(f"{pattern}: train_json matches no file")
    return files


def read_metadata(path: Path) -> dict:
    """One DFDC metadata.json: {"abc.mp4": {"label": "FAKE", "split": "train", "original": "xyz.mp4"}, ...}."""
    data = read_json(path, "metadata.json")
    for name, rec in data.items():
        if not isinstance(rec, dict) or not rec.get("label"):
            raise VidkitError(f"{path}: {name!r} has no label")
    return data


def original_groups(links: dict[str, str | None]) -> dict[str, str]:
    """name -> group: the connected components of the name-original links (a fake, its original and every fake of
    that original, transitively), each named by its first name in sorted order."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for name, original in links.items():
        a, b = root(name), root(original or name)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return {name: root(name) for name in links}


def json_entries(comp: Competition, report: Report):
    """train_json files' entries; media next to each file (`abc.mp4`, or an `abc/` frame folder); the group of
    a video is its component of `original` links (`original_groups`)."""
    records: dict[str, tuple[Path, dict]] = {}
    for f in json_files(comp):
        for name, rec in read_metadata(f).items():
            records[name] = (f, rec)
    links = {name: rec.get("original") or None for name, (_, rec) in records.items()}
    for name, original in links.items():
        if original and original not in records:
            report("unknown_original", records[name][0], name, f"{name!r}: original {original!r} is not in the set")
    groups = original_groups(links)
    for name, (f, rec) in records.items():
        path = find_media(f.parent, name)
        if path is None:
            report("missing_train", f, name, f"no media for {name!r} in {f.parent}")
        else:
            yield name, rec["label"], groups[name], path


def crop_name(video_id: str) -> str:
    """The folder name of a video's region crops: its id without a video extension."""
    return Path(video_id).stem if Path(video_id).suffix.lower() in VIDEO_EXTS else video_id


def crop_folder(comp: Competition, split: str, video_id: str) -> Path:
    """Where `crop` writes a video's region crops: crops_dir/{split}/{crop_name}/."""
    return comp.resolve(comp.crops_dir) / split / crop_name(video_id)


# split: [(the competition field that selects the layout, None for the fallback, layout)]; add a layout here
LAYOUTS = {
    "train": [("features_dir", feature_train), ("train_json", json_entries), ("train_csv", csv_rows),
              (None, class_folders)],
    "test": [("features_dir", feature_test), ("sample_submission", sample_ids), (None, test_folder)],
}


def walk(comp: Competition, split: str, report: Report = strict) -> list[Entry]:
    """Every video of a split (train | test), as the competition's layout lays them out."""
    layout = next(fn for key, fn in LAYOUTS[split] if key is None or getattr(comp, key))
    entries = []
    for vid, label, csv_group, path in layout(comp, report):
        vid = str(vid)
        if split == "train" and comp.crops_dir:  # training reads the region crops of `crop`
            path = crop_folder(comp, split, vid)
            if not path.is_dir():
                report("missing_crop", path, vid, f"no crop of {vid!r}: run `vidkit crop comp={comp.path}` first")
                continue
        group = group_of(comp, vid, csv_group, path, report) if split == "train" else None
        entries.append(Entry(vid, path, split, None if label is None else str(label), group))
    if split == "train":
        counts = Counter(e.video_id for e in entries)
        for e in (e for e in entries if counts[e.video_id] > 1):
            report("duplicate_id", e.path, e.video_id, f"duplicate video id {e.video_id!r}: {counts[e.video_id]} videos")
    return entries


def group_of(comp: Competition, video_id: str, csv_group, path: Path, report: Report) -> str:
    """The group a video's fold keeps together: group_regex's first group (or whole match) in the id, else
    the CSV's group, else the video itself. An id the regex does not match is reported (then the fallback)."""
    if comp.group_regex:
        m = re.search(comp.group_regex, video_id)
        if m:
            return m.group(1) if m.groups() else m.group(0)
        report("group_regex", path, video_id, f"group_regex {comp.group_regex!r} does not match video id {video_id!r}")
    return csv_group if isinstance(csv_group, str) and csv_group else video_id
