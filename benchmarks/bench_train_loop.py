"""vidkit's training step against a plain PyTorch loop: the loop's own overhead (CPU, one process, AMP off).

Both train the same model (a narrow R3D-18 at 8x64 px, the same initial weights), on the same batches already
in memory (uint8 clips, normalised in the loop as vidkit does), with the same AdamW, schedule, loss and gradient
clipping; vidkit's side is `vidkit.engine.train.train_one_epoch` on a `Fold` prepared by accelerate (accumulate,
the NaN guard, max-steps/time checks, the progress bar, the data-wait clock). Rounds interleave; best of each.
Target: at most 1.05x.
python benchmarks/bench_train_loop.py [--batches 20] [--rounds 3] [--smoke]
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_smoke, one_core  # noqa: E402


def setup(batches: int):
    import torch
    from vidkit.config import load_config
    from vidkit.engine.runtime import build_model
    cfg = load_config("configs/r3d18_demo.yaml", {"num_frames": "8", "image_size": "64", "model_args.width": "16",
                                                  "batch_size": "4", "mixed_precision": "no", "epochs": "1"})
    model = build_model(cfg, 4)
    g = torch.Generator().manual_seed(0)
    data = [{"video": torch.randint(0, 256, (4, 8, 64, 64, 3), dtype=torch.uint8, generator=g),
             "label": torch.randint(0, 4, (4,), generator=g)} for _ in range(batches)]
    return cfg, model, data


def vidkit_epoch(cfg, model, data) -> float:
    import torch
    from torch.utils.data import DataLoader
    from vidkit.engine import train
    from vidkit.engine.optim import make_scheduler, param_groups
    from vidkit.engine.runtime import make_accelerator
    acc = make_accelerator(cfg)
    model = copy.deepcopy(model)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.lr), lr=cfg.lr)
    sched = make_scheduler(cfg.scheduler, opt, 2, len(data))
    dl = DataLoader(data, batch_size=None, shuffle=False)
    model, opt, dl, sched = acc.prepare(model, opt, dl, sched)
    run = train.Fold(cfg, acc, model, opt, sched, dl, None, None, train.make_loss(cfg, None), None, None,
                     train.Progress(), True, Path("."))
    start = time.perf_counter()
    train.train_one_epoch(run, 0)
    return time.perf_counter() - start


def plain_epoch(cfg, model, data) -> float:
    import torch
    from vidkit.data.transforms import normalize
    from vidkit.engine.optim import make_scheduler, param_groups
    model = copy.deepcopy(model).train()
    spec = model.input_spec
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.lr), lr=cfg.lr)
    sched = make_scheduler(cfg.scheduler, opt, 2, len(data))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    start = time.perf_counter()
    for batch in data:
        video = normalize(batch["video"], spec.mean, spec.std, spec.layout)
        loss = loss_fn(model(video), batch["label"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad()
        loss.item()
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    a = add_smoke(ap).parse_args()
    if a.smoke:
        a.batches, a.rounds = 2, 1
    one_core()
    cfg, model, data = setup(a.batches)
    plain_epoch(cfg, model, data[:2])  # warm-up: first-call allocations on both sides
    vidkit_epoch(cfg, model, data[:2])
    times = {"plain": [], "vidkit": []}
    for _ in range(a.rounds):
        times["plain"].append(plain_epoch(cfg, model, data))
        times["vidkit"].append(vidkit_epoch(cfg, model, data))
    p, v = min(times["plain"]), min(times["vidkit"])
    print(f"{a.batches} batches of 4 x 8x64x64 clips, narrow R3D-18, one core, AMP off, best of {a.rounds}:")
    print(f"plain PyTorch loop {p / a.batches * 1000:.1f} ms/step, vidkit train_one_epoch "
          f"{v / a.batches * 1000:.1f} ms/step: {v / p:.3f}x (target <= 1.05x)")
    if not math.isfinite(v / p):
        sys.exit(1)


if __name__ == "__main__":
    main()
