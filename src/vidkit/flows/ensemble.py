"""OOF-driven ensembling: blend weights searched on out-of-fold predictions, calibration, `ensemble.yaml`.

Every member must have been cross-validated on the same folds, so that each OOF prediction comes from a
model that never saw the video: then a blend fitted on the OOF table is fitted on honest predictions.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, logit, softmax

from vidkit import metrics
from vidkit.config import DEFAULT_COMP, Competition, as_competition, load_ensemble  # noqa: F401
from vidkit.choices import CHOICES, check_choice
from vidkit.errors import VidkitError
from vidkit.data.labels import is_multilabel, targets
from vidkit.files import numeric_columns, read_csv, write_yaml
from vidkit.formats import positive_index, predict_labels, thresholded  # noqa: F401 (also used from here)
from vidkit.rundir import CompDir, RunDir, competition_of

log = logging.getLogger(__name__)
EPS = 1e-7


def default_ensemble_path(comp: Competition | str, root: str | Path | None = None) -> Path:
    return CompDir(comp, root).ensemble_yaml


# ---------------------------------------------------------------- blending and calibration (also used by submit)

def _to_space(p: np.ndarray, method: str, multilabel: bool = False) -> np.ndarray:
    if method == "logit" and multilabel:  # per-class log-odds
        p = np.clip(p, EPS, 1 - EPS)
        return np.log(p / (1 - p))
    if method == "logit":
        return np.log(np.clip(p, EPS, 1))
    if method == "rank":  # each class column ranked over the videos, in (0, 1]
        from scipy.stats import rankdata  # scipy.stats and .optimize: 1-2 s to import, so where they are used
        return rankdata(p, axis=0) / len(p)
    return p


def _from_space(s: np.ndarray, method: str, multilabel: bool = False) -> np.ndarray:
    """Back to probabilities: rows summing to 1, or (multi-label) per-class probabilities as they are."""
    if method == "logit":
        return expit(s) if multilabel else softmax(s, axis=1)
    return s if multilabel else s / s.sum(1, keepdims=True)


def blend(probs_list: list[np.ndarray], weights, method: str = "mean",
          multilabel: bool = False) -> np.ndarray:
    """Weighted blend of (n_videos, n_classes) probability tables; rows of the result sum to 1 (multi-label:
    each class's probability blended on its own). `weights`: one per member, or (multi-label) a
    (members, classes) table, each class blended with its own column."""
    check_choice("method", method)
    w = np.asarray(weights, dtype=np.float64)
    if len(probs_list) != len(w) or not len(w) or (w < 0).any() or (w.sum(0) <= 0).any():
        raise VidkitError(f"blend: need one non-negative weight per member (got {np.asarray(weights).tolist()} "
                          f"for {len(probs_list)} members)")
    total = sum(wi * _to_space(np.asarray(p, dtype=np.float64), method, multilabel)
                for wi, p in zip(w, probs_list) if np.any(wi > 0))
    return _from_space(total / w.sum(0), method, multilabel)


def calibrate(probs: np.ndarray, spec: dict, multilabel: bool = False, classes: list[str] | None = None) -> np.ndarray:
    """Temperature scaling (softmax(log p / T); multi-label: sigmoid(logit p / T) per class, with T of each class
    from `per_class_temperature` when the spec has it: a list, or a dict by class name read in `classes` order),
    then clipping to [clip, 1 - clip] and (single-label) renormalising."""
    p = np.asarray(probs, dtype=np.float64)
    t = class_temperatures(spec, classes) if multilabel and spec.get("per_class_temperature") else \
        float(spec.get("temperature") or 1.0)
    if np.any(t != 1.0) and multilabel:
        p = expit(logit(np.clip(p, EPS, 1 - EPS)) / t)
    elif not multilabel and t != 1.0:
        p = softmax(np.log(np.clip(p, EPS, 1)) / t, axis=1)
    if spec.get("clip"):
        p = np.clip(p, spec["clip"], 1 - spec["clip"])
        p = p if multilabel else p / p.sum(1, keepdims=True)
    return p


def class_temperatures(spec: dict, classes: list[str] | None) -> np.ndarray:
    """The per-class temperatures of a spec as a vector in `classes` order (a list is taken as it is)."""
    temps = spec["per_class_temperature"]
    if isinstance(temps, dict):
        if classes is None or set(temps) != set(classes):
            raise VidkitError(f"per_class_temperature: names classes {sorted(temps)}, the members predict "
                              f"{classes}")
        return np.array([float(temps[c]) for c in classes])
    return np.asarray(temps, dtype=np.float64)


def spec_weights(spec: dict):
    """What `blend` takes from a fitted spec: the (members, classes) table when weights are per class."""
    return spec["class_weights"] if spec.get("class_weights") is not None else spec["weights"]


# ---------------------------------------------------------------- ensemble.yaml

def write_ensemble(spec: dict, path: Path) -> None:
    header = "# written by `python -m vidkit ensemble`: blend weights searched on out-of-fold predictions\n"
    write_yaml(path, spec, header, default_flow_style=None, width=200)


# ---------------------------------------------------------------- OOF tables of the members

def load_oof(run: Path) -> tuple[pd.DataFrame, list[str], pd.Series]:
    """A run's oof.csv, its classes and its fold of every video (folds.csv, else the OOF's fold column)."""
    run = RunDir(run)
    if not run.oof_csv.exists():
        raise VidkitError(f"{run}: no {run.oof_csv.name}; cross-validate it first (`make cv`)")
    oof = read_csv(run.oof_csv, ("video_id", "fold", "label"), ("fold",), {"video_id": str, "label": str}, "OOF file")
    oof["label"] = oof["label"].fillna("")  # a multi-label video without labels
    classes = run.meta().get("classes") or [c for c in oof.columns if c not in ("video_id", "fold", "label")]
    missing = [c for c in ["video_id", "fold", "label", *classes] if c not in oof.columns]
    if missing:
        raise VidkitError(f"{run.oof_csv}: missing columns {', '.join(map(str, missing[:5]))}")
    numeric_columns(oof, classes, run.oof_csv, complete=True)
    folds = (read_csv(run.folds_csv, ("video_id", "fold"), ("fold",), {"video_id": str}, "folds file")
             if run.folds_csv.exists() else oof)
    return oof.set_index("video_id"), [str(c) for c in classes], folds.set_index("video_id")["fold"]


def align_members(runs: list[Path]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, list[str]]:
    """(labels, per-member probabilities, folds, classes) on the videos present in every member's OOF."""
    loaded = [load_oof(Path(r)) for r in runs]
    oof0, classes, folds0 = loaded[0]
    ids = oof0.index
    for run, (oof, cls, folds) in zip(runs[1:], loaded[1:]):
        if sorted(cls) != sorted(classes):
            raise VidkitError(f"{run} and {runs[0]} predict different classes; they cannot be blended")
        ids = ids[ids.isin(oof.index)]
        shared = folds0.index.intersection(folds.index)
        differ = shared[folds0.loc[shared].to_numpy() != folds.loc[shared].to_numpy()]
        if len(differ):
            raise VidkitError(f"{runs[0]} and {run} use different folds ({len(differ)} videos differ, e.g. "
                              f"{differ[0]!r}); cross-validate both on the competition's folds.csv")
    if not len(ids):
        raise VidkitError(f"no video is in the OOF of every run ({', '.join(map(str, runs))})")
    for run, (oof, _, _) in zip(runs, loaded):
        if len(oof) > len(ids):
            log.warning("%s: %d of its %d OOF videos are not in every run's OOF; left out", run,
                        len(oof) - len(ids), len(oof))
        if (oof.loc[ids, "label"].to_numpy() != oof0.loc[ids, "label"].to_numpy()).any():
            raise VidkitError(f"{run} and {runs[0]} disagree on the labels of the same videos")
    meta = RunDir(runs[0]).meta()
    if is_multilabel(meta):  # multi-hot rows from the runs' label cells
        y = targets(oof0.loc[ids, "label"], classes, meta)
        probs = [oof.loc[ids, classes].to_numpy(dtype=np.float64) for oof, _, _ in loaded]
        return y, probs, oof0.loc[ids, "fold"].to_numpy(), classes
    y = oof0.loc[ids, "label"].map({c: i for i, c in enumerate(classes)})
    if y.isna().any():
        raise VidkitError(f"{RunDir(runs[0]).oof_csv}: label {oof0.loc[ids, 'label'][y.isna()].iloc[0]!r} is not a class")
    y = y.to_numpy(dtype=int)
    probs = [oof.loc[ids, classes].to_numpy(dtype=np.float64) for oof, _, _ in loaded]
    return y, probs, oof0.loc[ids, "fold"].to_numpy(), classes


# ---------------------------------------------------------------- search on OOF

def search_weights(y, probs_list: list[np.ndarray], metric: str, method: str = "mean", search: str = "hill",
                   max_steps: int = 100) -> tuple[list[float], float]:
    """Blend weights (summing to 1) and the blend's OOF score; never worse than the best single member.

    hill: Caruana et al. 2004, greedy forward selection with replacement, starting from the best member and
    adding whichever member improves the blend most, until none does. scipy: Nelder-Mead on softmax-
    parametrised weights (smooth metrics such as logloss), started from the hill-climbing solution.
    """
    check_choice("search", search)
    ml = np.ndim(y) == 2
    spaces = [_to_space(np.asarray(p, dtype=np.float64), method, ml) for p in probs_list]
    singles = [metrics.score(metric, y, _from_space(s, method, ml)) for s in spaces]
    best = _best_index(metric, singles)
    counts, current, total = np.zeros(len(spaces)), singles[best], spaces[best].copy()
    counts[best] = 1
    for _ in range(max_steps):
        trials = [metrics.score(metric, y, _from_space((total + s) / (counts.sum() + 1), method, ml)) for s in spaces]
        pick = _best_index(metric, trials)
        if not metrics.better(metric, trials[pick], current):
            break
        counts[pick] += 1
        total += spaces[pick]
        current = trials[pick]
    weights = counts / counts.sum()
    if search == "scipy" and len(spaces) > 1:
        from scipy.optimize import minimize
        sign = -1 if metrics.higher_is_better(metric) else 1
        loss = lambda z: sign * metrics.score(metric, y, blend(probs_list, softmax(z), method, ml))  # noqa: E731
        z = minimize(loss, np.log(np.maximum(weights, 1e-3)), method="Nelder-Mead",
                     options={"maxiter": 200 * len(spaces), "xatol": 1e-4, "fatol": 1e-7}).x
        if metrics.better(metric, sign * loss(z), current):
            weights, current = softmax(z), sign * loss(z)
    return [float(w) for w in weights], float(current)


def _best_index(metric: str, scores: list[float]) -> int:
    sign = 1 if metrics.higher_is_better(metric) else -1
    return max(range(len(scores)), key=lambda i: -np.inf if np.isnan(scores[i]) else sign * scores[i])


MIN_CLASS_POSITIVES = 5  # fewer OOF positives: a class keeps the global weights (its AP is too noisy to fit)


def search_class_weights(y: np.ndarray, probs_list: list[np.ndarray], method: str, global_weights: list[float],
                         min_positives: int = MIN_CLASS_POSITIVES) -> np.ndarray:
    """Multi-label: a (members, classes) weight table. Per class, the hill-climbing search on that class's OOF
    average precision, kept where it scores at least the global weights' AP on the class; a class with fewer
    than `min_positives` positives keeps the global weights. So no class's OOF AP is below the global blend's."""
    table = np.tile(np.asarray(global_weights, dtype=np.float64)[:, None], (1, y.shape[1]))
    for c in range(y.shape[1]):
        if y[:, c].sum() < min_positives or (1 - y[:, c]).sum() < 1:
            continue
        column = [p[:, [c]] for p in probs_list]
        weights, ap = search_weights(y[:, [c]], column, "map", method)
        if ap >= metrics.score("map", y[:, [c]], blend(column, global_weights, method, True)):
            table[:, c] = weights
    return table


def fit_class_temperatures(y: np.ndarray, probs: np.ndarray) -> list[float]:
    """Multi-label: each class's temperature minimising its OOF log loss (1.0 where scaling does not help)."""
    return [fit_temperature(y[:, [c]], probs[:, [c]]) for c in range(y.shape[1])]


def fit_temperature(y, probs: np.ndarray) -> float:
    """The temperature minimising OOF log loss (1.0 when scaling does not help)."""
    from scipy.optimize import minimize_scalar
    ml = np.ndim(y) == 2
    loss = lambda log_t: metrics.score("logloss", y, calibrate(probs, {"temperature": np.exp(log_t)}, ml))  # noqa: E731
    res = minimize_scalar(loss, bounds=(-3, 3), method="bounded")
    return round(float(np.exp(res.x)), 4) if res.fun < loss(0.0) - 1e-6 else 1.0


def fit_clip(y, probs: np.ndarray) -> float | None:
    """The probability clip (for log loss) that scores best on OOF; None when no clipping is best."""
    best, best_loss = None, metrics.score("logloss", y, probs)
    for clip in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 2e-2, 5e-2):
        loss = metrics.score("logloss", y, calibrate(probs, {"clip": clip}, np.ndim(y) == 2))
        if loss < best_loss - 1e-9:
            best, best_loss = clip, loss
    return best


def fit_thresholds(y: np.ndarray, probs: np.ndarray) -> list[float]:
    """Multi-label: per class, the threshold on its probability that maximises that class's F1 on OOF (the
    middle of the best candidates); 0.5 for a class without positives."""
    f1 = lambda t, c: metrics.skm().f1_score(y[:, c], probs[:, c] >= t, zero_division=0)  # noqa: E731
    out = []
    for c in range(y.shape[1]):
        grid = np.unique(np.round(probs[:, c], 4))
        grid = grid[(grid > 0) & (grid < 1)]
        if not y[:, c].any() or not len(grid):
            out.append(0.5)
            continue
        scores = np.array([f1(t, c) for t in grid])
        best = grid[scores >= scores.max() - 1e-12]
        out.append(round(float(best[len(best) // 2]), 4))
    return out


def fit_threshold(y, p_pos: np.ndarray, pos: int, metric: str) -> float | None:
    """Binary: the threshold on P(positive) that maximises a label metric on OOF (the middle of the best
    candidates, not an edge); None when the argmax (0.5) is as good."""
    label = lambda t: np.where(p_pos >= t, pos, 1 - pos)  # noqa: E731 (p_pos is one column, not a table)
    grid = np.unique(np.quantile(p_pos, np.linspace(0.005, 0.995, 199)).round(4))
    grid = grid[(grid > 0) & (grid < 1)]
    scores = np.array([metrics.score_labels(metric, y, label(t)) for t in grid])
    if not len(grid) or not metrics.better(metric, scores.max(), metrics.score_labels(metric, y, label(0.5))):
        return None
    best = grid[scores >= scores.max() - 1e-12]
    return float(best[len(best) // 2])


def fit_blend(y, probs_list, metric: str, method: str = "mean", search: str = "hill", temperature: bool | None = None,
              pos: int = 1) -> dict:
    """Weights, then calibration on the blended OOF: temperature (default: for logloss), clip, binary threshold."""
    weights, score = search_weights(y, probs_list, metric, method, search)
    spec = {"weights": weights, "method": method, "blend_score": score, "temperature": 1.0, "clip": None,
            "threshold": None}
    ml = np.ndim(y) == 2
    if ml and len(probs_list) > 1:  # weights per class, kept when the competition's metric agrees
        table = search_class_weights(y, probs_list, method, weights)
        per_class = metrics.score(metric, y, blend(probs_list, table, method, True))
        if not np.allclose(table, np.asarray(weights)[:, None]) and not metrics.better(metric, score, per_class):
            spec.update(class_weights=table.tolist(), blend_score=per_class,
                        weights=(table / table.sum(0)).mean(1).tolist())  # a member's mean share over classes
    blended = blend(probs_list, spec_weights(spec), method, ml)
    if ml and (temperature or (temperature is None and metric == "logloss")):
        spec["per_class_temperature"] = fit_class_temperatures(y, blended)
    elif temperature or (temperature is None and metric == "logloss"):
        spec["temperature"] = fit_temperature(y, blended)
    if metric == "logloss":
        spec["clip"] = fit_clip(y, calibrate(blended, spec, ml))
    if ml:  # the `labels` format's per-class decision thresholds
        spec["thresholds"] = fit_thresholds(y, calibrate(blended, spec, ml))
    elif blended.shape[1] == 2 and metric in metrics.LABEL_METRICS:
        spec["threshold"] = fit_threshold(y, calibrate(blended, spec)[:, pos], pos, metric)
    return spec


def spec_score(y, probs_list, spec: dict, metric: str, pos: int = 1) -> float:
    ml = np.ndim(y) == 2
    probs = calibrate(blend(probs_list, spec_weights(spec), spec["method"], ml), spec, ml)
    if spec.get("threshold") is None:
        return metrics.score(metric, y, probs)
    return metrics.score_labels(metric, y, thresholded(probs, spec["threshold"], pos))


def nested_score(y, probs_list, folds, metric: str, pos: int = 1, **fit_kw) -> float:
    """The whole search re-run without each fold and scored on that fold: how much fitting on OOF flatters."""
    blended, labels, ml = np.zeros_like(probs_list[0]), np.zeros(len(y), dtype=int), np.ndim(y) == 2
    for k in np.unique(folds):
        fit, held = folds != k, folds == k
        if len(np.unique(y[fit])) < 2:
            return float("nan")
        spec = fit_blend(y[fit], [p[fit] for p in probs_list], metric, pos=pos, **fit_kw)
        blended[held] = calibrate(blend([p[held] for p in probs_list], spec_weights(spec), spec["method"], ml),
                                  spec, ml)
        if ml:
            continue
        t = spec["threshold"]
        labels[held] = blended[held].argmax(1) if t is None else thresholded(blended[held], t, pos)
    if blended.shape[1] == 2 and metric in metrics.LABEL_METRICS:
        return metrics.score_labels(metric, y, labels)
    return metrics.score(metric, y, blended)


# ---------------------------------------------------------------- the `ensemble` verb

def per_class_entries(spec: dict, classes: list[str]) -> dict:
    """ensemble.yaml's multi-label per-class keys: `per_class_weights` (class: one weight per member, in
    `members` order) and `per_class_temperature` (class: T), where the search fitted them."""
    out = {}
    if spec.get("class_weights") is not None:
        table = np.asarray(spec["class_weights"])
        out["per_class_weights"] = {c: [round(float(w), 6) for w in table[:, i]] for i, c in enumerate(classes)}
    if spec.get("per_class_temperature") is not None:
        out["per_class_temperature"] = dict(zip(classes, spec["per_class_temperature"]))
    return out


def run_ensemble(comp: Competition | str | None = None, runs: list[str] | None = None,
                 method: str = CHOICES["method"][0], out: str | None = None, search: str = CHOICES["search"][0],
                 temperature: bool | None = None, out_root: Path | None = None) -> Path:
    """Search blend weights and calibration on the members' OOF predictions; print the scores; write ensemble.yaml
    (default: <out_root>/<competition>/, out_root default weights/). No `comp`: the competition of `runs`."""
    comp = as_competition(comp if comp is not None else competition_of(runs) if runs else DEFAULT_COMP)
    if comp.task == "spotting":  # per-frame score averaging before peak picking: vidkit.flows.spotting
        from vidkit.flows.spotting import run_ensemble as spotting_ensemble
        return spotting_ensemble(comp, runs, out, out_root)
    metrics.check_metric(comp.metric)
    runs = runs or [str(r) for r in CompDir(comp, out_root).finished_runs()]
    for r in runs:
        name = RunDir(r).meta().get("competition")
        if name not in (None, comp.name):
            raise VidkitError(f"{r} is a run of competition {name!r}, not {comp.name!r}; pass comp=")
    y, probs_list, folds, classes = align_members([Path(r) for r in runs])
    pos = positive_index(classes, comp.positive_class)
    spec = fit_blend(y, probs_list, comp.metric, method, search, temperature, pos)
    singles = [metrics.score(comp.metric, y, p) for p in probs_list]
    final = spec_score(y, probs_list, spec, comp.metric, pos)
    nested = nested_score(y, probs_list, folds, comp.metric, pos, method=method, search=search,
                          temperature=temperature) if len(runs) > 1 else float("nan")
    direction = "higher" if metrics.higher_is_better(comp.metric) else "lower"
    print(f"ensemble of {len(runs)} runs on {len(y)} OOF videos ({comp.metric}, {direction} is better), "
          f"method={method}, search={search}:")
    width = max(len(r) for r in runs) + 2
    for r, s, w in zip(runs, singles, spec["weights"]):
        print(f"  {r:{width}s}{s:.4f}  weight {w:.3f}" + ("  (dropped)" if w == 0 else ""))
    print(f"  {'blend':{width}s}{spec['blend_score']:.4f}" + ("  (weights per class)" if spec.get("class_weights")
                                                              is not None else ""))
    print(f"  {'+ calibration':{width}s}{final:.4f}  (temperature {spec['temperature']}, "
          f"threshold {spec['threshold']}, clip {spec['clip']})")
    if metrics.better(comp.metric, max(singles) if metrics.higher_is_better(comp.metric) else min(singles), final):
        print(f"  note: method={method} scores worse than the best single run; method=mean may suit {comp.metric}")
    if not np.isnan(nested):
        print(f"  {'nested CV':{width}s}{nested:.4f}  (the search refitted without each fold, scored on it)")
    # dropped runs stay listed with weight 0, so `submit runs=<the same runs>` still finds this blend
    members = [{"run": r, "weight": round(w, 6), "score": round(s, 6)}
               for r, w, s in zip(runs, spec["weights"], singles)]
    path = Path(out) if out else default_ensemble_path(comp, out_root)
    write_ensemble({"metric": comp.metric, "method": method, "members": members, "score": round(final, 6),
                    "temperature": spec["temperature"], "threshold": spec["threshold"], "clip": spec["clip"],
                    "competition": comp.name, "positive_class": classes[pos] if len(classes) == 2 else None,
                    "n_videos": int(len(y)), "nested_score": None if np.isnan(nested) else round(nested, 6),
                    "search": search, **({"task": "multilabel", "thresholds": dict(zip(classes, spec["thresholds"]))}
                                         if "thresholds" in spec else {}), **per_class_entries(spec, classes)}, path)
    print(f"wrote {path}")
    return path
