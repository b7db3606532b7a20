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
