"""shard=k/n and workers=N for frames, cache and check: n shards split the videos, each exactly once."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vidkit.config import load_competition
from vidkit.data.cache import cache_competition
from vidkit.data.check import scan
from vidkit.data.frames import extract_tree
from vidkit.data.shard import in_shard, parse_shard
from vidkit.demo import make_demo
from vidkit.errors import VidkitError


def test_shards_partition_the_ids_stably():
    ids = [f"video_{i}" for i in range(400)]
    parts = [{v for v in ids if in_shard(v, (k, 4))} for k in range(4)]
    assert set().union(*parts) == set(ids) and sum(map(len, parts)) == len(ids)  # each id in exactly one
    assert all(60 < len(p) < 140 for p in parts)  # roughly even
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) == (0, 1)
    for bad in ("4/4", "1", "-1/2", "a/b"):
        with pytest.raises(VidkitError, match="shard: expected k/n"):
            parse_shard(bad)


def _videos(root, n=6):
    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(folder / f"v{i}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 32))
        for t in range(5):
            writer.write(np.full((32, 40, 3), 20 * t + i, np.uint8))
        writer.release()


def test_frames_shards_and_workers_split_one_tree(tmp_path):
    _videos(tmp_path / "raw")
    extract_tree(str(tmp_path / "raw"), str(tmp_path / "all"))
    counts = []
    for k in range(2):  # two "machines", the second with two processes, through the CLI
        cmd = [sys.executable, "-m", "vidkit", "frames", f"videos={tmp_path / 'raw'}", f"out={tmp_path / 'split'}",
               f"shard={k}/2", f"workers={k + 1}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        counts.append(int(out.split("extracted ")[1].split()[0]))
    assert sum(counts) == 6 and 0 < counts[0] < 6
    whole = sorted(p.relative_to(tmp_path / "all") for p in (tmp_path / "all").rglob("*.jpg"))
    split = sorted(p.relative_to(tmp_path / "split") for p in (tmp_path / "split").rglob("*.jpg"))
    assert whole == split and len(whole) == 30


def test_cache_shards_build_disjoint_halves(tiny_comp, tmp_path):
    comp = load_competition(tiny_comp)
    full = cache_competition(comp, 32, str(tmp_path / "one"), workers=1)
    halves = [cache_competition(comp, 32, str(tmp_path / "two"), workers=2, shard=f"{k}/2") for k in range(2)]
    assert halves[0][1] + halves[1][1] == full[1] and 0 < halves[0][1] < full[1]
    assert len(list((tmp_path / "two").rglob("*.npy"))) == full[1]  # each video cached by exactly one shard


def test_check_shards_each_scan_their_own_videos(tmp_path):
    comp = load_competition(make_demo(tmp_path / "data", tmp_path / "c.yaml", n_groups=2, per_group=2, n_test=2,
                                      size=32, n_folds=2))
    bad = next(p for p in (tmp_path / "data").rglob("*.jpg"))
    bad.write_bytes(b"not a jpeg")
    found = [scan(comp, 4, workers=2, shard=f"{k}/2") for k in range(2)]
    corrupt = [[f for f in fs if f.kind == "corrupt_image"] for fs, _, _ in found]
    assert sorted(map(len, corrupt)) == [0, 1] and next(c for c in corrupt if c)[0].path == str(bad)


@pytest.mark.parametrize("cores", [2, 4, 16])
def test_workers_never_exceed_the_cores_this_process_may_use(cores, monkeypatch, caplog):
    """A config's fixed num_workers (8 in the GPU configs of old), `workers=N` pools and `-1` all fit the machine:
    its affinity, the cgroup quota, shared among the local processes (LOCAL_WORLD_SIZE)."""
    import logging

    from vidkit.data import shard
    from vidkit.data.dataset import loader_settings
    monkeypatch.setattr(shard.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(shard, "cgroup_cores", lambda: None)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    shard._warn_once.cache_clear()
    with caplog.at_level(logging.INFO, logger="vidkit.data.shard"):
        assert loader_settings(100, gpu=True, workers=8)["num_workers"] == min(8, cores)
    assert ("more than the" in caplog.text) == (cores < 8)
    assert loader_settings(100, gpu=True, workers=-1)["num_workers"] == cores
    assert loader_settings(100, gpu=False, workers=-1)["num_workers"] == cores // 4
    assert loader_settings(3, gpu=True, workers=8)["num_workers"] == min(3, cores)  # never more than batches
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two processes on this machine share its cores
    assert loader_settings(100, gpu=True, workers=8)["num_workers"] == min(8, cores // 2)
    assert shard.clamp_workers(64, "workers") == cores // 2
    monkeypatch.setattr(shard, "cgroup_cores", lambda: 1)  # a container allowed one core
    assert shard.usable_cores() == 1 and loader_settings(100, gpu=True, workers=8)["num_workers"] == 1


def test_cgroup_quota_in_whole_cores(monkeypatch, tmp_path):
    from vidkit.data import shard
    v2 = tmp_path / "cpu.max"
    monkeypatch.setattr(shard, "CGROUP_FILES", (str(v2),))
    for text, want in [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1)]:
        v2.write_text(text)
        assert shard.cgroup_cores() == want, text
    v1 = tmp_path / "cpu" / "cpu.cfs_quota_us"
    v1.parent.mkdir()
    v1.write_text("400000\n")
    (v1.parent / "cpu.cfs_period_us").write_text("100000\n")
    monkeypatch.setattr(shard, "CGROUP_FILES", (str(tmp_path / "missing"), str(v1)))
    assert shard.cgroup_cores() == 4


def test_pools_start_no_more_processes_than_cores(monkeypatch):
    from vidkit.data import shard
    started = []
    monkeypatch.setattr(shard, "usable_cores", lambda: 2)
    monkeypatch.setattr(shard, "ProcessPoolExecutor", lambda n: started.append(n) or _Serial())
    assert shard.pool_map(abs, [-1, -2, -3, -4], 8, "t") == [1, 2, 3, 4]
    assert started == [2]


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, jobs, chunksize=1):
        return map(fn, jobs)
