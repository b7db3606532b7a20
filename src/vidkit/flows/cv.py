"""Grouped cross-validation: folds once, every fold trained, OOF predictions and a CV report."""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.engine import distill
from vidkit.analysis import gallery, plots, provenance
from vidkit import metrics
from vidkit.config import Competition, Config, load_competition, parse_duration
from vidkit.data import classes_of, index_train
from vidkit.data.check import drop_bad
from vidkit.data.labels import is_multilabel, multi_hot, targets
from vidkit.errors import VidkitError
from vidkit.files import read_csv, read_jsonl, write_csv
from vidkit.rundir import CompDir, RunDir, fold_name, metrics_file, oof_file, state_dir
from vidkit.data.folds import folds_path, load_or_make_folds
from vidkit.models.weights import pretrained_license
from vidkit.engine.runtime import build_model, make_accelerator
from vidkit.engine.train import train_fold
from vidkit.engine.tta import tta_spec

log = logging.getLogger(__name__)


def prepare_run(cfg: Config, accelerator, comp: Competition | None = None, out_root: Path | None = None):
    """Index the data, load (or draw once) the competition's folds, write the run's config and folds."""
    comp = comp or load_competition(cfg.comp)
    metrics.check_metric(comp.metric)
    full = index_train(comp)
    table = drop_bad(full, cfg.exclude)  # unreadable or excluded videos leave before the folds are drawn
    if cfg.features:  # a head: so do the videos its store has no features for
        from vidkit.engine.features import without_features
        table = without_features(cfg, table)
    classes = classes_of(comp, table)
    if cfg.video_reduce and cfg.reduce_positive is None:  # the class video_reduce scores, kept in config.yaml
        cfg.reduce_positive = comp.positive_class
    canonical = folds_path(comp.path)
    # folds drawn while the left-out videos were still in keep them: their rows are dropped, nothing redrawn
    drawn = full if len(table) < len(full) and _folds_hold(canonical, full) else table
    label_sep = comp.label_sep if is_multilabel(comp) else None  # multi-label: iterative stratification
    if accelerator.is_main_process:
        load_or_make_folds(canonical, drawn, comp.n_folds, label_sep=label_sep)
    accelerator.wait_for_everyone()
    folds = load_or_make_folds(canonical, drawn, comp.n_folds, label_sep=label_sep)
    folds = folds[folds["video_id"].isin(table["video_id"])].reset_index(drop=True)
    table = table.assign(fold=folds["fold"].to_numpy())
    out = CompDir(comp, out_root).run(cfg)
    if accelerator.is_main_process:
        model = build_model(cfg, len(classes))
        n_bytes = 4 * sum(p.numel() for p in model.parameters())
        # best weights per fold, plus one resumable state (weights + AdamW moments) at a time
        check_output(out.path, n_bytes * (comp.n_folds + 3) + 50_000_000)
        out.write_config(cfg)
        write_csv(folds, out.folds_csv, index=False)
        spec = model.input_spec
        previous = provenance.read(out)  # folds trained earlier into this folder keep their times
        out.write_meta({**feature_meta(cfg, out),
                        "classes": classes, "class_counts": class_counts(table, classes, comp),
                        "task": comp.task, "label_sep": comp.label_sep, "n_train": len(table), "competition": comp.name,
                        "competition_yaml": comp.path,
                        "model": cfg.model, "input_spec": asdict(spec), "protocol": protocol(cfg, spec),
                        "provenance": provenance.start(table, folds, previous),
                        "pretrained": pretrained_license(cfg.pretrained, cfg.model, cfg.pretrained_license)})
    accelerator.wait_for_everyone()
    return comp, table, classes, out


def class_counts(table: pd.DataFrame, classes: list[str], comp: Competition | None = None) -> dict[str, int]:
    """Training videos per class: submit's prior for test videos without readable media, with no training data
    (multi-label: videos carrying each class, of run.json's `n_train`)."""
    if is_multilabel(comp):
        return dict(zip(classes, multi_hot(table["label"], classes, comp.label_sep).sum(0).astype(int).tolist()))
    counts = table["label"].value_counts()
    return {c: int(counts.get(c, 0)) for c in classes}


def _folds_hold(path: Path, table: pd.DataFrame) -> bool:
    return path.exists() and set(read_csv(path, ("video_id",), dtype=str, what="folds file")["video_id"]) \
        == set(table["video_id"])


def check_output(out: Path, need_bytes: int) -> None:
    """Fail before training, not at the first checkpoint: the run folder must be writable and have room."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise VidkitError(f"out_dir: cannot write to {out} ({e.strerror or type(e).__name__})") from None
    free = shutil.disk_usage(out).free
    if free < need_bytes:
        raise VidkitError(f"out_dir: {out} has {free / 1e9:.2f} GB free; this run needs about "
                          f"{need_bytes / 1e9:.2f} GB (checkpoints and optimiser state)")


def protocol(cfg: Config, spec) -> str:
    if spec.layout == "features":  # a head: the views the store holds
        from vidkit.engine.features import protocol as store_protocol
        return store_protocol(cfg)
    return tta_spec(cfg).protocol(spec.num_frames)


def feature_meta(cfg: Config, out: RunDir) -> dict:
    """A head run's store in run.json (`features`); resuming on a store of another backbone is refused."""
    if not cfg.features:
        return {}
    from vidkit.engine.features import check_run_store, run_features_meta
    if out.meta_file.is_file():
        check_run_store(out.path, cfg, out.meta().get("features"))
    return {"features": run_features_meta(cfg)}


def per_seed(cfg: Config, comp: Competition, out_root: Path | None = None) -> list[Config]:
    """`seed=1,2,3` is a seed ensemble: one run folder per seed (`<out>-seed<s>`), each a complete run."""
    if not isinstance(cfg.seed, list):
        return [cfg]
    base = CompDir(comp, out_root).run(cfg)
    return [replace(cfg, seed=int(s), out_dir=f"{base}-seed{s}") for s in cfg.seed]


def _context(cfg: Config, comp: Competition | None) -> tuple[Config, Competition]:
    """The verb's config and competition, each loaded once; a competition passed in is the one the run records."""
    if comp is None:
        comp = load_competition(cfg.comp)
    elif comp.path and Path(cfg.comp).resolve() != Path(comp.path).resolve():
        cfg = replace(cfg, comp=comp.path)
    if comp.features_dir and not cfg.features:  # a precomputed-feature competition: every head reads it
        from vidkit.models.heads import HEADS
        if cfg.model in HEADS:
            cfg = replace(cfg, features=str(comp.resolve(comp.features_dir)))
    return cfg, comp


def run_train(cfg: Config, comp: Competition | None = None, out_root: Path | None = None) -> Path:
    """`train`: one fold (or all data with fold=-1); every seed of a seed list. `comp`: default cfg.comp's;
    `out_root`: default weights/ (the run folder is <out_root>/<competition>/<config> unless out_dir= says)."""
    cfg, comp = _context(cfg, comp)
    if comp.task == "spotting":  # events in long videos: vidkit.flows.spotting
        from vidkit.flows.spotting import run_train as spotting_train
        return [spotting_train(c, comp, out_root) for c in per_seed(cfg, comp, out_root)][-1]
    return [_train_one(c, comp, out_root) for c in per_seed(cfg, comp, out_root)][-1]


def _train_one(cfg: Config, comp: Competition, out_root: Path | None) -> Path:
    accelerator = make_accelerator(cfg, CompDir(comp, out_root).run(cfg).path)
    comp, table, classes, out = prepare_run(cfg, accelerator, comp, out_root)
    table, extra = distill.prepare(cfg, comp, table, classes, out, accelerator.is_main_process)
    if cfg.fold >= comp.n_folds or cfg.fold < -1:
        raise VidkitError(f"fold: {cfg.fold} is out of range (-1 .. {comp.n_folds - 1})")
    name = fold_name(cfg.fold)
    oof = _timed(accelerator, out, name, lambda: train_fold(
        cfg, comp, table, classes, cfg.fold, out / name, accelerator, extra=extra, deadline=deadline(cfg)), cfg.resume)
    if accelerator.is_main_process:
        provenance.finish(out)
    if oof is not None:
        y = targets(oof["label"], classes, comp)
        accelerator.print(f"fold {cfg.fold} {comp.metric} ({cfg.tta_clips} clips): "
                          f"{metrics.score(comp.metric, y, oof[classes].to_numpy()):.4f}")
    accelerator.print(out / name)
    return out / name


def _timed(accelerator, out: RunDir, name: str, train, resumed: bool):
    """Run one fold's training and record its wall time in run.json's provenance (resumed: added up)."""
    start = time.time()
    result = train()
    if accelerator.is_main_process:
        provenance.record_fold(out, name, time.time() - start, add=resumed)
    return result


def run_cv(cfg: Config, comp: Competition | None = None, out_root: Path | None = None) -> Path:
    """`cv`: every fold, then oof.csv, cv_report.json and plots in the run folder; every seed of a seed list.
    `comp` and `out_root` as in `run_train`."""
    cfg, comp = _context(cfg, comp)
    if comp.task == "spotting":  # events in long videos: vidkit.flows.spotting
        from vidkit.flows.spotting import run_cv as spotting_cv
        return [spotting_cv(c, comp, out_root) for c in per_seed(cfg, comp, out_root)][-1]
    return [_cv_one(c, comp, out_root) for c in per_seed(cfg, comp, out_root)][-1]


def deadline(cfg: Config) -> float | None:
    """When `max_time` (counted from now) runs out: training stops there cleanly, resumable."""
    seconds = parse_duration(cfg.max_time, "max_time")
    return time.time() + seconds if seconds else None


def _fold_done(fold_dir: Path) -> bool:
    return oof_file(fold_dir).is_file() and not state_dir(fold_dir).exists()


def _cv_one(cfg: Config, comp: Competition, out_root: Path | None) -> Path:
    accelerator = make_accelerator(cfg, CompDir(comp, out_root).run(cfg).path)
    comp, table, classes, out = prepare_run(cfg, accelerator, comp, out_root)
    table, extra = distill.prepare(cfg, comp, table, classes, out, accelerator.is_main_process)
    start, stop_at = time.time(), deadline(cfg)
    parts = []
    for k in range(comp.n_folds):
        fold_dir = out.fold(k)
        if cfg.resume and _fold_done(fold_dir):
            accelerator.print(f"fold {k}: done earlier, reusing {oof_file(fold_dir)}")
            parts.append(read_csv(oof_file(fold_dir), ("video_id", "label"), dtype={"video_id": str, "label": str},
                                  what="fold OOF file"))
        else:
            parts.append(_timed(accelerator, out, fold_dir.name, lambda: train_fold(
                cfg, comp, table, classes, k, fold_dir, accelerator, extra=extra, deadline=stop_at), cfg.resume))
        if parts[-1] is None:  # stopped early, as a kill would: the later folds wait for resume=true too
            why = f"max_time={cfg.max_time}" if stop_at and time.time() >= stop_at else f"max_steps={cfg.max_steps}"
            accelerator.print(f"stopped in fold {k} at {why}; run again with resume=true to finish")
            return out.path
    if accelerator.is_main_process:
        oof = pd.concat(parts).set_index("video_id").loc[table["video_id"]].reset_index()
        write_csv(oof, out.oof_csv, index=False)
        report = write_report(oof, classes, comp.metric, out, cfg, time.time() - start)
        num_frames = out.meta()["input_spec"]["num_frames"]
        if not comp.features_dir:  # no media to show; multi-label: per-class errors
            gallery.write_gallery(oof, classes, table, num_frames, cfg, out.path,
                                  label_sep=comp.label_sep if is_multilabel(comp) else None)
        provenance.finish(out)
        accelerator.print(f"{cfg.name or cfg.model}: CV {comp.metric} {report['score']:.4f} "
                          f"± {np.std(report['fold_scores']):.4f} ({report['protocol']})" +
                          (f"; {report['clip_score']:.4f} ({report['clip_protocol']}, mean of folds)"
                           if "clip_score" in report else ""))
        accelerator.print("  " + "  ".join(f"{k} {v:.4f}" for k, v in report["all_metrics"].items()))
    accelerator.wait_for_everyone()
    accelerator.print(out)
    return out.path


def write_report(oof: pd.DataFrame, classes: list[str], metric: str, out: Path | RunDir, cfg: Config,
                 seconds: float) -> dict:
    """cv_report.json (competition metric + every other metric, per-class, clip vs video level) and the plots."""
    out = RunDir(out)
    run = out.meta()
    y = targets(oof["label"], classes, run)  # run.json: task and label_sep
    probs = oof[classes].to_numpy()
    folds = sorted(oof["fold"].unique())
    fold_scores = [metrics.score(metric, y[oof["fold"] == k], probs[oof["fold"] == k]) for k in folds]
    report = {"metric": metric, "score": metrics.score(metric, y, probs), "fold_scores": fold_scores,
              "fold_std": float(np.std(fold_scores)), "protocol": run["protocol"],
              "model": cfg.model, "config": cfg.name, "n_videos": len(oof), "n_classes": len(classes),
              "all_metrics": metrics.all_scores(y, probs), "train_time_s": round(seconds, 1),
              **clip_level(out, folds, run["input_spec"]["num_frames"], cfg.val_clips),
              "per_class": metrics.per_class(y, probs, classes)}
    out.write_report(report)
    if y.ndim == 2:  # multi-label: per-class AP instead of a confusion matrix
        plots.plot_per_class_ap(report["per_class"], out / "per_class.png")
        plots.plot_curves(out.metrics_files(), out / "curves.png")
        plots.plot_label_distribution(y, oof["fold"].to_numpy(), classes, out / "class_distribution.png")
        return report
    pred = probs.argmax(1)
    plots.plot_confusion(y, pred, classes, out.plot("confusion"))
    plots.plot_per_class(y, pred, classes, out.plot("per_class"))
    plots.plot_curves(out.metrics_files(), out.plot("curves"))
    plots.plot_fold_distribution(oof, classes, out.plot("class_distribution"))
    return report


def clip_level(out: RunDir, folds: list[int], num_frames: int, val_clips: int) -> dict:
    """The best epoch's validation score of each fold: `val_clips` clips per video (1 = clip level), no TTA.

    Read from fold*/metrics.jsonl, so it costs nothing; side by side with the TTA video-level OOF score.
    """
    scores = []
    for k in folds:
        f = metrics_file(out.fold(k))
        records = read_jsonl(f)
        best = [r["val_score"] for r in records if r.get("best") and "val_score" in r]
        if not best:
            return {}
        scores.append(best[-1])
    return {"clip_protocol": f"{num_frames}x{val_clips}x1 " + ("clip-level" if val_clips == 1 else "video-level"),
            "clip_fold_scores": scores, "clip_score": float(np.mean(scores))}
