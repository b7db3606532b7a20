"""`vidkit frames`: extract frame folders from raw videos once (optionally at a lower fps and size)."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import cv2
from vidkit.data.media import is_video
from vidkit.data.shard import in_shard, parse_shard, pool_map
from vidkit.data.video_backends import resolve, stream
from vidkit.errors import VidkitError


def extract_frames(video: Path, out: Path, fps: float | None = None, size: int | None = None,
                   quality: int = 95, backend: str = "cv2") -> int:
    """Write video's frames as out/00001.jpg ...; keep every frame, or resample to `fps`;
    `size` resizes the short side; decoded by video_backend `backend`. Returns the number of frames written."""
    step = 1.0  # source frames per kept frame; set from the stream's rate before the first frame is read

    def keep(i: int) -> bool:  # the first frame at or after each multiple of step
        return i == 0 or int((i + 1e-6) / step) > int((i - 1 + 1e-6) / step)
    src_fps, frames = stream(video, backend, keep)
    if fps:
        step = (src_fps or 30.0) / fps
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for _, frame in frames:
        if size:
            h, w = frame.shape[:2]
            scale = size / min(h, w)
            frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        written += 1
        cv2.imwrite(str(out / f"{written:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, quality])
    if written == 0:
        raise VidkitError(f"{video}: no frames could be decoded")
    return written


def _extract(job, backend: str) -> int:
    return extract_frames(*job, backend=backend)


def extract_tree(videos: str, out: str, fps: float | None = None, size: int | None = None,
                 shard: str | None = None, workers: int | None = None, backend: str = "cv2") -> int:
    """Every video under `videos` (of shard `k/n`, by its relative path: see vidkit.data.shard) becomes a frame
    folder at the same relative place under `out`, in `workers` processes. Returns the number of videos."""
    src = Path(videos)
    if not src.is_dir():
        raise VidkitError(f"{src}: videos folder not found")
    files = sorted(p for p in src.rglob("*") if p.is_file() and is_video(p))
    if not files:
        raise VidkitError(f"{src}: no video files (.mp4 .avi .mkv .webm .mov)")
    part = parse_shard(shard)
    resolve(backend)  # a bad backend fails here, not in every worker
    jobs = [(f, Path(out) / f.relative_to(src).with_suffix(""), fps, size) for f in files
            if in_shard(f.relative_to(src).with_suffix("").as_posix(), part)]
    pool_map(partial(_extract, backend=backend), jobs, workers, "frames")
    return len(jobs)
