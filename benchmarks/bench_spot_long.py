"""Spotting inference on a long video: a generated 30-minute 25 fps mp4 through `submit`'s path (decoded once,
streamed through every fold model of a spotting run in overlapping windows), wall time and resident memory.

    python benchmarks/bench_spot_long.py RUN [minutes=30] [size=32]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20


def main(run: str, minutes: float = 30, size: int = 32) -> None:
    import torch
    from vidkit.data.events import index_videos  # noqa: F401  (imports before the baseline)
    from vidkit.data.index import entry_row
    from vidkit.data.layouts import Entry
    from vidkit.engine.spotting import stream_friendly_malloc
    from vidkit.flows import spotting
    from vidkit.spot_demo import FPS, event_frames, render, write_video
    from vidkit.demo import _background
    stream_friendly_malloc()
    n = int(minutes * 60 * FPS)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.mp4"
        start = time.time()
        write_video(path, render(rng, _background(rng, size), n, event_frames(rng, n)), size)
        print(f"wrote {n} frames ({minutes} min at {FPS} fps, {size} px) in {time.time() - start:.0f}s")
        row = {**entry_row(Entry("long", path, "test")), "fps": FPS}
        member = spotting.load_member(Path(run), torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        samples, predict = [], member["predict"]
        member["predict"] = lambda clips: (samples.append(rss_mb()), predict(clips))[1]
        before, start, cpu = rss_mb(), time.time(), time.process_time()
        scores = spotting.predict_video(row, [member], [1.0], "cv2")
        print(f"{len(scores)} frames scored in {time.time() - start:.0f}s wall, {time.process_time() - cpu:.0f}s CPU; "
              f"RSS {before:.0f} MiB before, peak {max(samples):.0f} MiB (+{max(samples) - before:.0f}), at a fifth "
              f"{samples[len(samples) // 5]:.0f} MiB; the video at {size} px would be "
              f"{n * size * size * 3 / 2**20:.0f} MiB")


if __name__ == "__main__":
    args = dict(a.split("=", 1) for a in sys.argv[2:])
    main(sys.argv[1], float(args.get("minutes", 30)), int(args.get("size", 32)))
