"""Reading frames: image folders (natural order) and raw video files (only the frames a clip needs)."""
from __future__ import annotations

import ctypes
import itertools
import logging
import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

try:  # not in Kaggle's image (kernels/kaggle_image.txt): cv2's reduced decode gives the same pixels at 1/2^k
    import simplejpeg
except ImportError:
    simplejpeg = None

from vidkit.data.video_backends import decode
from vidkit.errors import VidkitError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".webm", ".mov"}
_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}

log = logging.getLogger(__name__)
cv2.setNumThreads(1)  # DataLoader workers supply the parallelism


def _keep_freed_clips_in_the_heap():
    """glibc hands freed multi-MB blocks (a decoded clip, its float tensor) back to the OS and page-faults
    fresh ones in for the next clip, which costs as much as decoding it (benchmarks/README.md). Serve
    blocks under 64 MiB from the heap and trim it only past 128 MiB: a little resident memory per process."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)   # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


_keep_freed_clips_in_the_heap()


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


def _decode(path: Path, reduce: int, out: np.ndarray | None = None) -> np.ndarray:
    """RGB frame at 1/reduce size (`reduce`: reduce_factor's 1, 2, 4 or 8). JPEGs use libjpeg-turbo's DCT
    scaling, through simplejpeg (decoded into `out` when it fits) or, without it (Kaggle's image), cv2's
    IMREAD_REDUCED: at these scales both give the same pixels; simplejpeg's other M/8 scales have no cv2
    equivalent, so they are not used. Anything else goes through cv2 at 1/reduce."""
    data = path.read_bytes()
    if data[:2] == b"\xff\xd8" and simplejpeg is not None:
        for buffer in (out, None) if out is not None else (None,):
            try:
                height, width = simplejpeg.decode_jpeg_header(data)[:2]
                return simplejpeg.decode_jpeg(data, "RGB", min_height=-(-height // reduce),
                                              min_width=-(-width // reduce), buffer=buffer)
            except ValueError:
                pass  # `out` too small, or a JPEG libjpeg-turbo rejects in strict mode: cv2 tries last
    img = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[reduce])
    if img is None:
        raise VidkitError(f"{path}: cannot decode image")
    return img[..., ::-1]


_BAD_FRAMES: set[Path] = set()  # frames that failed to decode in this process: each warned about once


def _decode_or_neighbour(folder: Path, names: list[str], i: int, reduce: int,
                         out: np.ndarray | None = None) -> np.ndarray:
    """Frame i; when it cannot be decoded, its nearest readable neighbour in the folder (i-1, i+1, i-2, ...),
    with a warning naming the bad file (once per file) and the count so far."""
    near = (j for d in range(1, len(names)) for j in (i - d, i + d) if 0 <= j < len(names))
    for j in itertools.chain([i], near):  # lazy: a good frame costs one try
        path = folder / names[j]
        if path in _BAD_FRAMES:
            continue
        try:
            return _decode(path, reduce, out)
        except (VidkitError, OSError, cv2.error) as e:
            _BAD_FRAMES.add(path)
            why = e.strerror if isinstance(e, OSError) else "cannot be decoded"
            log.warning("%s: corrupt frame (%s), using its nearest readable neighbour instead (%d corrupt frames "
                        "so far; `vidkit check` lists them all)", path, why, len(_BAD_FRAMES))
    raise VidkitError(f"{folder}: no frame can be decoded")


def read_images(folder: str | Path, names: list[str], indices, reduce: int | None = None,
                short_side: int = 0) -> np.ndarray:
    """Frames `indices` of a folder as uint8 RGB (T, H, W, 3), decoded straight into the clip, each file
    once, at 1/reduce size (default: the smallest scale that keeps `short_side`, from the first frame's size)."""
    folder = Path(folder)
    indices = [int(i) for i in indices]
    if reduce is None:
        reduce = 1
        try:
            if short_side:
                with Image.open(folder / names[indices[0]]) as img:  # header only
                    reduce = reduce_factor(img.height, img.width, short_side)
        except OSError:
            pass  # a corrupt first frame: its neighbour stands in for it below, at full size
    first = _decode_or_neighbour(folder, names, indices[0], reduce)
    clip = np.empty((len(indices), *first.shape), np.uint8)
    clip[0], done = first, {indices[0]: 0}
    for t, i in enumerate(indices[1:], 1):
        if i in done:  # padding repeats a frame: copy it
            clip[t] = clip[done[i]]
            continue
        img = _decode_or_neighbour(folder, names, i, reduce, out=clip[t])
        if img.shape != clip.shape[1:]:  # a frame of another size: fit it to the first
            clip[t] = cv2.resize(np.array(img), (clip.shape[2], clip.shape[1]), interpolation=cv2.INTER_AREA)
        elif not np.shares_memory(img, clip[t]):
            clip[t] = img
        done[i] = t
    return clip


def read_video(path: str | Path, indices, backend: str = "cv2") -> np.ndarray:
    """Frames `indices` of a video file as uint8 RGB (T, H, W, 3), decoded by `backend` (see video_backends)."""
    return decode(path, indices, backend)


def read_clip(row, indices, short_side: int = 0, backend: str = "cv2") -> np.ndarray:
    """A clip from an index row (see vidkit.data.index): its frame cache when the row has one (see
    vidkit.data.cache), else its frame folder or video file. Frames come at a short side >= `short_side`
    where the decoder can scale for free, else at full size; video files through `backend`."""
    if isinstance(row.get("cache"), str):
        frames = np.load(row["cache"], mmap_mode="c")  # copy-on-write: writable views, the file never written
        indices = np.minimum(np.asarray(indices, dtype=np.int64), len(frames) - 1)
        step = int(indices[1] - indices[0]) if len(indices) > 1 else 1
        if step > 0 and (np.diff(indices) == step).all():  # a strided clip: a view, only the crop's pages get read
            return frames[indices[0]:indices[-1] + 1:step]
        return frames[indices]
    if row["kind"] == "frames":
        reduce = reduce_factor(row["height"], row["width"], short_side) if short_side else 1
        return read_images(row["path"], row["files"], indices, reduce, short_side)
    return read_video(row["path"], indices, backend)
