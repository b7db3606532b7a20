"""Splitting per-video work (`frames`, `cache`, `check`) over machines and processes.

`shard=k/n` (k = 0 .. n-1) keeps the videos whose id hashes to k modulo n: a stable hash (SHA-1 of the id), so
n machines given k = 0 .. n-1 split one dataset with no coordination and no file listing to share, and the same
video always lands in the same shard. `workers=N` runs the kept videos in N processes with one progress bar.
"""
from __future__ import annotations

import hashlib
import re
from concurrent.futures import ProcessPoolExecutor

from tqdm.auto import tqdm

from vidkit.errors import VidkitError


def parse_shard(text: str | None) -> tuple[int, int]:
    """`k/n` -> (k, n); None or empty -> (0, 1), everything."""
    if not text:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise VidkitError(f"shard: expected k/n with 0 <= k < n (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def in_shard(video_id: str, shard: tuple[int, int]) -> bool:
    k, n = shard
    return n == 1 or int(hashlib.sha1(str(video_id).encode()).hexdigest()[:12], 16) % n == k


def pool_map(fn, jobs: list, workers: int | None, desc: str, unit: str = "video") -> list:
    """fn over jobs in order, in `workers` processes (1 or None: this process), with one progress bar."""
    bar = dict(total=len(jobs), desc=desc, unit=unit, leave=False, disable=None, mininterval=1.0)
    if not workers or workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
        chunk = max(1, min(64, len(jobs) // (workers * 4)))
        return list(tqdm(pool.map(fn, jobs, chunksize=chunk), **bar))
