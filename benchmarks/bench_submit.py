"""`submit` end to end on raw 1080p H.264 test videos against one sequential cv2 decode of the same videos.

The case of issue 29: two members (tiny R3D-18s at 8x64 and 16x96 px, random weights: decoding, not the model,
should dominate) x 3 TTA clips, six 10 s 1080p H.264 videos. Both sides run in this process, interleaved, best of
`--rounds`; start-up (interpreter, imports) is excluded by a warm-up call of the same `submit` command
(`vidkit.cli.main`), and cv2 keeps its default FFmpeg threading on both sides. `--cores N` pins the process to N
cores (os.sched_setaffinity) where the machine has them. A cProfile of one submit prints where the time goes.
python benchmarks/bench_submit.py [--videos 6] [--seconds 10] [--cores 2] [--rounds 2] [--smoke]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import VIDEOS, add_smoke, require, skip  # noqa: E402

CLASSES = ["a", "b", "c", "d"]


def fake_run(folder: Path, overrides: dict) -> Path:
    """A run folder as `cv` leaves it (config, run.json, one fold checkpoint), with random weights."""
    from safetensors.torch import save_file
    from vidkit.config import load_config
    from vidkit.engine.runtime import build_model
    from vidkit.rundir import RunDir
    cfg = load_config("configs/r3d18_demo.yaml", {"tta_clips": "3", **overrides})
    run = RunDir(folder)
    (folder / "fold0").mkdir(parents=True, exist_ok=True)
    save_file(build_model(cfg, len(CLASSES)).state_dict(), str(folder / "fold0" / "model.safetensors"))
    from vidkit.config import save_config
    save_config(cfg, run.config_yaml)
    run.meta_file.write_text(json.dumps({"classes": CLASSES, "class_counts": {c: 1 for c in CLASSES}}))
    return folder


def competition(tmp: Path, videos: list[Path]) -> Path:
    (tmp / "train" / "a").mkdir(parents=True)
    (tmp / "sample.csv").write_text("id,label\n" + "".join(f"{p.name},a\n" for p in videos))
    yaml = tmp / "bench.yaml"
    yaml.write_text(f"name: bench_submit\ntrain_dir: train\ntest_dir: {videos[0].parent}\n"
                    f"sample_submission: sample.csv\nclasses: {CLASSES}\n")
    return yaml


def sequential_decode(videos: list[Path]) -> float:
    """One plain cv2 decode of every frame of every video, one video after another (cv2's default FFmpeg
    threading; frames dropped as read: nothing kept, nothing converted)."""
    import cv2
    start = time.perf_counter()
    for p in videos:
        cap = cv2.VideoCapture(str(p))
        while cap.read()[0]:
            pass
        cap.release()
    return time.perf_counter() - start


def submit(args: list[str]) -> float:
    from vidkit.cli import main
    start = time.perf_counter()
    assert main(["submit", *args]) == 0
    return time.perf_counter() - start


def profile(args: list[str], top: int = 14):
    from vidkit.cli import main
    prof = cProfile.Profile()
    prof.runcall(main, ["submit", *args])
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    print("\nwhere one submit's time goes (cProfile, cumulative):\n" + out.getvalue().split("\n\n", 2)[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="320x180 videos (the fixed costs stand out)")
    ap.set_defaults(size=(1920, 1080))
    ap.add_argument("--keep", type=Path, help="make the videos in this folder once and reuse them")
    a = add_smoke(ap).parse_args()
    if a.small:
        a.size = (320, 180)
    if a.smoke:
        a.videos, a.seconds, a.rounds, a.size = 1, 1.2, 1, (320, 180)
    require(VIDEOS)
    have = len(os.sched_getaffinity(0))
    if a.cores > have:
        skip(f"--cores {a.cores}: this machine allows {have}")
    if a.cores < have:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:a.cores])
    from bench_decode import make_1080p
    tmp = Path(tempfile.mkdtemp())
    sources = sorted(VIDEOS.glob("*.mp4"))
    test = a.keep or tmp / "test"
    test.mkdir(parents=True, exist_ok=True)
    videos = [test / f"v{k}_{a.seconds:g}s.mp4" for k in range(a.videos)]
    codec = [make_1080p(sources[k % len(sources)], p, a.seconds, a.size) if not p.is_file() else "h264 (kept)"
             for k, p in enumerate(videos)][0]
    runs = [fake_run(tmp / "m1", {}), fake_run(tmp / "m2", {"num_frames": "16", "image_size": "96"})]
    args = [f"comp={competition(tmp, videos)}", f"runs={runs[0]},{runs[1]}", f"out={tmp / 'sub.csv'}"]
    print(f"{a.videos} videos, {a.size[0]}x{a.size[1]}, {a.seconds:g}s at 30 fps, {codec}; {a.cores} cores; "
          f"2 members x 3 TTA clips")
    submit(args)  # warm-up: imports and first-call costs, the start-up a user pays once
    plain, full = [], []
    for _ in range(a.rounds):
        plain.append(sequential_decode(videos))
        full.append(submit(args))
    print(f"submit {min(full):.2f}s = {min(full) / min(plain):.2f}x one sequential cv2 decode "
          f"({min(plain):.2f}s; best of {a.rounds}, start-up excluded)")
    if not a.smoke:
        profile(args)


if __name__ == "__main__":
    main()
