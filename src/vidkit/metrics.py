"""Video-level metrics on class probabilities (sklearn where it has them)."""
from __future__ import annotations

import warnings

import numpy as np

from vidkit.choices import check_choice
from vidkit.errors import VidkitError


def skm():
    """sklearn.metrics, imported on first use (1-2 s): verbs that only need a metric's name or direction skip it."""
    from sklearn import metrics
    return metrics


def _top_k(y, p, k=5):
    k = min(k, p.shape[1])
    return skm().top_k_accuracy_score(y, p, k=k, labels=np.arange(p.shape[1]))


def _auc(y, p):
    if p.shape[1] == 2:
        return skm().roc_auc_score(y, p[:, 1])
    present = np.unique(y)
    return skm().roc_auc_score(y, p[:, present] / p[:, present].sum(1, keepdims=True), multi_class="ovr",
                             labels=present) if len(present) > 2 else float("nan")


def _binary_logloss(y, p):
    """Multi-label: the mean binary cross-entropy over every (video, class)."""
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _multilabel_auc(y, p):
    present = (y.min(0) == 0) & (y.max(0) == 1)
    return skm().roc_auc_score(y[:, present], p[:, present], average="macro") if present.any() else float("nan")


def mean_ap(y, p):
    """Macro mean average precision (Charades): sklearn's AP per class, averaged over classes with a positive."""
    present = y.max(0) == 1
    if not present.any():
        return float("nan")
    return float(np.mean([skm().average_precision_score(y[:, c], p[:, c]) for c in np.flatnonzero(present)]))


def gap(y, p, k: int = 20):
    """YouTube-8M's Global Average Precision: each video's top k (class, confidence) predictions pooled and
    sorted by confidence; AP over that list, recall counted against every true label."""
    k = min(k, p.shape[1])
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    conf = np.take_along_axis(p, top, 1).ravel()
    hit = np.take_along_axis(y, top, 1).ravel()
    positives = y.sum()
    if positives == 0:
        return float("nan")
    hit = hit[np.argsort(-conf, kind="stable")]
    precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    return float((precision * hit).sum() / positives)


def _f1_multilabel(average: str):
    return lambda y, p: skm().f1_score(y, (p >= 0.5).astype(int), average=average, zero_division=0)


LABEL_METRICS = {  # metrics of the predicted label alone, fn(y_true, pred, n_classes): a decision threshold can change them
    "accuracy": lambda y, pred, n: skm().accuracy_score(y, pred),
    "f1_macro": lambda y, pred, n: skm().f1_score(y, pred, average="macro", labels=np.arange(n)),
    "mcc": lambda y, pred, n: skm().matthews_corrcoef(y, pred),
}


def _of_argmax(name: str):
    """A label metric on the most probable class."""
    return lambda y, p: LABEL_METRICS[name](y, p.argmax(1), p.shape[1])


METRICS = {  # name: (fn(y_true, probs), higher is better); the choice list `metric` in vidkit.choices
    "accuracy": (_of_argmax("accuracy"), True),
    "top5": (_top_k, True),
    "f1_macro": (_of_argmax("f1_macro"), True),
    "logloss": (lambda y, p: skm().log_loss(y, np.clip(p, 1e-15, 1), labels=np.arange(p.shape[1])), False),
    "auc": (_auc, True),
    "mcc": (_of_argmax("mcc"), True),
    # multi-label (task: multilabel): y_true is multi-hot (n_videos, n_classes), probs are per-class sigmoids
    "map": (mean_ap, True),
    "gap": (gap, True),                     # `gap@K` for another k (the competition's gap_k)
    "f1_micro": (_f1_multilabel("micro"), True),
    "f1_samples": (_f1_multilabel("samples"), True),
}
MULTILABEL_METRICS = ("map", "gap", "f1_micro", "f1_samples", "logloss", "auc")  # the ones defined on multi-hot y
MULTILABEL_ONLY = ("map", "gap", "f1_micro", "f1_samples")
MULTILABEL_FNS = {"logloss": _binary_logloss, "auc": _multilabel_auc}  # their multi-label versions


def metric_fn(name: str):
    """The function of a metric name; `gap@K` is gap over each video's top K."""
    base, _, k = name.partition("@")
    if base == "gap" and k.isdigit() and int(k) > 0:
        return lambda y, p: gap(y, p, int(k))
    check_metric(name)
    return METRICS[name][0]


def check_metric(name: str) -> None:
    base, _, k = name.partition("@")
    if base == "gap" and k.isdigit() and int(k) > 0:  # gap@K: YouTube-8M's GAP over each video's top K
        return
    check_choice("metric", name, {**METRICS, **EVENT_METRICS})


def score(name: str, y_true, probs) -> float:
    """A metric; a 2-D (multi-hot) y_true means multi-label: probabilities are per class, not normalised."""
    fn = metric_fn(name)
    probs, y_true = np.asarray(probs, dtype=np.float64), np.asarray(y_true)
    if y_true.ndim == 2:
        fn = MULTILABEL_FNS.get(name, fn)
    else:
        probs = probs / probs.sum(1, keepdims=True)  # float32 softmax sums drift from 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. sklearn on top-5 of <= 5 classes
        return float(fn(y_true, probs))


def higher_is_better(name: str) -> bool:
    if name in EVENT_METRICS:
        return EVENT_METRICS[name][1]
    check_metric(name)
    return METRICS[name.partition("@")[0]][1]


def better(name: str, a: float, b: float) -> bool:
    """True when score `a` is strictly better than `b` for metric `name` (NaN is never better)."""
    if np.isnan(a):
        return False
    return np.isnan(b) or (a > b if higher_is_better(name) else a < b)


def score_labels(name: str, y_true, pred, n_classes: int | None = None) -> float:
    """A label metric on hard predictions (e.g. after a tuned binary threshold); `n_classes` default: the
    largest class index seen + 1."""
    if name not in LABEL_METRICS:
        raise VidkitError(f"metric: {name!r} is not a label metric ({', '.join(LABEL_METRICS)})")
    y_true, pred = np.asarray(y_true), np.asarray(pred)
    n = n_classes or int(max(y_true.max(initial=0), pred.max(initial=0))) + 1
    return float(LABEL_METRICS[name](y_true, pred, n))


def per_class(y_true, probs, classes: list[str]) -> dict[str, dict]:
    """Precision, recall (= per-class accuracy), F1 and support of every class, from the argmax (multi-label:
    from p >= 0.5, plus each class's average precision `ap`)."""
    if np.ndim(y_true) == 2:
        return _per_class_multilabel(np.asarray(y_true), np.asarray(probs), classes)
    pred = np.asarray(probs).argmax(1)
    p, r, f, n = skm().precision_recall_fscore_support(y_true, pred, labels=np.arange(len(classes)), zero_division=0)
    return {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(n[i])}
            for i, c in enumerate(classes)}


def _per_class_multilabel(y, probs, classes: list[str]) -> dict[str, dict]:
    p, r, f, n = skm().precision_recall_fscore_support(y, (probs >= 0.5).astype(int), zero_division=0)
    ap = [float(skm().average_precision_score(y[:, i], probs[:, i])) if y[:, i].any() else float("nan")
          for i in range(len(classes))]
    return {c: {"ap": ap[i], "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                "support": int(n[i])} for i, c in enumerate(classes)}


def all_scores(y_true, probs) -> dict[str, float]:
    out = {}
    for name in (MULTILABEL_METRICS if np.ndim(y_true) == 2 else [m for m in METRICS if m not in MULTILABEL_ONLY]):
        try:
            out[name] = score(name, y_true, probs)
        except ValueError:  # e.g. AUC with one class present
            out[name] = float("nan")
    return out


# ---------------------------------------------------------------- spotting: scored event lists, not probabilities

def event_ap(truth: dict, preds: list[tuple], tolerance: float) -> float:
    """Average precision of one class's detections at one tolerance. `truth`: {video_id: event positions};
    `preds`: (video_id, position, score). Greedily by score, a detection matches the nearest unmatched
    ground-truth event of its video within `tolerance` (a second detection of a matched event is a false
    positive, so is one outside the tolerance); AP = sum over the ranks of (recall step) x precision, the
    recall counted against every ground-truth event (NaN when the class has none)."""
    n_truth = sum(len(v) for v in truth.values())
    if n_truth == 0:
        return float("nan")
    order = sorted(range(len(preds)), key=lambda i: -preds[i][2])  # stable: ties keep their order
    free = {vid: np.asarray(pos, dtype=np.float64) for vid, pos in truth.items()}
    used = {vid: np.zeros(len(pos), bool) for vid, pos in free.items()}
    hits = np.zeros(len(order), bool)
    for rank, i in enumerate(order):
        vid, pos, _ = preds[i]
        if vid not in free:
            continue
        gap = np.where(used[vid], np.inf, np.abs(free[vid] - pos))
        if len(gap) and gap.min() <= tolerance + 1e-9:
            used[vid][gap.argmin()] = True
            hits[rank] = True
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return float((precision[hits] / n_truth).sum())


def spotting_map(truth, preds, tolerances: list[float], classes: list[str] | None = None) -> dict:
    """Event-detection mAP (DFL / SoccerNet): AP per class and tolerance, averaged over the classes that have
    events, then over the tolerances. `truth`: DataFrame video_id, pos, event; `preds`: video_id, pos, event,
    score (pos in one unit: frames or seconds, as the tolerances). Returns score, per_tolerance, per_class."""
    classes = classes or sorted(set(truth["event"]))
    table = np.full((len(tolerances), len(classes)), np.nan)
    for c, name in enumerate(classes):
        mine = truth[truth["event"] == name]
        by_video = {vid: g["pos"].to_numpy() for vid, g in mine.groupby("video_id")}
        found = preds[preds["event"] == name]
        rows = list(zip(found["video_id"], found["pos"], found["score"]))
        for t, tol in enumerate(tolerances):
            table[t, c] = event_ap(by_video, rows, tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class without events is NaN, left out of the means
        per_tol = np.nanmean(table, axis=1)
        per_class = np.nanmean(table, axis=0)
    return {"score": float(np.nanmean(per_tol)) if len(tolerances) else float("nan"),
            "per_tolerance": {str(t): float(s) for t, s in zip(tolerances, per_tol)},
            "per_class": {c: float(s) for c, s in zip(classes, per_class)}}


EVENT_METRICS = {"spotting_map": (spotting_map, True)}  # competitions of task `spotting` (vidkit.flows.spotting)
