"""GPU throughput (CUDA only; on a machine without one it says so and exits 0).

Model side: training and inference clips/s, peak memory and MFU for VideoMAE-B (16x224, SDPA attention) and
R3D-18 (16x112, channels_last_3d) at a few batch sizes, bf16 autocast, optional torch.compile.
MFU = model FLOPs per second (torch's FlopCounterMode on one forward; training = 3x forward) / the GPU's
dense bf16 peak (H100 SXM / H200: 989 TFLOPs, H100 PCIe: 756; --peak-tflops to override).

Data side: frames/s of CPU JPEG decode with all cores, of batched GPU decode
(torchvision.io.decode_jpeg(device="cuda")) and of the frame cache, against the frames/s the VideoMAE-B
training step consumes.

    .venv/bin/python benchmarks/bench_gpu.py [--compile] [--steps 10] [--models videomae,r3d_18] [--smoke]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from common import UCF, add_smoke, skip, table

BATCHES = {"videomae": (4, 8, 16), "r3d_18": (8, 16, 32)}
SHAPES = {"videomae": (16, 224), "r3d_18": (16, 112)}


def peak_tflops(name: str) -> float:
    name = name.lower()
    if "h100" in name and "pcie" in name:
        return 756.0
    if "h100" in name or "h200" in name or "gh200" in name:
        return 989.0
    if "a100" in name:
        return 312.0
    if "l4" in name:
        return 121.0
    return float("nan")


def make(name: str, compile_: bool):
    """The model as vidkit's training puts it on the GPU (`to_device`: channels_last_3d for 3D CNNs)."""
    from vidkit.models import create_model
    from vidkit.engine.runtime import to_device
    frames, size = SHAPES[name]
    model = to_device(create_model(name, num_classes=400, num_frames=frames, image_size=size), "cuda")
    return (torch.compile(model) if compile_ else model), model.input_spec


def clip_batch(spec, batch: int) -> torch.Tensor:
    """A batch as the loader delivers it (uint8 (B, T, H, W, C)) and vidkit normalises it on the GPU."""
    from vidkit.data import normalize
    x = torch.randint(0, 256, (batch, spec.num_frames, spec.size, spec.size, 3), dtype=torch.uint8, device="cuda")
    return normalize(x, spec.mean, spec.std, spec.layout)


def forward_flops(model, spec) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16), FlopCounterMode(display=False) as counter:
        model(clip_batch(spec, 1))
    return float(counter.get_total_flops())


def timed(fn, steps: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def bench_model(name: str, args, peak: float) -> list[tuple]:
    model, spec = make(name, args.compile)
    flops = forward_flops(model, spec)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    rows = []
    for batch in BATCHES[name]:
        x, y = clip_batch(spec, batch), torch.randint(0, 400, (batch,), device="cuda")

        def train_step():
            with torch.autocast("cuda", torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        @torch.no_grad()
        def infer_step():
            with torch.autocast("cuda", torch.bfloat16):
                model(x)

        try:
            torch.cuda.reset_peak_memory_stats()
            t_train = timed(train_step, args.steps)
            mem = torch.cuda.max_memory_allocated() / 2**30
            t_infer = timed(infer_step, args.steps)
        except torch.OutOfMemoryError:
            rows.append((name, batch, "OOM", "", "", "", ""))
            torch.cuda.empty_cache()
            continue
        train_cps, infer_cps = batch / t_train, batch / t_infer
        rows.append((name, batch, f"{train_cps:.1f}", f"{infer_cps:.1f}", f"{mem:.1f}",
                     f"{100 * 3 * flops * train_cps / (peak * 1e12):.1f}%",
                     f"{100 * flops * infer_cps / (peak * 1e12):.1f}%"))
    del model, opt
    torch.cuda.empty_cache()
    return rows


def _decode_files(paths):
    import simplejpeg
    for p in paths:
        simplejpeg.decode_jpeg(Path(p).read_bytes())
    return len(paths)


def data_side(n_files: int = 1600) -> list[tuple]:
    """Frames/s: CPU decode (all cores), GPU batched decode, frame cache reads (16-frame clips at 224)."""
    import numpy as np
    from torchvision.io import decode_jpeg

    from vidkit.data.cache import attach_cache
    files = sorted(UCF.rglob("*.jpg"))[:n_files]
    cores = len(os.sched_getaffinity(0))
    chunks = [files[i::cores * 4] for i in range(cores * 4)]
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_decode_files, chunks))  # warm-up
        start = time.perf_counter()
        list(pool.map(_decode_files, chunks))
        cpu = len(files) / (time.perf_counter() - start)
    data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in files]
    decode_jpeg(data[:64], device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(data), 256):
        decode_jpeg(data[i:i + 256], device="cuda")
    torch.cuda.synchronize()
    gpu = len(files) / (time.perf_counter() - start)
    from common import ucf_table
    tmp = Path(tempfile.mkdtemp())
    try:
        rows = attach_cache(ucf_table().to_dict("records"), 256, tmp)
        start, n = time.perf_counter(), 0
        for r in rows * 4:
            np.asarray(np.load(r["cache"], mmap_mode="r")[np.arange(16) + 4])
            n += 16
        cache = n / (time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [(f"CPU decode, simplejpeg, {cores} processes", f"{cpu:.0f}"),
            ("GPU decode, torchvision decode_jpeg(device='cuda'), batches of 256", f"{gpu:.0f}"),
            ("frame cache (short side 256), one process", f"{cache:.0f}")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--models", default="videomae,r3d_18")
    ap.add_argument("--peak-tflops", type=float, default=None)
    args = add_smoke(ap).parse_args()
    if not torch.cuda.is_available():
        skip("bench_gpu: no CUDA device on this machine; nothing measured (run it on a GPU machine)")
    if args.smoke:  # R3D-18 at its smallest batch, 2 steps; no data side
        args.steps, args.models = 2, "r3d_18"
        BATCHES["r3d_18"] = BATCHES["r3d_18"][:1]
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name()
    peak = args.peak_tflops or peak_tflops(gpu)
    print(f"{gpu}, bf16 dense peak {peak:.0f} TFLOPs, torch {torch.__version__}, compile={args.compile}\n")
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name, args, peak)
    table(rows, ("model", "batch", "train clips/s", "infer clips/s", "peak GiB (train)", "train MFU", "infer MFU"))
    best = max((float(r[2]) for r in rows if r[0] == "videomae" and r[2] != "OOM"), default=0.0)
    if UCF.is_dir() and not args.smoke:
        print()
        table(data_side(), ("data source", "frames/s"))
        print(f"\nthe VideoMAE-B training step consumes {best * 16:.0f} frames/s ({best:.1f} clips/s x 16 frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
