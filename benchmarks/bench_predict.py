"""Inference throughput: vidkit's predict (TTADataset + DataLoader + batched views) against the bare model's
forward on the same clips already in memory, with a tiny R3D on CPU, over the real UCF101 frames.
The loader should never be the bottleneck: the target is predict >= 0.9x bare forward.

    .venv/bin/python benchmarks/bench_predict.py [--width 16] [--clips 1] [--smoke]
"""
from __future__ import annotations

import argparse
import time

import torch
from common import add_smoke, table, ucf_table

from vidkit.config import load_config
from vidkit.data import normalize
from vidkit.engine.runtime import build_model, make_accelerator
from vidkit.engine.tta import TTASpec, eval_dataset, eval_loader, predict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--clips", type=int, default=1)
    ap.add_argument("--workers", type=int, default=-1, help="DataLoader workers (-1: vidkit picks)")
    args = add_smoke(ap).parse_args()
    frames, size = (4, 32) if args.smoke else (16, 112)
    cfg = load_config(None, {"model": "r3d_18", "num_frames": str(frames), "image_size": str(size),
                             "model_args.width": str(args.width), "batch_size": "8",
                             "num_workers": str(args.workers)})
    model = build_model(cfg, 2).eval()
    accelerator = make_accelerator(cfg)
    rows = ucf_table(4 if args.smoke else None)
    ds = eval_dataset(cfg, model.input_spec, rows, tta=TTASpec(clips=args.clips))
    clips = torch.cat([ds[i]["video"] for i in range(len(ds))])  # the same clips, made once
    if clips.dtype == torch.uint8:
        spec = model.input_spec
        clips = normalize(clips, spec.mean, spec.std, spec.layout)
    batch = (cfg.eval_batch_size or 2 * cfg.batch_size)

    def bare():
        with torch.no_grad():
            for i in range(0, len(clips), batch):
                model(clips[i:i + batch])

    def vidkit():
        predict(model, eval_loader(cfg, ds), accelerator, len(ds), desc="predict")

    bare()  # warm-up
    speed = {}
    for _ in range(2):
        for name, fn in (("bare forward on pre-made tensors", bare), ("vidkit predict (decode + forward)", vidkit)):
            start = time.perf_counter()
            fn()
            speed[name] = max(speed.get(name, 0), len(clips) / (time.perf_counter() - start))
    print(f"{len(clips)} clips {frames}x{size}, r3d_18 width {args.width}, batch {batch}, "
          f"{torch.get_num_threads()} torch threads, loader: {eval_loader(cfg, ds).num_workers} workers\n")
    table([(k, f"{v:.1f}") for k, v in speed.items()], ("path", "clips/s"))
    names = list(speed)
    print(f"\npredict / bare forward: {speed[names[1]] / speed[names[0]]:.2f}x")


if __name__ == "__main__":
    main()
