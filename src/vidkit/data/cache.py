"""Frame cache: each video decoded once, resized to the training short side, stored as one uint8 `.npy`
(T, H, W, 3) that clips are then read from memory-mapped (only the sampled frames are touched).

A cache file is named `<video id>-<id hash>.<fingerprint>.npy` in `data/cache/<competition>/<short side>/`
(`cache_dir=` replaces `data/cache`). The fingerprint hashes the short side, the source path and every source file's name,
size and modification time, so an edited, replaced or re-extracted source, or another short side, gets a
new file (and the stale one is deleted) instead of stale frames.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np

from vidkit.data.media import read_images
from vidkit.data.shard import clamp_workers, in_shard, parse_shard, pool_map, usable_cores
from vidkit.data.video_backends import resolve, stream
from vidkit.errors import VidkitError

log = logging.getLogger(__name__)
VERSION = 1


def cache_root(comp_name: str, short: int, cache_dir: str | None = None) -> Path:
    return Path(cache_dir or Path("data") / "cache") / comp_name / str(short)


def _sources(row) -> list[Path]:
    path = Path(row["path"])
    return [path / f for f in row["files"]] if row["kind"] == "frames" else [path]


def fingerprint(row, short: int) -> str:
    h = hashlib.sha1(f"vidkit-cache v{VERSION} short={short} {row['path']}".encode())
    for p in _sources(row):
        st = p.stat()
        h.update(f"|{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cache_file(root: Path, row, short: int) -> Path:
    vid = str(row["video_id"])
    stem = re.sub(r"[^\w.-]", "_", vid)[:80] + "-" + hashlib.sha1(vid.encode()).hexdigest()[:6]
    return Path(root) / f"{stem}.{fingerprint(row, short)}.npy"


def _fit(frame: np.ndarray, short: int) -> np.ndarray:
    """Resize so the short side is `short` (never upscaled: the transforms do that per crop)."""
    h, w = frame.shape[:2]
    if min(h, w) <= short:
        return np.ascontiguousarray(frame)
    s = short / min(h, w)
    return cv2.resize(np.ascontiguousarray(frame), (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def decode_all(row, short: int, backend: str = "cv2") -> np.ndarray:
    """Every frame of a video at short side `short`, uint8 RGB (T, H, W, 3); video files decoded by `backend`."""
    if row["kind"] == "frames":
        frames = read_images(row["path"], row["files"], range(len(row["files"])), short_side=short)
        return np.stack([_fit(f, short) for f in frames])
    frames = [_fit(frame, short) for _, frame in stream(row["path"], backend)[1]]
    if not frames:
        raise VidkitError(f"{row['path']}: no frames could be decoded")
    return np.stack(frames)


def build_one(row, short: int, path: Path, backend: str = "cv2") -> int:
    """Write one video's cache file atomically and remove its stale versions; returns bytes written."""
    frames = decode_all(row, short, backend)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, frames)
    os.replace(tmp, path)
    for old in path.parent.glob(path.name.rsplit(".", 2)[0] + ".*.npy"):
        if old != path:
            old.unlink(missing_ok=True)
    return path.stat().st_size


def _build(args):
    return build_one(*args)


def attach_cache(rows: list[dict], short: int, root: Path, workers: int | None = None,
                 backend: str = "cv2") -> list[dict]:
    """Rows with a `cache` entry (read by `read_clip`); missing or stale cache files are built first (video files
    decoded by video_backend `backend`)."""
    out, todo = [], []
    for row in rows:
        if not row.get("path") or row.get("kind") not in ("frames", "video"):
            out.append(dict(row))
            continue
        path = cache_file(root, row, short)
        if not path.is_file():
            todo.append((row, short, path, backend))
        out.append({**row, "cache": str(path)})
    if todo:
        resolve(backend)
        workers = min(len(todo), clamp_workers(workers) if workers else usable_cores())
        log.info("frame cache: building %d of %d videos in %s (%d processes)", len(todo), len(rows), root, workers)
        pool_map(_build, todo, workers, "cache")
    return out


def cache_size(rows: list[dict]) -> int:
    """Bytes on disk of the rows' cache files."""
    return sum(Path(r["cache"]).stat().st_size for r in rows if isinstance(r.get("cache"), str))


def cache_competition(comp, short: int, cache_dir: str | None = None, workers: int | None = None,
                      shard: str | None = None, backend: str = "cv2"):
    """Build the frame cache of a competition's training and test videos (of shard `k/n`: see
    vidkit.data.shard); (root, n videos, bytes)."""
    from vidkit.data.index import index_test, index_train
    rows = index_train(comp).to_dict("records")
    test_dir = comp.resolve(comp.test_dir)
    if test_dir is not None and test_dir.is_dir():
        rows += index_test(comp).to_dict("records")
    part = parse_shard(shard)
    rows = [r for r in rows if in_shard(r["video_id"], part)]
    root = cache_root(comp.name, short, cache_dir)
    rows = attach_cache(rows, short, root, workers, backend)
    return root, sum(isinstance(r.get("cache"), str) for r in rows), cache_size(rows)
