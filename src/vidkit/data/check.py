"""`vidkit check`: scan a competition's train and test media and CSVs for the problems real datasets have.

Every image is decoded (a thread pool: cv2 releases the GIL); videos are opened and their first frame read.
Findings are grouped by kind; `report` prints counts and the first few paths of each, and `write_exclude`
lists the training videos that cannot be trained on (`exclude=FILE` in a training config drops them).
"""
from __future__ import annotations

import io
import logging
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from vidkit.config import Competition
from vidkit.data.layouts import Entry, walk
from vidkit.data.media import IMAGE_EXTS, is_video, natural_key, probe, simplejpeg
from vidkit.data.shard import in_shard, parse_shard, pool_map, usable_cores
from vidkit.data.video_backends import resolve, stream
from vidkit.errors import VidkitError
from vidkit.files import read_csv, read_text, write_csv

log = logging.getLogger(__name__)

# kind: what the report calls it. Kinds in INFO are hints and leave the exit code at 0; training videos
# with a kind in EXCLUDE go into the exclude list.
KINDS = {
    "corrupt_image": "unreadable or corrupt images (cannot be decoded, or truncated)",
    "zero_byte": "zero-byte files",
    "non_image": "non-image files in frame folders",
    "empty": "empty folders (no frames)",
    "unreadable_video": "video files that cannot be read",
    "short": "videos with fewer frames than the clip length",
    "frame_size": "frames whose size differs from their video's first frame",
    "video_size": "videos far from the dataset's usual frame size",
    "unknown_label": "labels not in the competition's classes",
    "duplicate_id": "duplicate video ids",
    "missing_train": "train_csv ids without media",
    "missing_test": "test ids missing from the test folder",
    "group_regex": "video ids the group_regex does not match (training refuses them)",
    "unlisted_test": "test folders with media the sample submission does not list (never predicted)",
    "group_leak": "groups spread across classes (a leak hint: check that groups mean what you think)",
    "unknown_original": "train_json fakes whose original is not in the set (its fakes still share a group)",
    "missing_crop": "training videos without a crop in crops_dir (run `vidkit crop`)",
    "events_csv": "spotting: the events CSV is missing or lacks columns (video_id,frame|time,event)",
    "unknown_event": "spotting: events of a class not in the competition's classes",
    "event_video": "spotting: events of a video that is not in train_dir",
    "event_outside": "spotting: events before the first or after the last frame of their video",
    "no_events": "spotting: training videos without events (allowed: background only)",
    "bad_features": "feature files that cannot be read, are not 1-2 dimensional floats, or hold NaN/inf",
    "feature_dims": "feature files whose width (dims) differs from the others'",
    "feature_dtype": "feature files stored in another float dtype than the others (read as float32)",
}
INFO = {"group_leak", "unlisted_test", "unknown_original", "no_events", "feature_dtype"}
EXCLUDE = {"corrupt_image", "zero_byte", "empty", "unreadable_video", "unknown_label", "duplicate_id",
           "missing_train", "bad_features", "feature_dims"}
SIZE_FACTOR = 1.5  # a video's side this many times off the usual size is an outlier


@dataclass
class Finding:
    kind: str
    path: str            # the file or folder (or CSV) where it was found
    video_id: str | None
    split: str           # train | test
    detail: str = ""


def _collect(found: list[Finding], split: str):
    """The walker's `report` for check: every problem becomes a finding."""
    def report(kind: str, path, video_id: str | None, detail: str = "") -> None:
        found.append(Finding(kind, str(path), video_id, split, detail))
    return report


def _check_labels(comp: Competition, videos: list[Entry], where: str, found: list[Finding]) -> None:
    if comp.task == "multilabel":
        return  # the layout checked each cell's labels against `classes`; a group holds several labels anyway
    if comp.classes:
        known = {str(c) for c in comp.classes}
        found += [Finding("unknown_label", where, v.video_id, "train", f"label {v.label!r}")
                  for v in videos if v.label not in known]
    by_group = defaultdict(set)
    for v in videos:
        if v.group != v.video_id:  # a real group (regex or CSV), not the one-video default
            by_group[v.group].add(v.label)
    found += [Finding("group_leak", where, None, "train", f"group {g!r}: classes {', '.join(sorted(labels))}")
              for g, labels in by_group.items() if len(labels) > 1]


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG's header: simplejpeg's parser, else PIL's (Kaggle's image has no simplejpeg)."""
    if simplejpeg is not None:
        return tuple(simplejpeg.decode_jpeg_header(data)[:2])
    with Image.open(io.BytesIO(data)) as img:
        return img.height, img.width


def check_image(path: Path) -> tuple[str | None, str, tuple[int, int] | None]:
    """(problem kind or None, detail, (height, width)) of one image file, fully decoded."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return "corrupt_image", e.strerror or type(e).__name__, None
    if not data:
        return "zero_byte", "", None
    if data[:2] == b"\xff\xd8":  # JPEG: header for the size, a 1/8 decode reads every byte of the scan
        try:
            h, w = jpeg_size(data)
        except (ValueError, OSError) as e:
            return "corrupt_image", str(e), None
        if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_8) is None:
            return "corrupt_image", "cannot be decoded", (h, w)
        if b"\xff\xd9" not in data[-64:]:
            return "corrupt_image", "truncated (no end-of-image marker)", (h, w)
        return None, "", (h, w)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return "corrupt_image", "cannot be decoded", None
    return None, "", img.shape[:2]


def _video_file(path: Path, backend: str = "cv2") -> tuple[int, tuple[int, int] | None]:
    """The header's frame count and the size of the first frame `backend` decodes ((0, None): none decodes)."""
    try:
        first = next(stream(path, backend)[1], None)
    except VidkitError:
        return 0, None
    return (probe(path)[0], first[1].shape[:2]) if first is not None else (0, None)


def scan_media(videos: list[Entry], clip_len: int, found: list[Finding], workers: int | None = None,
               backend: str = "cv2") -> dict:
    """Decode every frame of every video (threads, or `workers` processes; one progress bar); returns {video_id: (height, width)}
    of each readable video's first frame, for the dataset-level size check."""
    images = []
    for v in videos:
        if v.path.is_dir():
            files = sorted(v.path.iterdir(), key=lambda p: natural_key(p.name))
            for p in files:
                if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") and p.is_file():
                    images.append((v, p))
                else:
                    found.append(Finding("non_image", str(p), v.video_id, v.split))
    jobs = [(v, p) for v, p in images] + [(v, v.path) for v in videos if not v.path.is_dir()]
    if workers and workers > 1:  # processes (workers=N)
        results = pool_map(partial(_check_job, backend=backend), [p for _, p in jobs], workers, "check", unit="file")
    else:  # threads: cv2 and libjpeg-turbo release the GIL
        with ThreadPoolExecutor(usable_cores()) as pool:
            results = list(tqdm(pool.map(lambda job: _check_job(job[1], backend), jobs), total=len(jobs),
                                desc="check", unit="file", mininterval=1.0))
    per_video = defaultdict(list)
    for (v, p), res in zip(jobs, results):
        per_video[id(v)].append((p, res))
    sizes = {}
    for v in videos:
        size = _summarise(v, per_video.get(id(v), []), clip_len, found)
        if size is not None:
            sizes[(v.split, v.video_id, str(v.path))] = size
    return sizes


def _check_job(path: Path, backend: str = "cv2"):
    if path.is_dir() or not is_video(path):
        return check_image(path)
    n, size = _video_file(path, backend)
    return ("unreadable_video", "cannot be opened or decoded", None) if size is None else (None, n, size)


def _summarise(v: Entry, results: list, clip_len: int, found: list[Finding]) -> tuple[int, int] | None:
    """Per-video findings from its files' results; the video's size (its first readable frame's)."""
    if not v.path.is_dir():
        (_, (kind, n, size)), = results
        if kind:
            found.append(Finding(kind, str(v.path), v.video_id, v.split, n))
        elif n < clip_len:
            found.append(Finding("short", str(v.path), v.video_id, v.split, f"{n} frames < {clip_len}"))
        return size
    if not results:
        found.append(Finding("empty", str(v.path), v.video_id, v.split, "no image files"))
        return None
    first = None
    for p, (kind, detail, size) in results:
        if kind:
            found.append(Finding(kind, str(p), v.video_id, v.split, detail))
        elif first is None:
            first = size
        elif size != first:
            found.append(Finding("frame_size", str(p), v.video_id, v.split,
                                 f"{size[1]}x{size[0]}, first frame {first[1]}x{first[0]}"))
    readable = sum(kind is None for _, (kind, _, _) in results)
    if readable < clip_len:
        found.append(Finding("short", str(v.path), v.video_id, v.split, f"{readable} readable frames < {clip_len}"))
    return first


def scan_features(videos: list[Entry], found: list[Finding]) -> None:
    """Each feature file read and checked (vidkit.data.features: floats, 1-2 dims, no NaN/inf), then held against
    the others: its width (dims) and its dtype against the most common ones. Each finding names its file."""
    from vidkit.data.features import checked_feature_file
    shapes = []
    for v in videos:
        try:
            array = checked_feature_file(v.path)
        except VidkitError as e:
            found.append(Finding("bad_features", str(v.path), v.video_id, v.split, str(e).split(": ", 1)[-1]))
            continue
        shapes.append((v, array.shape[-1], str(array.dtype)))
    if not shapes:
        return
    (dims, _), = Counter(d for _, d, _ in shapes).most_common(1)
    (dtype, _), = Counter(t for _, _, t in shapes).most_common(1)
    for v, d, t in shapes:
        if d != dims:
            found.append(Finding("feature_dims", str(v.path), v.video_id, v.split, f"{d} dims, the others {dims}"))
        if t != dtype:
            found.append(Finding("feature_dtype", str(v.path), v.video_id, v.split, f"{t}, the others {dtype}"))


def size_outliers(sizes: dict, found: list[Finding]) -> None:
    if not sizes:
        return
    (uh, uw), _ = Counter(sizes.values()).most_common(1)[0]
    for (split, vid, path), (h, w) in sizes.items():
        if max(h / uh, uh / h, w / uw, uw / w) > SIZE_FACTOR:
            found.append(Finding("video_size", path, vid, split, f"{w}x{h}, usual {uw}x{uh}"))


def scan(comp: Competition, clip_len: int = 16, workers: int | None = None,
         shard: str | None = None, backend: str = "cv2") -> tuple[list[Finding], int, int]:
    """All findings for a competition, and the numbers of train and test videos scanned. With `shard=k/n` only
    that shard's media are decoded (see vidkit.data.shard; the CSV and label checks are cheap: every shard
    makes them) and the size outliers are judged within the shard."""
    found: list[Finding] = []
    if comp.task == "spotting":
        return scan_spotting(comp, found, workers, shard, backend)
    train = walk(comp, "train", _collect(found, "train"))
    _check_labels(comp, train, str(comp.resolve(comp.train_csv or comp.train_dir)), found)
    has_test = comp.test_dir or comp.features_dir
    test = [e for e in walk(comp, "test", _collect(found, "test")) if e.path] if has_test else []
    part = parse_shard(shard)
    resolve(backend)  # a bad backend fails here, not in every worker
    train, test = [e for e in train if in_shard(e.video_id, part)], [e for e in test if in_shard(e.video_id, part)]
    if comp.features_dir:  # precomputed features: one array file per video, no media to decode
        scan_features(train + test, found)
    else:
        size_outliers(scan_media(train + test, clip_len, found, workers, backend), found)
    return found, len(train), len(test)


def scan_spotting(comp: Competition, found: list[Finding], workers: int | None = None, shard: str | None = None,
                  backend: str = "cv2") -> tuple[list[Finding], int, int]:
    """A spotting competition: every long video in train_dir and test_dir decoded (the sample lists events, not
    videos; any length is fine: a short video is one padded window), the events CSV checked row by row with the
    messages `cv` stops on (vidkit.data.events.event_problems)."""
    from vidkit.data.events import event_problems, spot_entries, video_fps
    from vidkit.data.index import entry_row
    train = spot_entries(comp, "train", _collect(found, "train"))
    test = spot_entries(comp, "test", _collect(found, "test")) if comp.test_dir else []
    videos = pd.DataFrame([{**entry_row(e), "fps": video_fps(e.path, comp.fps)} for e in train])
    if not videos.empty:
        found += [Finding(kind, where, None, "train", detail) for kind, where, detail in
                  event_problems(comp, videos)[3]]
    part = parse_shard(shard)
    resolve(backend)
    train, test = [e for e in train if in_shard(e.video_id, part)], [e for e in test if in_shard(e.video_id, part)]
    size_outliers(scan_media(train + test, 1, found, workers, backend), found)
    return found, len(train), len(test)


def report(found: list[Finding], n_train: int, n_test: int, first: int = 5) -> str:
    by_kind = defaultdict(list)
    for f in found:
        by_kind[f.kind].append(f)
    problems = sum(len(v) for k, v in by_kind.items() if k not in INFO)
    lines = [f"scanned {n_train} training and {n_test} test videos: "
             + (f"{problems} problems" if problems else "no problems")]
    for kind, title in KINDS.items():
        items = by_kind.get(kind, [])
        if items:
            lines.append(f"{kind}: {len(items)} {title}" + (" [info]" if kind in INFO else ""))
            lines += [f"  {f.path}" + (f" ({f.detail})" if f.detail else "") for f in items[:first]]
            if len(items) > first:
                lines.append(f"  ... and {len(items) - first} more")
    return "\n".join(lines)


def bad_training_ids(found: list[Finding]) -> pd.DataFrame:
    """video_id, reason: the training videos to leave out (one row per video, its reasons joined)."""
    rows = [(f.video_id, f.kind) for f in found if f.split == "train" and f.kind in EXCLUDE and f.video_id]
    df = pd.DataFrame(rows, columns=["video_id", "reason"]).drop_duplicates()
    return df.groupby("video_id", sort=False)["reason"].agg(";".join).reset_index()


def read_exclude(path: str | Path) -> set[str]:
    """Video ids from an exclude file: `check exclude_out=`'s CSV (video_id[,reason]) or one id a line."""
    lines = [line.strip() for line in read_text(path, "exclude file").splitlines() if line.strip()]
    if lines and lines[0].split(",")[0] == "video_id":
        return set(read_csv(path, ("video_id",), dtype=str, what="exclude file")["video_id"].dropna())
    return {line.split(",")[0] for line in lines}


def run_check(comp: Competition, clip_len: int = 16, exclude_out: str | None = None, workers: int | None = None,
              shard: str | None = None, backend: str = "cv2") -> int:
    """Print the report; write the exclude list when asked. 1 when problems were found, else 0."""
    found, n_train, n_test = scan(comp, clip_len, workers, shard, backend)
    print(report(found, n_train, n_test))
    if exclude_out:
        bad = bad_training_ids(found)
        write_csv(bad, exclude_out, index=False)
        print(f"wrote {len(bad)} training videos to exclude: {exclude_out} (train with exclude={exclude_out})")
    return int(any(f.kind not in INFO for f in found))


def drop_bad(table: pd.DataFrame, exclude: str | None = None) -> pd.DataFrame:
    """The index table without the videos training cannot read (no frames, unreadable first frame or
    video file) and those listed in `exclude`; a warning names each video left out and why."""
    reasons = pd.Series("", index=table.index)
    unreadable = (table["n_frames"] <= 0) | (table["height"] <= 0) | (table["width"] <= 0)
    reasons[unreadable] = "no readable frames"
    if exclude:
        reasons[table["video_id"].isin(read_exclude(exclude)) & ~unreadable] = f"listed in {exclude}"
    bad = reasons != ""
    if bad.all():
        raise VidkitError(f"every training video was left out ({', '.join(reasons[bad].unique())})")
    if bad.any():
        named = [f"{vid} ({why})" for vid, why in zip(table.loc[bad, "video_id"], reasons[bad])]
        log.warning("leaving out %d training videos: %s%s", int(bad.sum()), ", ".join(named[:20]),
                    f" and {len(named) - 20} more" if len(named) > 20 else "")
    return table[~bad].reset_index(drop=True)
