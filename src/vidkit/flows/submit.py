"""Write a submission in the sample submission's columns and id order, and validate it."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.config import Competition, as_competition, parse_duration, save_config
from vidkit.data import index_test, index_train
from vidkit.data.labels import prior as prior_of
from vidkit.rundir import RunDir
from vidkit.flows.ensemble import calibrate
from vidkit.errors import VidkitError
from vidkit.files import read_csv, write_csv, write_json
from vidkit.formats import format_submission, is_confidence, topk_style

log = logging.getLogger(__name__)


def validate(sub: pd.DataFrame, sample: pd.DataFrame, id_column: str, source: str = "submission",
             classes: list[str] | None = None) -> None:
    """Raise a one-line VidkitError if `sub` is not a valid submission for `sample`: columns, ids (all, once,
    in order), NaN/inf, numbers where the sample has numbers, probabilities in [0, 1], labels (in `classes`
    when given) and "label conf" pairs as the sample writes them."""
    if list(sub.columns) != list(sample.columns):
        raise VidkitError(f"{source}: columns {list(sub.columns)} differ from the sample's {list(sample.columns)}")
    if id_column not in sample.columns:
        raise VidkitError(f"{source}: no id column {id_column!r} in the sample (columns: {', '.join(sample.columns)})")
    ids, want = sub[id_column].astype(str), sample[id_column].astype(str)
    if ids.duplicated().any():
        raise VidkitError(f"{source}: duplicate ids, e.g. {ids[ids.duplicated()].iloc[0]!r}")
    missing, extra = set(want) - set(ids), set(ids) - set(want)
    if missing:
        raise VidkitError(f"{source}: {len(missing)} ids missing, e.g. {sorted(missing)[0]!r}")
    if extra:
        raise VidkitError(f"{source}: {len(extra)} ids not in the sample, e.g. {sorted(extra)[0]!r}")
    if not (ids.to_numpy() == want.to_numpy()).all():
        raise VidkitError(f"{source}: ids are not in the sample's order")
    values = sub.drop(columns=[id_column])
    bad = values.isna() | (values.astype(str).apply(lambda c: c.str.strip()) == "")
    if bad.any().any():
        raise VidkitError(f"{source}: empty/NaN values in column {values.columns[bad.any()][0]!r}")
    for column in values.columns:
        if pd.api.types.is_numeric_dtype(sample[column]):
            _check_numeric(sub[column], sample[column], f"{source}: column {column!r}")
        else:
            _check_tokens(sub[column], sample[column], classes, f"{source}: column {column!r}")


def _check_numeric(values: pd.Series, sample: pd.Series, where: str) -> None:
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    if np.isnan(arr).any():
        raise VidkitError(f"{where}: non-numeric value {values[np.isnan(arr)].iloc[0]!r} (the sample has numbers)")
    if not np.isfinite(arr).all():
        raise VidkitError(f"{where}: inf values")
    probabilities = pd.api.types.is_float_dtype(sample) or (arr != np.round(arr)).any()
    if probabilities and ((arr < 0) | (arr > 1)).any():
        raise VidkitError(f"{where}: probabilities outside [0, 1]")


def _check_tokens(values: pd.Series, sample: pd.Series, classes: list[str] | None, where: str) -> None:
    _, pairs = topk_style(sample, len(classes) if classes else 5)
    known = set(map(str, classes)) if classes else None
    for value in values.astype(str):
        if known is not None and value in known:  # a label, possibly with spaces in it
            continue
        tokens = value.split()
        labels = tokens[0::2] if pairs else tokens
        if pairs and (len(tokens) % 2 or not all(is_confidence(t) for t in tokens[1::2])):
            raise VidkitError(f"{where}: {value!r} is not \"label confidence\" pairs with confidences in [0, 1]")
        unknown = [t for t in labels if known is not None and t not in known]
        if unknown:
            raise VidkitError(f"{where}: unknown label {unknown[0]!r}")


def validate_file(path: str, sample_path: str, id_column: str = "id", classes: list[str] | None = None) -> None:
    sample = read_csv(sample_path, (id_column,), dtype={id_column: str}, what="sample submission")
    validate(read_csv(path, dtype={id_column: str}, what="submission"), sample, id_column, source=path, classes=classes)


def _hms(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f}h"
    return f"{seconds / 60:.1f}m" if seconds >= 120 else f"{seconds:.1f}s"


def fit_to_budget(members: list, test: pd.DataFrame, budget_s: float, scale: float = 1.0) -> tuple[list, dict]:
    """Time each member on a few test videos, then cut views and members until the estimate fits."""
    from vidkit.flows.infer import fit_budget, measure_member, total_s
    from vidkit.engine.runtime import process_state
    readable = test[test["n_frames"] > 0].reset_index(drop=True)
    if readable.empty:
        return members, {}
    extractions: dict = {}  # a backbone's extraction, timed once for all its heads
    speeds = [measure_member(m, readable, extractions) for m in members]
    n_videos = len(test) * scale
    before = total_s(members, speeds, n_videos)
    kept, dropped = fit_budget(members, speeds, n_videos, budget_s)
    speed_of = {m.run: sp for m, sp in zip(members, speeds)}
    after = total_s(kept, [speed_of[k.run] for k in kept], n_videos)
    print(f"budget {_hms(budget_s)} for {n_videos:.0f} test videos: estimated {_hms(before)}"
          + (f", {_hms(after)} after dropping: " + "; ".join(dropped) if dropped else " (fits)"))
    plan = {"budget_s": budget_s, "scale": scale, "estimate_s": round(after, 1), "dropped": dropped}
    if process_state().num_processes > 1:  # each process timed itself: all follow the main process's plan
        from accelerate.utils import broadcast_object_list
        kept, plan = broadcast_object_list([kept, plan], from_process=0)
    return kept, plan


def classes_and_prior(comp: Competition, members: list) -> tuple[list[str], np.ndarray]:
    """The class list and the training class prior, from the runs (run.json), so that submitting needs only the
    test media and the sample. Runs from before run.json held class counts: counted from the training data."""
    classes = [str(c) for c in comp.classes] if comp.classes else list(members[0].classes)
    counted = next((m for m in members if m.class_counts), None)
    if counted is not None:
        counts = pd.Series(counted.class_counts, dtype=float)
    else:
        train_dir, train_csv = comp.resolve(comp.train_dir), comp.resolve(comp.train_csv)
        if not ((train_csv and train_csv.is_file()) or (not train_csv and train_dir and train_dir.is_dir())):
            raise VidkitError(f"{members[0].run / 'run.json'}: no class_counts (a run from an older vidkit) and no "
                              f"training data at {train_csv or train_dir} to count them; rebuild the kernel bundle "
                              f"where the training data is (`make kernel` records them)")
        counts = index_train(comp)["label"].value_counts().astype(float)
    prior = counts.reindex(classes).fillna(0).to_numpy()
    if comp.task == "multilabel":  # each class's positive rate among the training videos
        n_train = RunDir(members[0].run).meta().get("n_train") if counted is not None else None
        if n_train is None:
            return classes, prior_of(index_train(comp)["label"], classes, comp)
        return classes, prior / max(n_train, 1)
    return classes, prior / prior.sum() if prior.sum() > 0 else np.full(len(classes), 1 / len(classes))


def run_submit(comp: Competition | str, runs: list[str] | None = None, out: str = "submissions/submission.csv",
               tta_clips: int | None = None, budget: str | float | None = None, scale: float = 1.0,
               ensemble_yaml: str | Path | None = None, backend: str | None = None,
               out_root: Path | None = None) -> Path:
    """Ensemble + TTA over the test set; write the submission in the sample's ids and columns, validated.

    `comp`: a loaded competition or its yaml; `ensemble_yaml`: the blend (default: the competition's, under
    `out_root`, default weights/); `backend`: the video decoder (default: each member's `video_backend`)."""
    from vidkit.flows.infer import ensemble, resolve_members  # torch and the models: not for `validate`
    from vidkit.engine.runtime import process_state
    comp = as_competition(comp)
    if scale <= 0:
        raise VidkitError(f"scale: must be > 0, got {scale}")
    if comp.task == "spotting":  # an event list, not one row per video: vidkit.flows.spotting
        from vidkit.flows.spotting import run_submit as spotting_submit
        return spotting_submit(comp, runs, out, ensemble_yaml, backend, out_root, parse_duration(budget), scale)
    processes = process_state()  # under torchrun (`launch`), each process predicts a shard of the test set
    if not comp.sample_submission:
        raise VidkitError(f"{comp.path}: sample_submission is required to submit")
    sample_path = comp.resolve(comp.sample_submission)
    test = index_test(comp)  # checks the sample's file and id column
    if comp.crop_detector:  # the region crops training saw (`crop`), made the same way from the test media
        from vidkit.data.crop import crop_test
        with processes.main_process_first():  # one process crops, the others read its crops
            test = crop_test(comp, test, Path(out).parent / "crops", reuse=not processes.is_main_process)
    sample = read_csv(sample_path, (comp.id_column,), dtype={comp.id_column: str}, what="sample_submission")
    members, spec = resolve_members(comp, runs, tta_clips, ensemble_yaml, out_root)
    heads_read(comp, members, out)
    for m in members if backend else ():
        m.cfg.video_backend = backend
    classes, prior = classes_and_prior(comp, members)
    budget_s, plan = parse_duration(budget), {}
    if budget_s:
        members, plan = fit_to_budget(members, test, budget_s, scale)
    have = test["path"].notna().to_numpy()
    probs = np.full((len(test), len(classes)), np.nan)
    if have.any():
        probs[have] = ensemble(members, test[have].reset_index(drop=True), classes, method=spec.get("method", "mean"))
    ok = np.isfinite(probs).all(1)
    if spec and ok.any():
        probs[ok] = calibrate(probs[ok], spec, comp.task == "multilabel", classes)
    probs[~ok] = prior
    unread = test["video_id"][~ok].tolist()
    if unread:
        log.warning("%d test ids have no readable media and get the training prior: %s", len(unread),
                    ", ".join(unread[:10]) + (", ..." if len(unread) > 10 else ""))
    sub = format_submission(comp, sample, probs, classes, spec)
    validate(sub, sample, comp.id_column, classes=classes)
    meta = {"competition": comp.name, "runs": [str(m.run) for m in members],
            "weights": [round(m.weight, 6) for m in members], "method": spec.get("method", "mean"),
            "tta": {m.name: m.tta.protocol(m.num_frames) for m in members},
            "calibration": {k: spec.get(k) for k in ("temperature", "threshold", "clip")} if spec else None,
            "prior_ids": unread, **plan}
    if not processes.is_main_process:
        return Path(out)  # the main process writes the one submission
    path = write(sub, out, meta)
    # the blended probabilities beside it: what `cv pseudo=` and `teacher_test=` read
    write_csv(pd.DataFrame(probs, columns=classes).assign(prior=~ok).set_axis(test["video_id"])
              .rename_axis("video_id"), path.with_name(f"{path.stem}_probs.csv"))
    validate_file(str(path), str(sample_path), comp.id_column, classes)
    return path


def submit_on_every_gpu(comp: Competition, runs: list[str] | None = None, out: str | Path = "submission.csv",
                        tta_clips: int | None = None, budget: str | None = None,
                        ensemble_yaml: str | Path | None = None) -> Path:
    """`run_submit` here with one GPU (or none); with several (Kaggle's T4 x2), `submit` through `launch`: one
    process per GPU, each predicting a shard of the test set, the main one writing. The competition goes to
    the workers as a yaml beside `out`, its paths made absolute."""
    from vidkit.engine.launch import launch, num_processes
    processes = num_processes()
    if processes == 1:
        return run_submit(comp, runs, str(out), tta_clips, budget, ensemble_yaml=ensemble_yaml)
    paths = {k: str(comp.resolve(getattr(comp, k))) for k in ("train_dir", "train_csv", "test_dir",
                                                               "sample_submission") if getattr(comp, k)}
    spec = Path(out).with_name(f"{Path(out).stem}.competition.yaml")
    save_config(dataclasses.replace(comp, **paths), spec)
    options = {"runs": ",".join(map(str, runs or [])), "tta_clips": tta_clips, "budget": budget,
               "ensemble": ensemble_yaml}
    launch("submit", [f"comp={spec}", f"out={out}", *(f"{k}={v}" for k, v in options.items() if v)], processes)
    return Path(out)


def heads_read(comp: Competition, members: list, out: str | Path) -> None:
    """Head members read their features through the competition being submitted (in a kernel: its mounted data,
    not the paths in the run's config, which name the machine that trained it): a yaml of it, its paths made
    absolute, beside `out`; heads on precomputed features read its features_dir."""
    heads = [m for m in members if m.cfg.features]
    if not heads:
        return
    keys = ("train_dir", "train_csv", "test_dir", "sample_submission", "features_dir")
    paths = {k: str(comp.resolve(getattr(comp, k))) for k in keys if getattr(comp, k)}
    spec = Path(out).with_name(f"{Path(out).stem}.competition.yaml")
    save_config(dataclasses.replace(comp, **paths), spec)
    for m in heads:
        precomputed = (RunDir(m.run).meta().get("features") or {}).get("backbone") == "precomputed"
        features = paths["features_dir"] if precomputed and comp.features_dir else m.cfg.features
        m.cfg = dataclasses.replace(m.cfg, comp=str(spec), features=features)


def write(sub: pd.DataFrame, out: str, meta: dict) -> Path:
    """`out`, plus a timestamped copy and a JSON of what produced it in the same folder."""
    out = Path(out)
    write_csv(sub, out, index=False)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    members = "+".join(Path(r).name for r in meta.get("runs", []))[:80] or "sub"
    archived = out.parent / f"{stamp}_{members}.csv"
    write_csv(sub, archived, index=False)
    write_json(archived.with_suffix(".json"), meta)
    print(f"wrote {out} ({len(sub)} rows; also {archived.name})")
    return out
