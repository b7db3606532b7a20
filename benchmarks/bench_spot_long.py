"""Spotting inference on a long video: a generated 30-minute 25 fps mp4 through `submit`'s path (decoded once,
streamed through every fold model of a spotting run in overlapping windows), wall time and resident memory.

    python benchmarks/bench_spot_long.py RUN [minutes=30] [size=32]
    python benchmarks/bench_spot_long.py --smoke      (a random-init spot_demo model, a 3-second video)
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


def smoke_run(folder: Path) -> Path:
    """A spotting run folder as `cv` leaves it, with a random-init spot_demo model (timing, not scores)."""
    import json
    from safetensors.torch import save_file
    from vidkit.config import load_config, save_config
    from vidkit.engine.runtime import build_model
    from vidkit.engine.spotting import num_outputs
    cfg = load_config("configs/spot_demo.yaml")
    classes = ["colour", "shape"]
    (folder / "fold0").mkdir(parents=True)
    save_file(build_model(cfg, num_outputs(len(classes), cfg.spot_target)).state_dict(),
              str(folder / "fold0" / "model.safetensors"))
    save_config(cfg, folder / "config.yaml")
    (folder / "run.json").write_text(json.dumps({"classes": classes}))
    return folder


if __name__ == "__main__":
    if "--smoke" in sys.argv[1:]:
        main(str(smoke_run(Path(tempfile.mkdtemp()) / "run")), minutes=0.05, size=32)
    else:
        args = dict(a.split("=", 1) for a in sys.argv[2:])
        main(sys.argv[1], float(args.get("minutes", 30)), int(args.get("size", 32)))
