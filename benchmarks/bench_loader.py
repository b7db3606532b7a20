"""Clip loading on one core over the real UCF101 frames (340x256 JPEG), 16-frame clips, side by side:

- seed-style: PIL open + torchvision per-frame Resize/CenterCrop/ToTensor/Normalize (train: Resize/
  RandomResizedCrop/flip/ColorJitter with the clip's parameters replayed per frame), then stack;
- decode-only: cv2.imread of the same 16 frames at full size, nothing else;
- vidkit: VideoDataset items, collated in batches of 8, as training and evaluation use them (uint8
  (T, H, W, C), normalised per batch on the device by `vidkit.data.normalize`); the same from the frame
  cache (built once here in a temp dir; its size is reported); for reference, items normalised to float
  in the loader;
- the batched normalisation itself (uint8 batch of 8 clips -> float in the model layout), per clip, on this
  CPU: on a GPU it runs there, on a CPU-only machine it runs once per batch in the training process.

    .venv/bin/python benchmarks/bench_loader.py [--rounds 3] [--smoke]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from torch.utils.data import default_collate
from common import add_smoke, one_core, race, table, ucf_table
from PIL import Image
from torchvision import transforms as T

from vidkit.data import VideoDataset, eval_transform, make_sampler, normalize, short_side, train_transform
from vidkit.data.cache import attach_cache, cache_root, cache_size
from vidkit.models import InputSpec

MEAN, STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
FRAMES = 16


def seed_style(paths_per_clip, size: int, train: bool):
    short = short_side(size)
    if train:
        steps = [T.Resize(short), T.RandomResizedCrop(size, scale=(0.4, 1.0)), T.RandomHorizontalFlip(),
                 T.ColorJitter(0.3, 0.3, 0.3, 0.05)]
    else:
        steps = [T.Resize(short), T.CenterCrop(size)]
    tf = T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])

    def run():
        for k, paths in enumerate(paths_per_clip):
            frames = []
            for p in paths:
                torch.manual_seed(k)  # the same random parameters for every frame of a clip
                frames.append(tf(Image.open(p).convert("RGB")))
            torch.stack(frames)
    return run


def decode_only(paths_per_clip):
    import cv2

    def run():
        for paths in paths_per_clip:
            [cv2.imread(str(p)) for p in paths]
    return run


def vidkit_items(ds, batch: int = 8):
    """Items collated into batches as the DataLoader does (the copy out of a crop view happens there)."""
    def run():
        for start in range(0, len(ds), batch):
            default_collate([ds[i] for i in range(start, min(start + batch, len(ds)))])
    return run


def batched_normalize(ds, batch: int = 8):
    clips = torch.stack([ds[i]["video"] for i in range(batch)])
    spec = ds.spec

    def run():
        for _ in range(0, len(ds), batch):
            normalize(clips, spec.mean, spec.std, spec.layout)
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = add_smoke(ap).parse_args()
    one_core()
    rows = ucf_table(8 if args.smoke else None)
    settings = (("eval 112", 112, False), ("eval 224", 224, False), ("train 112", 112, True))
    if args.smoke:
        args.rounds, settings = 1, settings[2:]
    sampler = make_sampler("multi", FRAMES, 1)
    paths = [[Path(r["path"]) / r["files"][i] for i in sampler(r["n_frames"])] for r in rows.to_dict("records")]
    n = len(paths)
    tmp = Path(tempfile.mkdtemp())
    results, ratios = [], []
    try:
        for name, size, train in settings:
            short = short_side(size)
            spec = InputSpec(FRAMES, size, MEAN, STD, "CTHW")
            tf = train_transform(size) if train else eval_transform(size)
            ds = VideoDataset(rows, sampler, tf, spec, short, normalize=False)
            ds_float = VideoDataset(rows, sampler, tf, spec, short)
            root = cache_root("ucf101_bench", short, str(tmp / str(short)))
            cached = VideoDataset(rows, sampler, tf, spec, short, normalize=False)
            cached.rows = attach_cache(cached.rows, short, root)
            seed, decode = "seed-style", "decode-only (cv2, full size)"
            fns = {seed: seed_style(paths, size, train), decode: decode_only(paths),
                   "vidkit": vidkit_items(ds), "vidkit from cache": vidkit_items(cached),
                   "vidkit, float in the loader": vidkit_items(ds_float),
                   "(batched normalise alone)": batched_normalize(ds)}
            speed = race(fns, n, args.rounds)
            for k, v in speed.items():
                results.append((name, k, f"{v:.0f}"))
            per_1000 = cache_size(cached.rows) / len(cached.rows) * 1000 / 2**30
            ratios.append((name, f"{speed['vidkit'] / speed[seed]:.1f}x", f"{speed['vidkit'] / speed[decode]:.2f}x",
                           f"{speed['vidkit from cache'] / speed[seed]:.1f}x",
                           f"{speed['vidkit, float in the loader'] / speed[decode]:.2f}x",
                           f"{per_1000:.2f} GiB (short side {short})"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"16-frame clips/s on one core, {n} real UCF101 clips, best of {args.rounds} interleaved rounds\n")
    table(results, ("transform", "loader", "clips/s"))
    print()
    table(ratios, ("transform", "vidkit / seed", "vidkit / decode", "cache / seed", "float in loader / decode",
                   "cache per 1000 clips (25-frame videos)"))


if __name__ == "__main__":
    main()
