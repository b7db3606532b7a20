"""Shared helpers for the benchmarks: the real UCF101 frames, one-core settings, interleaved timing, `--smoke`."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (/work/main), or beside the worktrees' folder (/work/wt/<name>)
SHARED = next((p for p in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data") if p.is_dir()),
              ROOT.parent / "shared" / "data")
UCF = SHARED / "ucf101_applyeyemakeup"
VIDEOS = SHARED / "videos"


def one_core():
    import cv2
    import torch
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def add_smoke(parser):
    """`--smoke`: the smallest size that still runs every step (tests/test_benchmarks.py); figures mean nothing."""
    parser.add_argument("--smoke", action="store_true",
                        help="smallest size: every step runs once on a few items (a test, not a measurement)")
    return parser


def skip(reason: str):
    """Nothing to measure here (missing data, device or library): say why and finish with exit code 0."""
    print(f"skipped: {reason}")
    sys.exit(0)


def require(path: Path):
    if not path.exists():
        skip(f"{path} not found (the shared real data)")


def ucf_table(limit: int | None = None):
    """vidkit's index table of the 101 real UCF101 clips (340x256 JPEG, 25 frames each); `limit`: the first few."""
    from vidkit.config import load_competition
    from vidkit.data import index_train
    require(UCF)
    yaml = Path(tempfile.mkdtemp()) / "ucf.yaml"
    yaml.write_text(f"name: ucf101_bench\ntrain_dir: {UCF}\ngroup_regex: \"_(g\\\\d+)_\"\n")
    rows = index_train(load_competition(yaml))
    return rows if limit is None else rows.head(limit).reset_index(drop=True)


def race(fns: dict, n_items: int, rounds: int = 3) -> dict:
    """Items/s of each function (each call processes n_items), best of `rounds` interleaved rounds so that
    load from other processes hits every contender alike."""
    best = {k: 0.0 for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = max(best[name], n_items / (time.perf_counter() - start))
    return best


def table(rows: list[tuple], header: tuple):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
