"""Own masked-autoencoding pretraining (`vidkit pretrain`) against training from scratch, label-scarce (issue 28).

Protocol (printed with the results): the competition's own folds; in each fold a fixed fraction of the training
videos keep their labels (stratified by class, drawn per fold and seed, the same draw for both arms) and every
validation video is scored. Both arms fine-tune the same config with the same budget (epochs, batch, lr, TTA);
the `own` arm starts from `pretrain` on every training video of the competition (labels unused: the validation
videos are among them, as in any competition where pretraining sees all its unlabelled data), the `scratch` arm
from random weights. Several seeds (the seed draws the labelled subset, the initialisation and the augmentation);
mean and spread of the fold-averaged accuracy; the CPU seconds each arm took.

    .venv/bin/python benchmarks/bench_pretrain.py                  # the demo, then real UCF101 footage
    .venv/bin/python benchmarks/bench_pretrain.py --data demo --seeds 0,1,2 --fraction 0.25 --pretrain-epochs 40
    .venv/bin/python benchmarks/bench_pretrain.py --data ucf --clips 60 --fraction 1
    .venv/bin/python benchmarks/bench_pretrain.py --smoke          # the smallest end-to-end run (a minute or two)

`ucf`: the 101 real ApplyEyeMakeup clips of ../shared/data as a two-class task, forward vs time-reversed (each
clip once each way; a clip's two copies share its actor group, so they never straddle folds): a task that needs
motion, where one frame tells nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import UCF, one_core, require, table

from vidkit.config import load_competition, load_config
from vidkit.demo import make_demo
from vidkit.engine.runtime import make_accelerator
from vidkit.engine.train import train_fold
from vidkit.flows.cv import prepare_run
from vidkit.flows.pretrain import pretrained_folder, run_pretrain


def ucf_competition(root: Path, clips: int | None) -> Path:
    """forward/<clip>/ (the frames) and reversed/<clip>_rev/ (the same frames, last first), as symlinks."""
    require(UCF)
    meta = pd.read_csv(UCF / "meta.csv").sort_values("video_id")
    if clips:  # whole groups first, so a small set still has several groups per fold
        meta = meta.groupby("group", group_keys=False).head(max(1, clips // meta["group"].nunique() + 1)).head(clips)
    for vid in meta["video_id"]:
        frames = sorted((UCF / "ApplyEyeMakeup" / vid).glob("*.jpg"))
        for label, name, order in (("forward", vid, frames), ("reversed", f"{vid}_rev", frames[::-1])):
            folder = root / "data" / label / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, src in enumerate(order, 1):
                (folder / f"{i:05d}.jpg").symlink_to(src)
    yaml = root / "ucf_reversal.yaml"
    yaml.write_text("name: ucf_reversal\ntrain_dir: data\ngroup_regex: \"_(g\\\\d+)_\"\nn_folds: 4\n")
    return yaml


def scarce(table_: pd.DataFrame, fold: int, fraction: float, seed: int) -> pd.DataFrame:
    """Fold `fold`'s validation videos, plus `fraction` of its training videos per class (at least one)."""
    val, train = table_[table_["fold"] == fold], table_[table_["fold"] != fold]
    keep = [g.sample(max(1, round(fraction * len(g))), random_state=seed * 1000 + fold)
            for _, g in train.groupby("label")]
    return pd.concat([val, *keep]).reset_index(drop=True)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def finetune(config: str, comp, overrides: dict, out: Path, seed: int, folds: list[int], fraction: float,
             pretrained: str | None) -> tuple[list[float], float]:
    """Fold accuracies of one arm and seed, and the CPU seconds it took."""
    cfg = load_config(config, {**overrides, "comp": comp.path, "out_dir": str(out), "seed": str(seed),
                               "pretrained": pretrained or "null"})
    start = cpu_seconds()
    accelerator = make_accelerator(cfg, out)
    comp, full, classes, run = prepare_run(cfg, accelerator, comp)
    scores = []
    for k in folds:
        oof = train_fold(cfg, comp, scarce(full, k, fraction, seed), classes, k, run.fold(k), accelerator)
        y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        scores.append(float((oof[classes].to_numpy().argmax(1) == y).mean()))
    return scores, cpu_seconds() - start


def compare(name: str, comp_yaml: Path, args, overrides: dict, work: Path) -> dict:
    comp = load_competition(comp_yaml)
    folds = list(range(comp.n_folds)) if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    start = cpu_seconds()
    pre = Path(args.pretrained) if args.pretrained else run_pretrain(load_config(args.config, {
        **overrides, "comp": str(comp_yaml), "out_dir": str(work / "pre"), "epochs": str(args.pretrain_epochs),
        "lr": str(args.pretrain_lr), "mask_ratio": str(args.mask_ratio),
        **dict(kv.split("=", 1) for kv in args.pretrain_args.split())}), comp)
    pre_seconds = cpu_seconds() - start  # 0 for a reused run (its own run.json has the time it took)
    losses = [json.loads(line)["train_loss"] for line in (pre / "metrics.jsonl").read_text().splitlines()]
    arms = {"scratch": None, "own": str(pretrained_folder(pre))}
    results = {arm: {"acc": [], "seconds": 0.0} for arm in arms}
    for seed in seeds:
        for arm, pretrained in arms.items():
            scores, seconds = finetune(args.config, comp, overrides, work / f"{arm}-{seed}", seed, folds,
                                       args.fraction, pretrained)
            results[arm]["acc"].append(float(np.mean(scores)))
            results[arm]["seconds"] += seconds
            print(f"{name} seed {seed} {arm}: accuracy {np.mean(scores):.3f} (folds {np.round(scores, 3).tolist()})",
                  flush=True)
    meta = json.loads((pre / "run.json").read_text())
    n_videos = sum(meta["videos"].values())
    baseline = meta.get("constant_baseline_loss")  # the loss of predicting a constant (runs since issue 28's fix)
    versus = (f" (reconstruction.png clips: {meta['final_reconstruction_loss']:.4f} against {baseline:.4f} for a "
              "constant prediction)") if baseline else ""
    protocol = (f"{name}: {comp.n_folds} grouped folds ({', '.join(map(str, folds))} scored), {args.fraction:.0%} of "
                f"each training fold's labels (stratified, drawn per fold and seed), seeds {seeds}; config "
                f"{args.config} {' '.join(f'{k}={v}' for k, v in overrides.items())}; pretraining "
                + (f"reused from {pre}" if args.pretrained else f"{args.pretrain_epochs} epochs at lr "
                   f"{args.pretrain_lr}, mask_ratio {args.mask_ratio} {args.pretrain_args}".rstrip())
                + f", on all {n_videos} training videos (labels unused), loss {losses[0]:.3f} -> {losses[-1]:.3f}"
                + versus)
    return {"protocol": protocol, "pretrain_seconds": pre_seconds, "pretrain_loss": [losses[0], losses[-1]],
            "results": results, "n_videos": n_videos}


def report(out: dict) -> None:
    print("\nprotocol:", out["protocol"])
    rows = []
    for arm, r in out["results"].items():
        extra = out["pretrain_seconds"] if arm == "own" else 0.0
        rows.append((arm, f"{np.mean(r['acc']):.3f} ± {np.std(r['acc']):.3f}", " ".join(f"{a:.3f}" for a in r["acc"]),
                     f"{r['seconds']:.0f}", f"{extra:.0f}"))
    table(rows, ("arm", "accuracy (mean ± sd over seeds)", "per seed", "fine-tune CPU s", "pretrain CPU s"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="demo,ucf", help="demo, ucf or both (comma-separated)")
    ap.add_argument("--config", default="configs/videomae_demo.yaml")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--folds", default="all", help="which folds to score (comma-separated) or all")
    ap.add_argument("--fraction", type=float, default=0.25, help="labelled fraction of each training fold")
    ap.add_argument("--epochs", type=int, default=16, help="fine-tuning epochs (both arms)")
    ap.add_argument("--pretrain-epochs", type=int, default=40)
    ap.add_argument("--pretrain-lr", type=float, default=1.5e-4,
                    help="1.5e-3 (the default before issue 28's diagnosis) drove the demo's encoder to chance")
    ap.add_argument("--mask-ratio", type=float, default=0.9)
    ap.add_argument("--clips", type=int, default=None, help="ucf: use this many real clips (default all 101)")
    ap.add_argument("--ucf-fraction", type=float, default=None, help="ucf: labelled fraction (default --fraction)")
    ap.add_argument("--smoke", action="store_true", help="smallest run: 1 seed, 1 fold, 1+1 epochs, few videos")
    ap.add_argument("--json", default=None, help="write the results here too")
    ap.add_argument("--finetune-args", default="", help="config key=value pairs for both arms' fine-tuning")
    ap.add_argument("--pretrain-args", default="",
                    help="config key=value pairs for pretraining, e.g. norm_pix_loss=false")
    ap.add_argument("--pretrained", default=None, help="reuse this pretraining run folder (of the same data)")
    args = ap.parse_args()
    if args.smoke:
        args.seeds, args.folds, args.epochs, args.pretrain_epochs, args.clips = "0", "0", 1, 1, args.clips or 16
    one_core()
    work = Path(tempfile.mkdtemp(prefix="bench_pretrain-"))
    base = {"num_workers": "0", "epochs": str(args.epochs), "mixed_precision": "no",
            **dict(kv.split("=", 1) for kv in args.finetune_args.split())}
    results = {}
    for name in args.data.split(","):
        if name == "demo":
            comp = make_demo(work / "demo" / "data", work / "demo" / "competition" / "demo.yaml",
                             **({"n_groups": 6, "per_group": 4, "n_test": 4, "n_folds": 3} if args.smoke else {}))
            results[name] = compare(name, comp, args, base, work / "demo")
        elif name == "ucf":
            fraction = args.fraction
            args.fraction = args.ucf_fraction if args.ucf_fraction is not None else fraction
            comp = ucf_competition(work / "ucf", args.clips)
            results[name] = compare(name, comp, args, base, work / "ucf")
            args.fraction = fraction
        else:
            raise SystemExit(f"--data: {name!r} is not demo or ucf")
        report(results[name])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    start = time.time()
    main()
    print(f"\n{time.time() - start:.0f}s wall in all")
