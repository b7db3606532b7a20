"""Splitting per-video work (`frames`, `cache`, `check`) over machines and processes.

`shard=k/n` (k = 0 .. n-1) keeps the videos whose id hashes to k modulo n: a stable hash (SHA-1 of the id), so
n machines given k = 0 .. n-1 split one dataset with no coordination and no file listing to share, and the same
video always lands in the same shard. `workers=N` runs the kept videos in N processes with one progress bar.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache

from tqdm.auto import tqdm

from vidkit.errors import VidkitError

log = logging.getLogger(__name__)
CGROUP_FILES = ("/sys/fs/cgroup/cpu.max",  # cgroup v2: "<quota> <period>" or "max <period>"
                "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")  # cgroup v1 (its period in cpu.cfs_period_us)


def cgroup_cores() -> int | None:
    """The CPU quota of this process's cgroup in whole cores (containers, Kaggle), None when unlimited."""
    for name in CGROUP_FILES:
        try:
            text = Path(name).read_text().split()
            if name.endswith("cpu.max"):
                quota, period = text[0], text[1]
            else:
                quota, period = text[0], Path(name).with_name("cpu.cfs_period_us").read_text().split()[0]
        except (OSError, IndexError):
            continue
        if quota in ("max", "-1"):
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    return None


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by the cgroup quota, shared among the processes
    on this machine (`LOCAL_WORLD_SIZE` under torchrun / accelerate launch); at least 1."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cores()
    cores = min(cores, quota) if quota else cores
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


def clamp_workers(requested: int, what: str = "num_workers") -> int:
    """`requested` workers, at most `usable_cores()`; more is clamped with one log line."""
    cap = usable_cores()
    if requested > cap:
        _warn_once(what, requested, cap)
        return cap
    return requested


@lru_cache(maxsize=None)
def _warn_once(what: str, requested: int, cap: int) -> None:
    log.info("%s=%d is more than the %d core(s) this process may use: %d", what, requested, cap, cap)


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
    workers = clamp_workers(workers, "workers") if workers else workers
    if not workers or workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
        chunk = max(1, min(64, len(jobs) // (workers * 4)))
        return list(tqdm(pool.map(fn, jobs, chunksize=chunk), **bar))
