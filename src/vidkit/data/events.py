"""Spotting data: long videos, their events (`events_csv:` rows video_id,frame|time,event), per-frame targets,
training windows, and the frames of a whole video streamed at a model's size (decoded once, never all kept)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pandas as pd

from vidkit.config import Competition
from vidkit.data.index import COLUMNS, entry_row
from vidkit.data.layouts import Entry, group_of, media_in, strict
from vidkit.data.media import list_frames, read_clip, read_images
from vidkit.data.video_backends import stream
from vidkit.errors import VidkitError
from vidkit.files import numeric_columns, read_csv

log = logging.getLogger(__name__)
NO_EVENT = "events"  # the label column of a spotting index (folds are drawn by group only)


def index_videos(comp: Competition, split: str) -> pd.DataFrame:
    """Every video (file or frame folder) directly in train_dir / test_dir, as index rows with their fps."""
    rows = [{**entry_row(e), "fps": video_fps(e.path, comp.fps)} for e in spot_entries(comp, split)]
    if split == "train" and not rows:
        raise VidkitError(f"{comp.resolve(comp.train_dir)}: no training videos found (expected {{video_id}}.mp4 or "
                          f"{{video_id}}/*.jpg)")
    return pd.DataFrame(rows, columns=[*COLUMNS, "fps"])


def spot_entries(comp: Competition, split: str, report=strict) -> list[Entry]:
    """Every video (file or frame folder) directly in train_dir / test_dir; problems go to `report`."""
    folder = comp.resolve(comp.train_dir if split == "train" else comp.test_dir)
    if folder is None or not folder.is_dir():
        raise VidkitError(f"{folder}: {split} folder not found")
    return [Entry(vid, path, split, NO_EVENT if split == "train" else None,
                  group_of(comp, vid, None, path, report) if split == "train" else None)
            for vid, path in media_in(folder, report)]


def video_fps(path: Path, default: float | None) -> float:
    """A video file's frame rate (its header), else the competition's `fps:` (frame folders), else 25."""
    if Path(path).is_file():
        cap = cv2.VideoCapture(str(path))
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
        cap.release()
        if fps and fps > 0:
            return float(fps)
    return float(default or 25.0)


def read_events(comp: Competition, videos: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    """The events CSV as rows video_id, frame, event (times converted with each video's fps), the event classes
    (`classes:` or the CSV's, sorted) and the CSV's unit (frame | time). The first problem of `event_problems`
    (a video without events is allowed) is a one-line error naming the file."""
    table, classes, unit, problems = event_problems(comp, videos)
    for kind, where, detail in problems:
        if kind != "no_events":
            raise VidkitError(f"{where}: {detail}")
    return table, classes, unit


def event_problems(comp: Competition, videos: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str, list]:
    """The events CSV checked against the training videos (index rows with n_frames and fps): (the usable rows
    video_id, frame, event; classes; unit; problems). Each problem is (kind, file, detail), one per bad row:
    events_csv (missing, wrong columns), unknown_event, event_video (not in train_dir), event_outside (before
    the first or after the last frame), no_events (a training video without events: allowed)."""
    path = comp.resolve(comp.events_csv)
    try:
        table, unit = _events_table(comp, path)
    except VidkitError as e:  # the file as a whole: one problem, its message split into file and detail
        where, _, detail = str(e).partition(": ")
        return pd.DataFrame(columns=["video_id", "frame", "event"]), [], "frame", [("events_csv", where, detail)]
    classes = [str(c) for c in comp.classes] if comp.classes else sorted(table["event"].unique())
    info = videos.set_index("video_id")
    problems = [("unknown_event", str(path), f"unknown event class {r['event']!r} (line {i + 2}; classes: "
                 f"{', '.join(classes)})") for i, r in table[~table["event"].isin(classes)].iterrows()]
    problems += [("event_video", str(path), f"event of video {r['video_id']!r} (line {i + 2}), which is not in "
                  f"{comp.resolve(comp.train_dir)}") for i, r in table[~table["video_id"].isin(info.index)].iterrows()]
    table = table[table["event"].isin(classes) & table["video_id"].isin(info.index)]
    fps = table["video_id"].map(info["fps"])
    frame = table[unit] if unit == "frame" else table[unit] * fps
    table = table.assign(frame=np.round(frame.astype(float)).astype(int))
    n_frames = table["video_id"].map(info["n_frames"])
    outside = (table["frame"] < 0) | (table["frame"] >= n_frames)
    problems += [("event_outside", str(path), f"event at {unit} {r[unit]} of video {r['video_id']!r} (line {i + 2}) "
                  f"is outside the video ({n_frames[i]} frames)") for i, r in table[outside].iterrows()]
    problems += [("no_events", str(r["path"]), f"no events in {path.name} (allowed: background only)")
                 for _, r in videos[~videos["video_id"].isin(table["video_id"])].iterrows()]
    return table[~outside][["video_id", "frame", "event"]].reset_index(drop=True), classes, unit, problems


def _events_table(comp: Competition, path: Path | None) -> tuple[pd.DataFrame, str]:
    """The events CSV read and checked as a whole (columns, rows, numbers), and its unit (frame | time)."""
    if path is None:
        raise VidkitError(f"{comp.path}: task spotting needs events_csv")
    table = read_csv(path, dtype={"video_id": str, "event": str}, what="events_csv")
    unit = "frame" if "frame" in table.columns else "time"
    missing = {"video_id", "event", unit} - set(table.columns)
    if missing:
        raise VidkitError(f"{path}: missing column(s) {', '.join(sorted(missing))} (expected video_id,frame|time,event)")
    if table.empty:
        raise VidkitError(f"{path}: no events (a header and no rows)")
    return numeric_columns(table, [unit], path, complete=True), unit


def frame_targets(n_frames: int, frames: np.ndarray, labels: np.ndarray, n_classes: int, sigma: float,
                  target: str = "heat") -> np.ndarray:
    """Per-frame targets of one video. `heat`: (n, K) float, a Gaussian of width sigma around each event
    (overlaps: the max); `class`: (n,) int, 0 background, k + 1 within sigma frames of an event of class k."""
    t = np.arange(n_frames, dtype=np.float32)[:, None]
    if target == "class":
        out = np.zeros(n_frames, np.int64)
        for f, k in zip(frames, labels):
            out[max(0, f - int(sigma)):f + int(sigma) + 1] = k + 1
        return out
    heat = np.zeros((n_frames, n_classes), np.float32)
    for f, k in zip(frames, labels):
        heat[:, k] = np.maximum(heat[:, k], np.exp(-0.5 * ((t[:, 0] - f) / max(sigma, 1e-3)) ** 2))
    return heat


def window_starts(n_frames: int, event_frames: np.ndarray, window: int, count: int,
                  rng: np.random.Generator) -> np.ndarray:
    """`count` window starts: half put an event somewhere inside the window (uniformly), half anywhere (a video
    without events: all anywhere)."""
    last = max(0, n_frames - window)
    around = count // 2 if len(event_frames) else 0
    centres = rng.choice(event_frames, around) if around else np.zeros(0, int)
    starts = np.concatenate([centres - rng.integers(0, window, around), rng.integers(0, last + 1, count - around)])
    return np.clip(starts, 0, last).astype(int)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 squashed to (T, size, size, 3) (the whole frame: an event may be anywhere in it)."""
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def read_window(row, start: int, window: int, size: int, backend: str = "cv2") -> np.ndarray:
    """Frames start .. start + window - 1 of a video (the last frame repeated past its end) at `size`."""
    idx = np.minimum(np.arange(start, start + window), max(int(row["n_frames"]) - 1, 0))
    return resize_frames(read_clip(row, idx, size, backend), size)


def iter_frames(row, size: int | None, backend: str = "cv2", chunk: int = 64) -> Iterator[np.ndarray]:
    """Every frame of a video in order at `size` (None: as decoded), decoded once and streamed (a file through
    `backend`, a frame folder `chunk` files at a time): memory holds one chunk, whatever the video's length."""
    if row["kind"] == "frames":
        names = row["files"] if len(row["files"]) else list_frames(row["path"])
        for start in range(0, len(names), chunk):
            part = read_images(row["path"], names, range(start, min(start + chunk, len(names))),
                               short_side=size or 0)
            yield from (resize_frames(part, size) if size else part)
        return
    _, frames = stream(row["path"], backend)
    for _, frame in frames:
        yield cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA) if size else frame


def load_video(row, size: int, backend: str = "cv2") -> np.ndarray:
    """A whole video at `size` in memory (training on short or small videos: each decoded once)."""
    frames = list(iter_frames(row, size, backend))
    if not frames:
        raise VidkitError(f"{row['path']}: no frames could be decoded")
    return np.stack(frames)
