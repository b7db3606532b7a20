"""The spotting task end to end (competition `task: spotting`): cross-validation with OOF per-frame scores and
event lists, per-class thresholds fitted on OOF, the ensemble (per-frame score averaging before peak picking) and
the submission (the event list in the sample's columns and time unit). `cv`, `ensemble` and `submit` branch here."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vidkit import metrics
from vidkit.config import Competition, Config, parse_duration
from vidkit.data.events import index_videos, iter_frames, load_video, read_events, resize_frames
from vidkit.data.folds import folds_path, load_or_make_folds
from vidkit.errors import VidkitError
from vidkit.rundir import CompDir, RunDir

from vidkit.files import atomic_write, read_csv, write_csv, write_yaml

log = logging.getLogger(__name__)
THRESHOLD_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
MAX_TRAIN_BYTES = 8 * 2**30  # training videos are held in memory at the model's size


def stride_of(cfg: Config, window: int) -> int:
    return cfg.spot_stride or max(1, window // 2)


# ---------------------------------------------------------------- events, positions, scores

def to_positions(events: list[tuple[int, str, float]], video_id: str, fps: float, unit: str) -> pd.DataFrame:
    """Detections (frame, event, score) of one video as rows video_id, frame, pos (in the CSV's unit), event, score."""
    frames = np.array([e[0] for e in events], dtype=int)
    pos = frames if unit == "frame" else np.round(frames / fps, 3)
    return pd.DataFrame({"video_id": video_id, "frame": frames, "pos": pos, "event": [e[1] for e in events],
                         "score": [e[2] for e in events]})


def detect(scores: dict[str, np.ndarray], videos: pd.DataFrame, classes: list[str], unit: str, cfg: Config,
           thresholds: dict | None = None) -> pd.DataFrame:
    """Every video's detections from its per-frame scores."""
    from vidkit.engine.peaks import pick_events
    fps = videos.set_index("video_id")["fps"]
    parts = [to_positions(pick_events(s, classes, cfg.spot_min_distance, cfg.spot_smooth, thresholds), vid,
                          fps[vid], unit) for vid, s in scores.items()]
    return pd.concat(parts, ignore_index=True) if parts else to_positions([], "", 1.0, unit)


def truth_of(events: pd.DataFrame, ids) -> pd.DataFrame:
    return events[events["video_id"].isin(set(ids))]


def fit_thresholds(truth: pd.DataFrame, found: pd.DataFrame, classes: list[str], tolerances: list) -> dict:
    """Per class, the highest score threshold whose mAP (over the tolerances) is within 1e-4 of the best one:
    the same score with fewer detections."""
    out = {}
    for name in classes:
        mine, preds = truth[truth["event"] == name], found[found["event"] == name]
        if mine.empty:
            out[name] = 0.0
            continue
        scores = [metrics.spotting_map(mine, preds[preds["score"] >= t], tolerances, [name])["score"]
                  for t in THRESHOLD_GRID]
        out[name] = max(t for t, s in zip(THRESHOLD_GRID, scores) if s >= max(scores) - 1e-4)
    return out


def constant_baseline(truth: pd.DataFrame, videos: pd.DataFrame, classes: list[str], unit: str,
                      cfg: Config, tolerances: list) -> float:
    """The mAP of a constant per-frame score: one detection every min_distance frames, for every class."""
    rows = []
    for _, v in videos.iterrows():
        step = max(1, cfg.spot_min_distance)
        rows.append(to_positions([(f, c, 0.5) for f in range(0, int(v["n_frames"]), step) for c in classes],
                                 v["video_id"], v["fps"], unit))
    return metrics.spotting_map(truth, pd.concat(rows, ignore_index=True), tolerances, classes)["score"]


# ---------------------------------------------------------------- cross-validation

def prepare(cfg: Config, comp: Competition):
    """Training videos, their events (checked), classes, the unit, and the competition's folds."""
    videos = index_videos(comp, "train")
    events, classes, unit = read_events(comp, videos)
    events = events.assign(pos=events["frame"] if unit == "frame" else
                           read_csv(comp.resolve(comp.events_csv), ["time"], ["time"], what="events CSV")["time"].to_numpy())
    folds = load_or_make_folds(folds_path(comp.path), videos[["video_id", "group", "label"]], comp.n_folds)
    videos = videos.assign(fold=folds["fold"].to_numpy())
    return videos, events, classes, unit


@dataclass
class SpotRun:
    """What every fold of a spotting run shares, loaded once: videos (with their folds), events, classes, the
    events' unit, the run folder, the accelerator, the model's input spec and the training videos in memory
    with their per-frame targets and hard-negative frames."""
    cfg: Config
    comp: Competition
    videos: pd.DataFrame
    events: pd.DataFrame
    classes: list
    unit: str
    out: RunDir
    accelerator: object
    spec: object
    arrays: dict
    targets: dict
    hard: dict


def setup_run(cfg: Config, comp: Competition, out_root: Path | None = None) -> SpotRun:
    from vidkit.data.events import frame_targets
    from vidkit.engine.runtime import build_model, make_accelerator
    from vidkit.engine.spotting import num_outputs
    videos, events, classes, unit = prepare(cfg, comp)
    out = CompDir(comp, out_root).run(cfg)
    accelerator = make_accelerator(cfg, out.path)
    spec = build_model(cfg, num_outputs(len(classes), cfg.spot_target)).input_spec
    if accelerator.is_main_process:
        _write_run(out, cfg, comp, videos, events, classes, unit, spec)
        if cfg.features:  # the store's backbone (checked) into the run folder: submit needs it, not the store
            from vidkit.flows.spotbackbone import save_run_backbone
            save_run_backbone(cfg, comp, out.path)
    accelerator.wait_for_everyone()
    if cfg.features:  # spot_head on a per-frame feature store (`embed`: vidkit.flows.spotfeatures)
        from vidkit.flows.spotfeatures import load_frame_features
        arrays = load_frame_features(cfg, comp, videos)
    else:
        arrays = _load_all(videos, spec.size, cfg.video_backend)
    targets = {v: frame_targets(len(a), *_events_of(events, v, classes), len(classes), cfg.spot_sigma,
                                cfg.spot_target) for v, a in arrays.items()}
    hard = hard_negatives(cfg, comp, events, videos, unit)
    return SpotRun(cfg, comp, videos, events, classes, unit, out, accelerator, spec, arrays, targets, hard)


def _deadline(cfg: Config) -> float | None:
    seconds = parse_duration(cfg.max_time, "max_time")
    return time.time() + seconds if seconds else None


def run_cv(cfg: Config, comp: Competition, out_root: Path | None = None) -> Path:
    """Every fold: train on windows (`vidkit.engine.train.fit`), predict the held-out videos with sliding windows;
    then OOF scores (oof_scores/<id>.npy), the OOF event list (oof.csv), per-class thresholds, cv_report.json and
    the plots. `resume=true` reuses finished folds and continues an interrupted one."""
    start, stop_at = time.time(), _deadline(cfg)
    run = setup_run(cfg, comp, out_root)
    acc, videos, classes = run.accelerator, run.videos, run.classes
    scores, fold_scores = {}, []
    for k in range(comp.n_folds):
        part = train_spot_fold(run, k, stop_at)
        if part is None:  # stopped early, as a kill would: the later folds wait for resume=true too
            why = f"max_time={cfg.max_time}" if stop_at and time.time() >= stop_at else f"max_steps={cfg.max_steps}"
            acc.print(f"stopped in fold {k} at {why}; run again with resume=true to finish")
            return run.out.path
        scores.update(part)
        val = videos[videos["fold"] == k]
        fold_scores.append(metrics.spotting_map(truth_of(run.events, val["video_id"]),
                                                detect(part, val, classes, run.unit, cfg), comp.tolerances,
                                                classes)["score"])
    if acc.is_main_process:
        report = write_report(run.out, cfg, videos, run.events, classes, run.unit, scores, comp.tolerances,
                              fold_scores, time.time() - start)
        print(f"{cfg.name or cfg.model}: CV spotting_map {report['score']:.4f} ± {report['fold_std']:.4f} "
              f"(constant baseline {report['baseline_score']:.4f}; per tolerance " +
              ", ".join(f"{t}: {s:.3f}" for t, s in report["per_tolerance"].items()) + ")")
    acc.wait_for_everyone()
    acc.print(run.out)
    return run.out.path


def run_train(cfg: Config, comp: Competition, out_root: Path | None = None) -> Path:
    """`train` of one fold (`fold=-1`: every video trains, none validates): the fold folder as `cv` writes it,
    the held-out videos' per-frame scores in oof_scores/ and the fold's spotting mAP printed."""
    if cfg.fold >= comp.n_folds or cfg.fold < -1:
        raise VidkitError(f"fold: {cfg.fold} is out of range (-1 .. {comp.n_folds - 1})")
    run = setup_run(cfg, comp, out_root)
    part = train_spot_fold(run, cfg.fold, _deadline(cfg))
    val = run.videos[run.videos["fold"] == cfg.fold]
    if part and run.accelerator.is_main_process:
        from vidkit.analysis import provenance
        provenance.finish(run.out)
        found = detect(part, val, run.classes, run.unit, cfg)
        score = metrics.spotting_map(truth_of(run.events, val["video_id"]), found, comp.tolerances, run.classes)
        print(f"fold {cfg.fold} spotting_map: {score['score']:.4f}")
    run.accelerator.wait_for_everyone()
    run.accelerator.print(run.out.fold(cfg.fold))
    return run.out.fold(cfg.fold)


def _write_run(out: RunDir, cfg, comp, videos, events, classes, unit, spec) -> None:
    from vidkit.analysis import provenance
    out.path.mkdir(parents=True, exist_ok=True)
    out.write_config(cfg)
    write_csv(videos[["video_id", "group", "label", "fold"]], out.folds_csv, index=False)
    counts = events["event"].value_counts()
    out.write_meta({"task": "spotting", "classes": classes, "class_counts": {c: int(counts.get(c, 0)) for c in classes},
                    "competition": comp.name, "competition_yaml": comp.path, "model": cfg.model,
                    "input_spec": asdict(spec), "unit": unit, "target": cfg.spot_target,
                    "protocol": f"windows of {spec.num_frames} frames, stride {stride_of(cfg, spec.num_frames)}",
                    "provenance": provenance.start(videos, videos, provenance.read(out))})


def _load_all(videos: pd.DataFrame, size: int, backend: str) -> dict[str, np.ndarray]:
    need = int((videos["n_frames"] * size * size * 3).sum())
    if need > MAX_TRAIN_BYTES:
        raise VidkitError(f"training videos at image_size={size} need {need / 2**30:.1f} GiB in memory (limit "
                          f"{MAX_TRAIN_BYTES / 2**30:.0f}); lower image_size or extract frames at a lower fps "
                          f"(`vidkit frames fps=`)")
    return {r["video_id"]: load_video(r, size, backend) for _, r in videos.iterrows()}


def _events_of(events: pd.DataFrame, vid: str, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    mine = events[events["video_id"] == vid]
    return mine["frame"].to_numpy(), mine["event"].map({c: i for i, c in enumerate(classes)}).to_numpy()


def hard_negatives(cfg: Config, comp: Competition, events: pd.DataFrame, videos: pd.DataFrame,
                   unit: str) -> dict[str, np.ndarray]:
    """`spot_hard_negatives` > 0: per video, the frames of `spot_hard_from`'s OOF detections (oof.csv) farther
    than the largest tolerance from every true event of their class: the earlier run's false-positive peaks."""
    if not cfg.spot_hard_negatives:
        return {}
    if not cfg.spot_hard_from:
        raise VidkitError("spot_hard_negatives: needs spot_hard_from=RUN (a finished spotting cv run, its oof.csv)")
    from vidkit.files import read_csv
    found = read_csv(RunDir(cfg.spot_hard_from).oof_csv, ("video_id", "frame", "pos", "event"),
                     numeric=("frame", "pos"), dtype={"video_id": str, "event": str}, what="spotting OOF events")
    found = found[found["video_id"].isin(set(videos["video_id"]))]
    reach = max(comp.tolerances)
    near = found.merge(events[["video_id", "event", "pos"]], on=["video_id", "event"], how="left",
                       suffixes=("", "_true"))
    hit = near[(near["pos"] - near["pos_true"]).abs() <= reach].set_index(["video_id", "frame"]).index
    false = found[~found.set_index(["video_id", "frame"]).index.isin(hit)]
    log.info("hard negatives: %d false-positive peaks of %s", len(false), cfg.spot_hard_from)
    return {v: g["frame"].to_numpy(int) for v, g in false.groupby("video_id")}


def _windows(run: SpotRun, ids):
    from vidkit.data.windows import SpotWindows
    ids = list(ids)
    return SpotWindows([run.arrays[v] for v in ids], [run.targets[v] for v in ids],
                       [_events_of(run.events, v, run.classes)[0] for v in ids], run.spec.num_frames,
                       run.cfg.spot_windows, [run.hard.get(v, np.zeros(0, int)) for v in ids],
                       run.cfg.spot_hard_negatives)


def _evaluator(run: SpotRun, val: pd.DataFrame):
    """evaluate(fold) for `fit`: the held-out videos through sliding windows, their spotting mAP (early stopping
    and the best epoch follow it) and per-frame loss."""
    from vidkit.engine.runtime import bare
    from vidkit.engine.spotting import frame_loss
    arrays = {v: run.arrays[v] for v in val["video_id"]}
    truth = truth_of(run.events, val["video_id"])

    def evaluate(fold) -> dict:
        model = bare(fold.accelerator, fold.ema.module if fold.ema is not None else fold.model).eval()
        scores = predict_arrays([model], arrays, run.cfg, fold.accelerator.device)
        found = detect(scores, val, run.classes, run.unit, run.cfg)
        loss = np.mean([frame_loss(s, run.targets[v], run.cfg.spot_target) for v, s in scores.items()])
        return {"val_loss": float(loss), "metric": "spotting_map",
                "val_score": metrics.spotting_map(truth, found, run.comp.tolerances, run.classes)["score"]}
    return evaluate


def _fold_done(run: SpotRun, k: int, val: pd.DataFrame) -> bool:
    from vidkit.rundir import state_dir
    folder = run.out.path / "oof_scores"
    return (run.out.checkpoint(k).is_file() and not state_dir(run.out.fold(k)).exists()
            and all((folder / f"{v}.npy").is_file() for v in val["video_id"]))


def train_spot_fold(run: SpotRun, k: int, stop_at: float | None) -> dict | None:
    """Fold k through training's one loop (`vidkit.engine.train.fit`): the held-out videos' per-frame scores of
    the best epoch (also in oof_scores/), or None when it stopped early (max_steps, max_time), resumable."""
    import shutil
    from accelerate.utils import set_seed
    from vidkit.analysis import provenance
    from vidkit.engine.spotting import setup_spot_fold
    from vidkit.engine.train import fit, resume_or_restart
    from vidkit.rundir import state_dir
    cfg, acc, fold_dir = run.cfg, run.accelerator, run.out.fold(k)
    val = run.videos[run.videos["fold"] == k]
    if cfg.resume and _fold_done(run, k, val):
        acc.print(f"fold {k}: done earlier, reusing {run.out.checkpoint(k)}")
        return {v: np.load(run.out.path / "oof_scores" / f"{v}.npy").astype(np.float32) for v in val["video_id"]}
    set_seed(int(cfg.seed) + max(k, 0))
    acc.free_memory()
    fold_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    spot = setup_spot_fold(cfg, _windows(run, run.videos.loc[run.videos["fold"] != k, "video_id"]),
                           len(run.classes), k, fold_dir, acc, _evaluator(run, val) if len(val) else None)
    resume_or_restart(spot, stop_at)
    stopped = fit(spot, val, np.zeros(0), "spotting_map", k)
    if acc.is_main_process:
        provenance.record_fold(run.out, fold_dir.name, time.time() - start, add=cfg.resume)
    if stopped:
        return None
    scores = _best_scores(run, k, val)
    if acc.is_main_process:
        shutil.rmtree(state_dir(fold_dir), ignore_errors=True)  # optimiser state is large; the fold is done
        _save_scores(run.out.path / "oof_scores", scores)
    acc.wait_for_everyone()
    return scores


def _best_scores(run: SpotRun, k: int, val: pd.DataFrame) -> dict:
    """The held-out videos' per-frame scores from the fold's best checkpoint."""
    from safetensors.torch import load_file
    from vidkit.engine.runtime import build_model
    from vidkit.engine.spotting import num_outputs
    best = build_model(run.cfg, num_outputs(len(run.classes), run.cfg.spot_target))
    best.load_state_dict(load_file(str(run.out.checkpoint(k))))
    device = run.accelerator.device
    return predict_arrays([best.to(device).eval()], {v: run.arrays[v] for v in val["video_id"]}, run.cfg, device)


def predict_arrays(models, arrays: dict[str, np.ndarray], cfg: Config, device) -> dict[str, np.ndarray]:
    """Per-frame scores of videos already in memory, through the same sliding windows as a stream."""
    from vidkit.engine.spotting import model_predictor, sliding_scores
    spec = models[0].input_spec
    predict = model_predictor(models, spec, cfg.spot_target, device)
    return {vid: sliding_scores(predict, a, spec.num_frames, stride_of(cfg, spec.num_frames),
                                _n_scores(models[0], cfg), cfg.eval_batch_size or 2 * cfg.batch_size, len(a))
            for vid, a in arrays.items()}


def _n_scores(model, cfg: Config) -> int:
    n = model.head.out.out_features
    return n if cfg.spot_target == "heat" else n - 1


def _save_scores(folder: Path, scores: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for vid, s in scores.items():
        with atomic_write(folder / f"{vid}.npy", "wb") as f:
            np.save(f, s.astype(np.float16))


def load_scores(run: Path) -> dict[str, np.ndarray]:
    folder = Path(run) / "oof_scores"
    if not folder.is_dir():
        raise VidkitError(f"{run}: no oof_scores/; cross-validate it first (`cv` on a spotting competition)")
    return {p.stem: np.load(p).astype(np.float32) for p in sorted(folder.glob("*.npy"))}


def write_report(out: RunDir, cfg, videos, events, classes, unit, scores, tolerances, fold_scores, seconds) -> dict:
    """oof.csv (the OOF event list), cv_report.json (score, per tolerance, per class, thresholds, the constant
    baseline), curves.png and timeline/<video>.png."""
    from vidkit.analysis import plots, provenance
    truth = truth_of(events, scores)
    found = detect(scores, videos, classes, unit, cfg)
    thresholds = fit_thresholds(truth, found, classes, tolerances)
    kept = _above(found, thresholds)
    fold = videos.set_index("video_id")["fold"]
    write_csv(kept.assign(fold=kept["video_id"].map(fold).astype(int))[["video_id", "fold", "frame", "pos", "event",
                                                                        "score"]], out.oof_csv, index=False)
    result = metrics.spotting_map(truth, kept, tolerances, classes)
    report = {"metric": "spotting_map", "task": "spotting", "score": result["score"], "fold_scores": fold_scores,
              "fold_std": float(np.std(fold_scores)), "per_tolerance": result["per_tolerance"],
              "per_class": result["per_class"], "tolerances": tolerances, "unit": unit, "thresholds": thresholds,
              "baseline_score": constant_baseline(truth, videos, classes, unit, cfg, tolerances),
              "protocol": out.meta()["protocol"], "model": cfg.model, "config": cfg.name, "n_videos": len(scores),
              "n_classes": len(classes), "n_events": len(truth), "n_detections": len(kept),
              "train_time_s": round(seconds, 1)}
    out.write_report(report)
    out.update_meta(thresholds=thresholds)
    plots.plot_curves(out.metrics_files(), out / "curves.png")
    write_timelines(out.path / "timeline", scores, truth, kept, classes)
    provenance.finish(out)
    return report


def _above(found: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    return found[found["score"] >= found["event"].map(thresholds).fillna(0.0)].reset_index(drop=True)


def write_timelines(folder: Path, scores: dict, truth: pd.DataFrame, found: pd.DataFrame, classes: list[str],
                    limit: int = 8) -> None:
    from vidkit.analysis.timeline import plot_timeline
    folder.mkdir(parents=True, exist_ok=True)
    for vid in list(scores)[:limit]:
        t = truth[truth["video_id"] == vid]
        f = found[found["video_id"] == vid]
        plot_timeline(scores[vid], classes, list(zip(t["frame"], t["event"])),
                      list(zip(f["frame"], f["event"], f["score"])), folder / f"{vid}.png", vid)


# ---------------------------------------------------------------- ensemble: per-frame score averaging

def spotting_runs(comp: Competition, runs: list[str] | None, out_root: Path | None) -> list[Path]:
    found = [Path(r) for r in runs] if runs else [r for r in CompDir(comp, out_root).finished_runs()
                                                  if RunDir(r).meta().get("task") == "spotting"]
    for r in found:
        if RunDir(r).meta().get("task") != "spotting":
            raise VidkitError(f"{r}: not a spotting run (run.json has no task: spotting); cross-validate it first")
    if not found:
        raise VidkitError(f"no spotting runs under {CompDir(comp, out_root).path}; run `cv` first or pass runs=")
    return found


def blend_scores(members: list[dict[str, np.ndarray]], weights: list[float]) -> dict[str, np.ndarray]:
    """Per-frame scores averaged with `weights` over the videos every member has."""
    ids = sorted(set.intersection(*(set(m) for m in members)))
    total = sum(weights)
    return {v: sum(w * m[v] for w, m in zip(weights, members)) / total for v in ids}


def run_ensemble(comp: Competition, runs: list[str] | None = None, out: str | None = None,
                 out_root: Path | None = None) -> Path:
    """Greedy forward selection (with replacement) of the runs on the mAP of their blended OOF per-frame scores;
    per-class thresholds refitted on the blend; writes ensemble.yaml (task: spotting)."""
    found = spotting_runs(comp, runs, out_root)
    cfg = RunDir(found[0]).read_config()
    videos, events, classes, unit = prepare(cfg, comp)
    members = [load_scores(r) for r in found]

    def score_of(counts: list[int]) -> float:
        blended = blend_scores(members, counts)
        return metrics.spotting_map(truth_of(events, blended), detect(blended, videos, classes, unit, cfg),
                                    comp.tolerances, classes)["score"]
    singles = [score_of([int(i == j) for j in range(len(found))]) for i in range(len(found))]
    counts = [int(i == int(np.argmax(singles))) for i in range(len(found))]
    best = max(singles)
    for _ in range(2 * len(found) if len(found) > 1 else 0):
        tries = [score_of([c + (i == j) for j, c in enumerate(counts)]) for i in range(len(found))]
        if max(tries) <= best + 1e-6:
            break
        best, counts = max(tries), [c + (j == int(np.argmax(tries))) for j, c in enumerate(counts)]
    blended = blend_scores(members, counts)
    truth = truth_of(events, blended)
    thresholds = fit_thresholds(truth, detect(blended, videos, classes, unit, cfg), classes, comp.tolerances)
    spec = {"task": "spotting", "metric": "spotting_map", "method": "mean",
            "members": [{"run": str(r), "weight": c / sum(counts)} for r, c in zip(found, counts)],
            "thresholds": thresholds, "score": float(best),
            "member_scores": {str(r): float(s) for r, s in zip(found, singles)}, "spot_min_distance": cfg.spot_min_distance, "spot_smooth": cfg.spot_smooth}
    path = Path(out) if out else CompDir(comp, out_root).ensemble_yaml
    path.parent.mkdir(parents=True, exist_ok=True)
    write_yaml(path, spec)
    for r, s in zip(found, singles):
        print(f"{r}: OOF spotting_map {s:.4f}")
    print(f"blend {best:.4f} (weights " + ", ".join(f"{Path(m['run']).name} {m['weight']:.2f}"
                                                      for m in spec["members"]) + f") -> {path}")
    return path


# ---------------------------------------------------------------- submission

def load_member(run: Path, device) -> dict:
    """A run's config, classes and every fold checkpoint on `device`, for sliding-window inference; a head on
    per-frame features (`features=`) also its backbone from the run folder (`frame_size`: the frames it takes)."""
    from dataclasses import replace
    from safetensors.torch import load_file
    from vidkit.engine.runtime import build_model
    from vidkit.engine.spotting import model_predictor, num_outputs
    rd = RunDir(run)
    cfg, meta = rd.read_config(), rd.meta()
    backbone = None
    build_cfg = cfg
    if cfg.features:  # the head's input size from the run's backbone.json: the store is not read at submit
        from vidkit.flows.spotbackbone import load_run_backbone
        backbone = load_run_backbone(run, device)
        build_cfg = replace(cfg, features=None, model_args={**cfg.model_args, "in_dim": backbone[2]["dims"],
                                                            "positions": 1})
    models = []
    for ckpt in rd.checkpoints():
        m = build_model(build_cfg, num_outputs(len(meta["classes"]), cfg.spot_target))
        m.load_state_dict(load_file(str(ckpt)))
        models.append(m.to(device).eval())
    if not models:
        raise VidkitError(f"{run}: no fold checkpoints (fold*/model.safetensors)")
    spec = models[0].input_spec
    return {"run": run, "cfg": cfg, "classes": meta["classes"], "spec": spec, "models": models, "device": device,
            "predict": model_predictor(models, spec, cfg.spot_target, device), "backbone": backbone,
            "frame_size": backbone[1].size if backbone else spec.size}


# ---------------------------------------------------------------- submit budget=: frames x measured speed

def frame_seconds(member: dict, repeats: int = 2) -> float:
    """Seconds of model time per video frame: the fold models' (`model_seconds`) and a head's backbone's."""
    return model_seconds(member, repeats) + backbone_seconds(member, repeats)


def model_seconds(member: dict, repeats: int = 2) -> float:
    """Seconds of fold-model time per video frame: one batch of windows timed (after a warm-up call), divided by
    the frames the windows advance (batch x stride; each frame is in window / stride windows)."""
    import torch
    spec, cfg = member["spec"], member["cfg"]
    batch, stride = cfg.eval_batch_size or 2 * cfg.batch_size, stride_of(cfg, spec.num_frames)
    rng = np.random.default_rng(0)
    if member["backbone"]:  # a head on features: (B, T, D) vectors, and each frame through the backbone once
        clips = rng.standard_normal((batch, spec.num_frames, member["backbone"][2]["dims"])).astype(np.float32)
    else:
        clips = rng.integers(0, 256, (batch, spec.num_frames, spec.size, spec.size, 3), np.uint8)
    member["predict"](clips)
    start = time.perf_counter()
    for _ in range(repeats):
        member["predict"](clips)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (repeats * batch * stride)


def backbone_seconds(member: dict, repeats: int = 2) -> float:
    """Seconds per frame through a feature head's backbone (0 for an end-to-end member): one batch timed."""
    if not member["backbone"]:
        return 0.0
    import torch
    from vidkit.flows.spotfeatures import BATCH, embed_batch
    model, spec, _ = member["backbone"]
    frames = list(np.random.default_rng(0).integers(0, 256, (BATCH, spec.size, spec.size, 3), np.uint8))
    embed_batch(model, spec, frames, member["device"])
    start = time.perf_counter()
    for _ in range(repeats):
        embed_batch(model, spec, frames, member["device"])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (repeats * BATCH)


def decode_seconds(test: pd.DataFrame, sizes: list[int], backend: str, n_frames: int = 100) -> float:
    """Seconds per frame to decode (and resize) the first readable test video's first `n_frames` frames (timed
    from the second one: opening the decoder is once per video)."""
    for _, row in test[test["n_frames"] > 1].iterrows():
        start, n = None, 0
        try:
            for frame in iter_frames(row, None, backend):
                for s in sizes:
                    resize_frames(frame[None], s)
                start, n = start or time.perf_counter(), n + 1
                if n == n_frames:
                    break
        except (VidkitError, OSError, ValueError):
            continue
        if n > 1:
            return (time.perf_counter() - start) / (n - 1)
    return 0.0


def plan_budget(names: list[str], weights: list[float], folds: list[int], frame_s: list[float], decode_s: float,
                n_frames: float, budget_s: float, fixed_s: list[float] | None = None) -> tuple[list[int], list[str]]:
    """Fold models per member (0: member dropped) whose estimate n_frames x (decode + sum of the members' per-frame
    model time, proportional to their fold models, plus `fixed_s`: a head's backbone, once per kept member) fits
    `budget_s`: fold models cut first (the slowest member first, down to one), then members (lowest weight
    first), as classification cuts views then members."""
    fixed = fixed_s or [0.0] * len(folds)
    per_fold = [s / f for s, f in zip(frame_s, folds)]
    keep, dropped = list(folds), []

    def estimate() -> float:
        return n_frames * (decode_s + sum(k * p + (x if k else 0.0) for k, p, x in zip(keep, per_fold, fixed)))
    while estimate() > budget_s:
        cuttable = [(keep[i] * per_fold[i], i) for i in range(len(keep)) if keep[i] > 1]
        alive = [i for i in range(len(keep)) if keep[i]]
        if cuttable:
            i = max(cuttable)[1]
            keep[i] -= 1
            dropped.append(f"{names[i]}: fold model {keep[i] + 1}")
        elif len(alive) > 1:
            i = min(alive, key=lambda j: (weights[j], -j))
            keep[i] = 0
            dropped.append(f"member {names[i]} (weight {weights[i]:.3g})")
        else:
            dropped.append(f"nothing left to cut: {names[alive[0]]} alone needs ~{estimate():.0f}s")
            break
    return keep, dropped


def _hms(seconds: float) -> str:  # as flows.submit prints budgets (importing it here would be a cycle)
    if seconds >= 3600:
        return f"{seconds / 3600:.2f}h"
    return f"{seconds / 60:.1f}m" if seconds >= 120 else f"{seconds:.1f}s"


def fit_to_budget(members: list[dict], weights: list[float], test: pd.DataFrame, budget_s: float, scale: float,
                  backend: str) -> tuple[list[dict], list[float], dict]:
    """`submit budget=` for spotting: the test videos' frame counts (x `scale`) x the measured per-frame decode and
    model time; fold models, then members, cut until the estimate fits (`plan_budget`)."""
    from vidkit.engine.spotting import model_predictor
    n_frames = float(test["n_frames"].clip(lower=0).sum()) * scale
    frame_s = [model_seconds(m) for m in members]
    fixed_s = [backbone_seconds(m) for m in members]  # a head's backbone: once per frame, whatever its fold models
    decode_s = decode_seconds(test, sorted({m["frame_size"] for m in members}), backend)
    names = [Path(m["run"]).name for m in members]
    folds = [len(m["models"]) for m in members]
    before = n_frames * (decode_s + sum(frame_s) + sum(fixed_s))
    keep, dropped = plan_budget(names, weights, folds, frame_s, decode_s, n_frames, budget_s, fixed_s)
    after = n_frames * (decode_s + sum(k / f * s + (x if k else 0.0) for k, f, s, x in zip(keep, folds, frame_s,
                                                                                          fixed_s)))
    print(f"budget {_hms(budget_s)} for {n_frames:.0f} test frames: estimated {_hms(before)}"
          + (f", {_hms(after)} after dropping: " + "; ".join(dropped) if dropped else " (fits)"))
    kept = []
    for m, k, f in zip(members, keep, folds):
        if k:
            models = m["models"][:k]
            kept.append({**m, "models": models, "predict": m["predict"] if k == f else
                         model_predictor(models, m["spec"], m["cfg"].spot_target, m["device"])})
    plan = {"budget_s": budget_s, "scale": scale, "estimate_s": round(after, 1), "dropped": dropped}
    return kept, [w for w, k in zip(weights, keep) if k], plan


def predict_video(row, members: list[dict], weights: list[float], backend: str) -> np.ndarray:
    """One test video's blended per-frame scores: decoded once, every member's windows cut from the same frames."""
    sliders = [member_slider(m, int(row["n_frames"])) for m in members]
    sizes = sorted({m["frame_size"] for m in members})
    for frame in iter_frames(row, None, backend):
        resized = {s: resize_frames(frame[None], s)[0] for s in sizes}
        for m, slider in zip(members, sliders):
            slider.push(resized[m["frame_size"]])
    scores = [s.finish() for s in sliders]
    n = min(len(s) for s in scores)
    return sum(w * s[:n] for w, s in zip(weights, scores)) / sum(weights)


def member_slider(member: dict, n_frames: int):
    """A member's sliding windows over one video's frames: its Slider, or (a head on features) the Slider behind
    the backbone (`vidkit.flows.spotbackbone.FeatureSlider`)."""
    from vidkit.engine.spotting import Slider
    m = member
    slider = Slider(m["predict"], m["spec"].num_frames, stride_of(m["cfg"], m["spec"].num_frames), len(m["classes"]),
                    m["cfg"].eval_batch_size or 2 * m["cfg"].batch_size, n_frames)
    if not m["backbone"]:
        return slider
    from vidkit.flows.spotbackbone import FeatureSlider
    model, spec, info = m["backbone"]
    return FeatureSlider(slider, model, spec, info["dtype"], m["device"])


def submission_columns(found: pd.DataFrame, sample: pd.DataFrame, comp: Competition, fps: pd.Series) -> pd.DataFrame:
    """The detections in the sample's columns: id, frame or time (seconds), event, score."""
    columns = {}
    for c in sample.columns:
        if c == comp.id_column:
            columns[c] = found["video_id"]
        elif c == "frame":
            columns[c] = found["frame"]
        elif c in ("time", "seconds", "timestamp"):
            columns[c] = np.round(found["frame"] / found["video_id"].map(fps), 3)
        elif c == comp.target_column:
            columns[c] = found["event"]
        elif c in ("score", "confidence"):
            columns[c] = np.round(found["score"], 5)
        else:
            raise VidkitError(f"{comp.resolve(comp.sample_submission)}: cannot fill column {c!r} of a spotting "
                              f"submission (known: {comp.id_column}, frame|time, {comp.target_column}, score)")
    return pd.DataFrame(columns, columns=list(sample.columns))


def validate_events(sub: pd.DataFrame, sample: pd.DataFrame, comp: Competition, classes: list[str],
                    ids: set, source: str) -> None:
    """A one-line VidkitError unless `sub` has the sample's columns, known ids and events, finite numbers."""
    if list(sub.columns) != list(sample.columns):
        raise VidkitError(f"{source}: columns {list(sub.columns)} differ from the sample's {list(sample.columns)}")
    if sub.isna().any().any():
        raise VidkitError(f"{source}: empty/NaN values in column {sub.columns[sub.isna().any()][0]!r}")
    strangers = set(sub[comp.id_column].astype(str)) - ids
    if strangers:
        raise VidkitError(f"{source}: video ids not in the test set, e.g. {sorted(strangers)[0]!r}")
    unknown = set(sub[comp.target_column].astype(str)) - set(classes)
    if unknown:
        raise VidkitError(f"{source}: unknown event {sorted(unknown)[0]!r}")
    if "score" in sub.columns and not sub["score"].between(0, 1).all():
        raise VidkitError(f"{source}: column 'score' outside [0, 1]")


def ensemble_of(comp: Competition, runs: list[str] | None, ensemble_yaml, out_root) -> tuple[list, list, dict]:
    """Members, weights and thresholds: ensemble.yaml's (when runs= is not given or names its members), else
    the runs with equal weights and the first run's OOF thresholds."""
    from vidkit.config import load_ensemble
    path = Path(ensemble_yaml) if ensemble_yaml else CompDir(comp, out_root).ensemble_yaml
    spec = load_ensemble(path) if path.is_file() else None
    if spec:  # member paths as written, or relative to the yaml's folder (a kernel bundle)
        members = {(Path(m["run"]) if Path(m["run"]).is_dir() or Path(m["run"]).is_absolute()
                    else path.parent / m["run"]).resolve(): m["weight"] for m in spec["members"] if m["weight"] > 0}
        if not runs or {Path(r).resolve() for r in runs} == set(members):
            first = RunDir(next(iter(members))).meta().get("thresholds", {})
            return list(members), list(members.values()), spec.get("thresholds") or first
    found = spotting_runs(comp, runs, out_root)
    return found, [1.0] * len(found), RunDir(found[0]).meta().get("thresholds", {})


def run_submit(comp: Competition, runs: list[str] | None = None, out: str = "submissions/submission.csv",
               ensemble_yaml=None, backend: str | None = None, out_root: Path | None = None,
               budget_s: float | None = None, scale: float = 1.0) -> Path:
    """Every test video streamed once through every member's fold models; blended per-frame scores; peaks above
    the OOF thresholds; the event list in the sample's columns, validated. An undecodable video: no events, logged.
    `budget_s`: fold models and members cut until the estimated time fits (`fit_to_budget`)."""
    import torch
    from vidkit.engine.spotting import stream_friendly_malloc
    stream_friendly_malloc()  # memory bounded whatever the videos' length
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    found_runs, weights, thresholds = ensemble_of(comp, runs, ensemble_yaml, out_root)
    members = [load_member(r, device) for r in found_runs]
    classes, cfg = members[0]["classes"], members[0]["cfg"]
    test = index_videos(comp, "test")
    if budget_s:
        members, weights, _ = fit_to_budget(members, weights, test, budget_s, scale, backend or cfg.video_backend)
    parts = []
    for _, row in test.iterrows():
        try:
            scores = predict_video(row, members, weights, backend or cfg.video_backend)
        except (VidkitError, OSError, ValueError) as e:
            log.warning("%s: cannot be decoded (%s); no events for %s", row["path"], str(e).splitlines()[0],
                        row["video_id"])
            continue
        if len(scores) == 0:
            log.warning("%s: no frames decoded; no events for %s", row["path"], row["video_id"])
            continue
        parts.append(detect({row["video_id"]: scores}, test, classes, "frame", cfg, thresholds))
    found = pd.concat(parts, ignore_index=True) if parts else to_positions([], "", 1.0, "frame")
    sample = read_csv(comp.resolve(comp.sample_submission), what="sample submission")
    sub = submission_columns(found, sample, comp, test.set_index("video_id")["fps"])
    validate_events(sub, sample, comp, classes, set(test["video_id"]), str(out))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_csv(sub, out, index=False)
    print(f"{len(sub)} events in {len(test)} test videos ({len(members)} runs) -> {out}")
    return Path(out)


# ---------------------------------------------------------------- predict: one video's event list

def predict_events(runs: list[str | Path], video: str | Path, comp: Competition | None = None,
                   backend: str | None = None) -> pd.DataFrame:
    """`predict` on spotting runs: one video's events as rows video_id, frame|time (the runs' events unit),
    event, score. The video is streamed once through every run's fold models, as `submit` does (with `comp=`
    and no runs: ensemble.yaml's members, weights and thresholds); peaks above the OOF thresholds."""
    import torch
    from vidkit.analysis.spot_explain import trained_fps
    from vidkit.data.events import video_fps
    from vidkit.data.index import media_row
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if runs:
        found_runs = [Path(r) for r in runs]
        for r in found_runs:
            if RunDir(r).meta().get("task") != "spotting":
                raise VidkitError(f"{r}: not a spotting run (run.json has no task: spotting); predict one kind at a time")
        weights, thresholds = [1.0] * len(found_runs), RunDir(found_runs[0]).meta().get("thresholds", {})
    elif comp is not None:
        found_runs, weights, thresholds = ensemble_of(comp, None, None, None)
    else:
        raise VidkitError("predict: run=RUN_DIR (or comp= for the competition's ensemble) is required")
    members = [load_member(r, device) for r in found_runs]
    classes, cfg, unit = members[0]["classes"], members[0]["cfg"], RunDir(found_runs[0]).meta().get("unit", "frame")
    row = media_row(video)
    row["fps"] = video_fps(Path(video), comp.fps if comp is not None else trained_fps(RunDir(found_runs[0]).meta()))
    scores = predict_video(row, members, weights, backend or cfg.video_backend)
    if len(scores) == 0:
        raise VidkitError(f"{video}: no frames could be decoded")
    events = detect({row["video_id"]: scores}, pd.DataFrame([row]), classes, unit, cfg, thresholds)
    events = events.sort_values("frame", kind="stable").reset_index(drop=True).assign(
        score=lambda e: np.round(e["score"], 5))
    return events.drop(columns="frame").rename(columns={"pos": unit})[["video_id", unit, "event", "score"]]


def run_predict_events(runs: list[str | Path], video: str | Path, comp: Competition | None = None,
                       out: str | Path | None = None, backend: str | None = None) -> pd.DataFrame:
    """The `predict` verb on spotting runs: print the event list (CSV) and write it to `out` when given."""
    events = predict_events(runs, video, comp, backend)
    for line in [events.columns, *events.itertuples(index=False)]:  # CSV lines on stdout
        print(",".join(map(str, line)))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_csv(events, out, index=False)
        print(f"{len(events)} events -> {out}")
    return events


def validate_file(path: Path, comp: Competition) -> None:
    """Check a written spotting submission against the competition's sample and test videos."""
    sample = read_csv(comp.resolve(comp.sample_submission), what="sample submission")
    test = index_videos(comp, "test")
    classes = [str(c) for c in comp.classes] if comp.classes else sorted(read_events(comp, index_videos(
        comp, "train"))[1])
    validate_events(read_csv(path, what="submission"), sample, comp, classes, set(test["video_id"]), str(path))
