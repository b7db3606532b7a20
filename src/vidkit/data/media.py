"""Reading frames: image folders (natural order) and raw video files (only the frames a clip needs)."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from vidkit.errors import VidkitError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".webm", ".mov"}
_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}

cv2.setNumThreads(1)  # DataLoader workers supply the parallelism


def natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frames(folder: str | Path) -> list[str]:
    """Image file names in a frame folder, `2.jpg` before `10.jpg`; hidden files ignored."""
    names = [p.name for p in Path(folder).iterdir()
             if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
    return sorted(names, key=natural_key)


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def probe(path: str | Path) -> tuple[int, int, int]:
    """(n_frames, height, width) of a frame folder or video file, reading headers only where possible."""
    path = Path(path)
    if path.is_dir():
        names = list_frames(path)
        if not names:
            return 0, 0, 0
        try:
            with Image.open(path / names[0]) as img:  # header only
                w, h = img.size
        except OSError:
            h = w = 0
        return len(names), h, w
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0, 0, 0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return n, int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    finally:
        cap.release()


def reduce_factor(height: int, width: int, short_side: int) -> int:
    """Largest libjpeg scale (1, 2, 4, 8) that still leaves the short side >= `short_side`."""
    factor = 1
    for f in (2, 4, 8):
        if min(height, width) // f >= short_side:
            factor = f
    return factor


def read_images(folder: str | Path, names: list[str], indices, reduce: int = 1) -> np.ndarray:
    """Frames `indices` of a folder as uint8 RGB (T, H, W, 3), decoded at 1/reduce size."""
    folder = Path(folder)
    cache: dict[int, np.ndarray] = {}
    frames = []
    for i in indices:
        if i not in cache:
            path = folder / names[i]
            img = cv2.imread(str(path), _REDUCED[reduce])
            if img is None:
                raise VidkitError(f"{path}: cannot decode image")
            cache[i] = img
        frames.append(cache[i])
    return _stack_rgb(frames, folder)


def read_video(path: str | Path, indices) -> np.ndarray:
    """Frames `indices` of a video file as uint8 RGB (T, H, W, 3).

    Decodes forward, skipping frames with `grab()` (no colour conversion) and seeking only across
    long gaps, so a 16-frame clip of a long video costs far less than decoding it all.
    """
    wanted = sorted(set(int(i) for i in indices))
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VidkitError(f"{path}: cannot open video")
    got: dict[int, np.ndarray] = {}
    pos = 0
    try:
        for i in wanted:
            if i - pos > 64:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                pos = i
            while pos < i and cap.grab():
                pos += 1
            ok, frame = cap.read()
            if not ok:
                break
            pos += 1
            got[i] = frame
    finally:
        cap.release()
    if not got:
        raise VidkitError(f"{path}: no frames could be decoded")
    last = got[max(got)]
    # frame counts in headers can overstate the real count: past the end, repeat the last frame
    frames = [got.get(int(i), last) for i in indices]
    return _stack_rgb(frames, path)


def _stack_rgb(frames: list[np.ndarray], source) -> np.ndarray:
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        h, w = frames[0].shape[:2]
        frames = [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h)) for f in frames]
    return np.ascontiguousarray(np.stack(frames)[..., ::-1])


def read_clip(row, indices, short_side: int = 0) -> np.ndarray:
    """A clip from an index row (see vidkit.data.index): frame folder or video file."""
    if row["kind"] == "frames":
        reduce = reduce_factor(row["height"], row["width"], short_side) if short_side else 1
        return read_images(row["path"], row["files"], indices, reduce)
    return read_video(row["path"], indices)
