"""DataLoader clips/s against the number of workers (1, 2, ... all cores) over the real UCF101 frames,
16x112 eval clips, batch 8; workers, persistent_workers, pin_memory and prefetch as `loader_settings`
picks them. Steady state: the second pass over the data (persistent workers already started).

    .venv/bin/python benchmarks/bench_workers.py [--smoke]
"""
from __future__ import annotations

import argparse
import os
import time

from common import add_smoke, table, ucf_table
from torch.utils.data import DataLoader

from vidkit.data import VideoDataset, eval_transform, make_sampler
from vidkit.data.dataset import loader_settings
from vidkit.models import InputSpec


def clips_per_s(ds, workers: int, batch: int = 8) -> float:
    settings = loader_settings(len(ds) // batch, gpu=False, workers=workers)
    dl = DataLoader(ds, batch_size=batch, **settings)
    for _ in dl:  # first pass: start the workers
        pass
    start, n = time.perf_counter(), 0
    for b in dl:
        n += len(b["video"])
    return n / (time.perf_counter() - start)


def main():
    smoke = add_smoke(argparse.ArgumentParser()).parse_args().smoke
    rows = ucf_table(8 if smoke else None)
    ds = VideoDataset(rows, make_sampler("multi", 16, 1), eval_transform(112),
                      InputSpec(16, 112, (0.45,) * 3, (0.225,) * 3, "CTHW"), 128, num_clips=2)
    cores = len(os.sched_getaffinity(0))
    counts = [0, 1] if smoke else sorted({0, 1, 2, cores} | ({cores // 2} if cores > 4 else set()))
    speed = {w: clips_per_s(ds, w) for w in counts}
    auto = {g: loader_settings(len(ds) // 8, gpu=g) for g in (True, False)}
    print(f"{len(ds)} clips of 16x112 per pass, batch 8, {cores} cores; auto settings with a GPU: {auto[True]}; without: {auto[False]}\n")
    table([(w if w else "0 (main process)", f"{s:.0f}", f"{s / speed[counts[1]]:.2f}x") for w, s in speed.items()],
          ("workers", "clips/s", "vs 1 worker"))


if __name__ == "__main__":
    main()
