"""Grouped cross-validation: folds once, every fold trained, OOF predictions and a CV report."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from vidkit import metrics, plots
from vidkit.config import Config, load_competition, run_dir, save_config
from vidkit.data import classes_of, index_train
from vidkit.errors import VidkitError
from vidkit.folds import folds_path, load_or_make_folds
from vidkit.train import build_model, make_accelerator, train_fold

log = logging.getLogger(__name__)


def prepare_run(cfg: Config, accelerator):
    """Index the data, load (or draw once) the competition's folds, write the run's config and folds."""
    comp = load_competition(cfg.comp)
    metrics.check_metric(comp.metric)
    table = index_train(comp)
    classes = classes_of(comp, table)
    canonical = folds_path(comp.path)
    if accelerator.is_main_process:
        load_or_make_folds(canonical, table, comp.n_folds)
    accelerator.wait_for_everyone()
    folds = load_or_make_folds(canonical, table, comp.n_folds)
    table = table.assign(fold=folds["fold"].to_numpy())
    out = run_dir(cfg, comp)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        folds.to_csv(out / "folds.csv", index=False)
        spec = build_model(cfg, len(classes)).input_spec
        (out / "run.json").write_text(json.dumps(
            {"classes": classes, "competition": comp.name, "model": cfg.model, "input_spec": asdict(spec),
             "protocol": protocol(cfg, spec)}, indent=1))
    accelerator.wait_for_everyone()
    return comp, table, classes, out


def protocol(cfg: Config, spec) -> str:
    return f"{spec.num_frames}x{cfg.tta_clips}x1 video-level"


def run_train(cfg: Config) -> Path:
    """`train`: one fold (or all data with fold=-1)."""
    accelerator = make_accelerator(cfg)
    comp, table, classes, out = prepare_run(cfg, accelerator)
    if cfg.fold >= comp.n_folds or cfg.fold < -1:
        raise VidkitError(f"fold: {cfg.fold} is out of range (-1 .. {comp.n_folds - 1})")
    name = "full" if cfg.fold == -1 else f"fold{cfg.fold}"
    oof = train_fold(cfg, comp, table, classes, cfg.fold, out / name, accelerator)
    if oof is not None:
        y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        accelerator.print(f"fold {cfg.fold} {comp.metric} ({cfg.tta_clips} clips): "
                          f"{metrics.score(comp.metric, y, oof[classes].to_numpy()):.4f}")
    accelerator.print(out / name)
    return out / name


def run_cv(cfg: Config) -> Path:
    """`cv`: every fold, then oof.csv, cv_report.json and plots in the run folder."""
    accelerator = make_accelerator(cfg)
    comp, table, classes, out = prepare_run(cfg, accelerator)
    start = time.time()
    parts = [train_fold(cfg, comp, table, classes, k, out / f"fold{k}", accelerator) for k in range(comp.n_folds)]
    if accelerator.is_main_process:
        oof = pd.concat(parts).set_index("video_id").loc[table["video_id"]].reset_index()
        oof.to_csv(out / "oof.csv", index=False)
        report = write_report(oof, classes, comp.metric, out, cfg, time.time() - start)
        accelerator.print(f"{cfg.name or cfg.model}: CV {comp.metric} {report['score']:.4f} "
                          f"± {np.std(report['fold_scores']):.4f} ({report['protocol']})")
    accelerator.wait_for_everyone()
    accelerator.print(out)
    return out


def write_report(oof: pd.DataFrame, classes: list[str], metric: str, out: Path, cfg: Config, seconds: float) -> dict:
    y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = oof[classes].to_numpy()
    folds = sorted(oof["fold"].unique())
    fold_scores = [metrics.score(metric, y[oof["fold"] == k], probs[oof["fold"] == k]) for k in folds]
    report = {"metric": metric, "score": metrics.score(metric, y, probs), "fold_scores": fold_scores,
              "protocol": json.loads((out / "run.json").read_text())["protocol"],
              "model": cfg.model, "config": cfg.name, "n_videos": len(oof), "n_classes": len(classes),
              "all_metrics": metrics.all_scores(y, probs), "train_time_s": round(seconds, 1)}
    (out / "cv_report.json").write_text(json.dumps(report, indent=1))
    pred = probs.argmax(1)
    plots.plot_confusion(y, pred, classes, out / "confusion_matrix.png")
    plots.plot_per_class(y, pred, classes, out / "per_class.png")
    plots.plot_curves(sorted(out.glob("fold*/metrics.jsonl")), out / "curves.png")
    return report
