"""Raw 1080p H.264 test videos: video backends side by side (CPU, one thread), and submit's shared decoding.

Makes a few 1080p H.264 clips by upscaling the real mp4s in ../shared/data/videos (PyAV's libx264;
else cv2's mp4v, then not H.264: said so), then prints
- per backend: one 16-frame clip (stride 2, the centre of the video) and a full sequential decode, frames/s;
- one clip through the eval transform (TTADataset, 1 clip, centre crop) vs the bare decode of the same frames;
- `ensemble` (submit's prediction step) with 2 tiny members x 3 TTA clips, shared decoding vs members one at a
  time, each as a multiple of one sequential cv2 decode of every test video.
python benchmarks/bench_decode.py [--videos 3] [--seconds 4] [--smoke]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "threads;1")  # cv2's FFmpeg: one decoding thread
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import VIDEOS, add_smoke, one_core, require, table  # noqa: E402


def make_1080p(src: Path, out: Path, seconds: float, size: tuple[int, int] = (1920, 1080)) -> str:
    """`src` upscaled to 1920x1080 (or `size`; its frames looped to `seconds` at 30 fps); the codec used."""
    import cv2
    cap, frames = cv2.VideoCapture(str(src)), []
    while len(frames) < seconds * 30:
        ok, f = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        frames.append(cv2.resize(f, size, interpolation=cv2.INTER_LINEAR))
    try:
        import av
        with av.open(str(out), "w") as box:
            stream = box.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast", "g": "60"}
            for f in frames:
                box.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")))
            box.mux(stream.encode())
        return "h264 (libx264, GOP 60)"
    except ImportError:
        w = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
        for f in frames:
            w.write(f)
        w.release()
        return "mp4v (no PyAV: not H.264)"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def backends_table(paths: list[Path]):
    from vidkit.data.media import probe
    from vidkit.data.video_backends import BACKENDS, available, decode
    rows = []
    for name in BACKENDS:
        if available(name):
            rows.append((name, "not available", available(name)[:60], ""))
            continue
        n = [probe(p)[0] for p in paths]
        clips = [list(range(k // 2 - 16, k // 2 + 16, 2)) for k in n]
        decode(paths[0], clips[0], name)  # warm-up
        clip_s = timed(lambda: [decode(p, c, name) for p, c in zip(paths, clips)])
        full_s = timed(lambda: [decode(p, range(k), name) for p, k in zip(paths, n)])
        rows.append((name, f"{16 * len(paths) / clip_s:.1f}", f"{sum(n) / full_s:.1f}", f"{clip_s / len(paths):.3f}"))
    rows.append(decord_row(paths))
    table(rows, ("backend", "clip frames/s", "full decode frames/s", "s per centre clip"))


def decord_row(paths: list[Path]) -> tuple:
    """decord2 (`pip install decord2`; not a vidkit backend), an anchor on the same clips: one thread, RGB out."""
    try:
        import decord
    except ImportError as e:
        return ("decord2", "not available", f"{type(e).__name__}: pip install decord2"[:60], "")
    readers = [decord.VideoReader(str(p), num_threads=1) for p in paths]
    n = [len(r) for r in readers]
    clips = [list(range(k // 2 - 16, k // 2 + 16, 2)) for k in n]
    readers[0].get_batch(clips[0]).asnumpy()  # warm-up
    clip_s = timed(lambda: [decord.VideoReader(str(p), num_threads=1).get_batch(c).asnumpy()
                            for p, c in zip(paths, clips)])
    full_s = timed(lambda: [decord.VideoReader(str(p), num_threads=1).get_batch(list(range(k))).asnumpy()
                            for p, k in zip(paths, n)])
    return ("decord2", f"{16 * len(paths) / clip_s:.1f}", f"{sum(n) / full_s:.1f}", f"{clip_s / len(paths):.3f}")


def transform_ratio(paths: list[Path], rounds: int = 5):
    """One clip of each video through the eval transform (TTADataset) vs the bare decode of the same frames."""
    from vidkit.data.index import media_row
    from vidkit.data.media import read_clip
    from vidkit.models import InputSpec
    from vidkit.engine.tta import TTADataset, TTASpec
    import pandas as pd
    rows = [media_row(p) for p in paths]
    spec = InputSpec(16, 224, (0.45, 0.45, 0.45), (0.225, 0.225, 0.225), "CTHW")
    ds = TTADataset(pd.DataFrame(rows), spec, TTASpec(clips=1))
    idx = [ds.clip_indices(r)[0] for r in rows]
    bare, full = [], []
    for _ in range(rounds):  # interleaved, best round of each kept
        bare.append(timed(lambda: [read_clip(r, i) for r, i in zip(rows, idx)]))
        full.append(timed(lambda: [ds[k] for k in range(len(rows))]))
    bare, full = min(bare), min(full)
    print(f"\none 16x224 clip per video through the eval transform: {full / bare:.2f}x the bare cv2 decode "
          f"({full / len(rows):.3f}s vs {bare / len(rows):.3f}s per video)")


def tiny_member(tmp: Path, name: str, overrides: dict):
    """A member with a random-init tiny R3D-18 checkpoint (decoding, not the model, should dominate)."""
    from safetensors.torch import save_file
    from vidkit.config import load_config
    from vidkit.flows.infer import Member
    from vidkit.engine.runtime import build_model
    from vidkit.engine.tta import tta_spec
    cfg = load_config("configs/r3d18_demo.yaml", {"tta_clips": "3", "num_workers": "0", **overrides})
    (tmp / name).mkdir()
    save_file(build_model(cfg, 4).state_dict(), str(tmp / name / "model.safetensors"))
    return Member(tmp / name, 1.0, cfg, ["a", "b", "c", "d"], [tmp / name / "model.safetensors"], tta_spec(cfg))


def submit_ratio(paths: list[Path], tmp: Path):
    import pandas as pd
    from vidkit.data.index import media_row
    from vidkit.data.video_backends import decode
    from vidkit.flows.infer import ensemble
    from vidkit.data.media import probe
    members = [tiny_member(tmp, "m1", {}), tiny_member(tmp, "m2", {"num_frames": "16", "image_size": "96"})]
    test = pd.DataFrame([media_row(p) for p in paths])
    classes = ["a", "b", "c", "d"]
    sequential = timed(lambda: [decode(p, range(probe(p)[0]), "cv2") for p in paths])
    shared = timed(lambda: ensemble(members, test, classes))
    apart = timed(lambda: ensemble(members, test, classes, shared=False))
    print(f"\nensemble of 2 members (8x64 and 16x96 px) x 3 TTA clips over {len(paths)} videos: "
          f"shared decoding {shared:.1f}s = {shared / sequential:.2f}x one sequential cv2 decode "
          f"({sequential:.1f}s); members one at a time {apart:.1f}s = {apart / sequential:.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = add_smoke(ap).parse_args()
    size = (320, 180) if args.smoke else (1920, 1080)
    if args.smoke:  # 36 frames: a 16-frame clip at stride 2 around the centre fits
        args.videos, args.seconds = 1, 1.2
    require(VIDEOS)
    one_core()
    tmp = Path(tempfile.mkdtemp())
    sources = sorted(VIDEOS.glob("*.mp4"))
    paths = [tmp / f"v{k}.mp4" for k in range(args.videos)]
    codec = [make_1080p(sources[k % len(sources)], p, args.seconds, size) for k, p in enumerate(paths)][0]
    print(f"{len(paths)} videos, {size[0]}x{size[1]}, {args.seconds:g}s at 30 fps, {codec}; one thread\n")
    backends_table(paths)
    transform_ratio(paths, rounds=1 if args.smoke else 5)
    submit_ratio(paths, tmp)


if __name__ == "__main__":
    main()
