"""Features once, heads in seconds (issue 24), side by side in one run on the demo competition:

1. a 5-fold end-to-end `cv` of the backbone (configs/r3d18_demo.yaml) -> its OOF score and wall time;
2. `embed run=` that run: fold-aligned features (fold k's checkpoint embeds every video; the head of fold k
   reads only those) -> wall time;
3. a 5-fold head `cv` on the cached features for the same epochs (attentive probe, linear probe) -> OOF score
   and wall time, and the speed-up over step 1;
4. a 20-trial `tune` of the attentive probe on the cached features (fold 0 per trial) -> wall time against step 1.

Targets: head cv >= 30x faster than the end-to-end cv; 20-trial tune < one end-to-end cv; attentive probe OOF
within 0.02 of the end-to-end OOF.

    .venv/bin/python benchmarks/bench_heads.py [--epochs 6] [--trials 20] [--smoke]

`--smoke`: the smallest run that goes through every step (tiny competition, 1 epoch, 2 trials).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import ROOT, table

from vidkit.config import load_config
from vidkit.demo import make_demo
from vidkit.flows.cv import run_cv
from vidkit.flows.embed import run_embed
from vidkit.flows.tune import run_tune

TINY = {"num_frames": "4", "image_size": "32", "model_args.width": "8", "batch_size": "8", "tta_clips": "2"}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def score(run: Path) -> float:
    return json.loads((run / "cv_report.json").read_text())["score"]


def fold_s(run: Path) -> float:
    """The folds' training + OOF time (run.json's provenance), without the report, plots and gallery."""
    return sum(json.loads((run / "run.json").read_text())["provenance"]["fold_seconds"].values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="configs/r3d18_demo.yaml")
    ap.add_argument("--epochs", default=None, help="default: the backbone config's")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    args.backbone = str(Path(args.backbone).resolve())
    configs = ROOT / "configs"
    os.chdir(work)  # tune's trials table and plot go under weights/<comp>/tune/ of the working folder
    if args.smoke:
        comp = make_demo(work / "data", work / "competition" / "tiny.yaml", n_groups=6, per_group=4, n_test=6,
                         size=48, n_folds=3)
        extra, args.epochs, args.trials = TINY, "1", 2
    else:
        comp = make_demo(work / "data", work / "competition" / "demo.yaml")
        extra = {}
    backbone = load_config(args.backbone, {"comp": str(comp), **extra})
    epochs = args.epochs or str(backbone.epochs)
    e2e, e2e_s = timed(lambda: run_cv(load_config(args.backbone, {"comp": str(comp), "out_dir": str(work / "e2e"),
                                                                  "epochs": epochs, **extra})))
    store, embed_s = timed(lambda: run_embed(backbone, str(comp), run=str(e2e), out=str(work / "store")))
    e2e_f = fold_s(e2e)
    rows = [("end-to-end cv", Path(args.backbone).stem, f"{score(e2e):.4f}", f"{e2e_s:.1f}", "1.0x",
             f"{e2e_f:.1f}", "1.0x")]
    for head in ("attentive_probe", "linear_probe"):
        run, s = timed(lambda: run_cv(load_config(str(configs / f"{head}.yaml"), {
            "comp": str(comp), "features": str(store), "epochs": epochs, "out_dir": str(work / head)})))
        rows.append(("head cv on cached features", head, f"{score(run):.4f}", f"{s:.1f}", f"{e2e_s / s:.1f}x",
                     f"{fold_s(run):.1f}", f"{e2e_f / fold_s(run):.1f}x"))
    head_cfg = load_config(str(configs / "attentive_probe.yaml"), {"comp": str(comp), "features": str(store),
                                                            "epochs": epochs})
    _, tune_s = timed(lambda: run_tune(head_cfg, configs / "attentive_probe.yaml", args.trials, None, [0],
                                       f"sqlite:///{work / 'tune.db'}", work / "attentive_probe_tuned.yaml"))
    rows.append((f"{args.trials}-trial tune (fold 0)", "attentive_probe", "", f"{tune_s:.1f}", f"{e2e_s / tune_s:.1f}x",
                 "", ""))
    rows.append(("embed run= (fold-aligned, train + test)", Path(args.backbone).stem, "", f"{embed_s:.1f}", "", "",
                 ""))
    table(rows, ("what", "config", "OOF score", "wall s", "vs end-to-end", "fold s", "vs end-to-end"))
    head_s = float(rows[1][3])
    print(f"attentive probe - end-to-end OOF: {float(rows[1][2]) - score(e2e):+.4f} (target >= -0.02); "
          f"head cv {e2e_s / head_s:.1f}x faster (target >= 30x); {args.trials}-trial tune "
          f"{tune_s:.0f}s vs end-to-end cv {e2e_s:.0f}s (target: less); epochs {epochs}")


if __name__ == "__main__":
    main()
