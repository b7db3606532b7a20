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
}


def check_metric(name: str) -> None:
    check_choice("metric", name, METRICS)


def score(name: str, y_true, probs) -> float:
    check_metric(name)
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(1, keepdims=True)  # float32 softmax sums drift from 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. sklearn on top-5 of <= 5 classes
        return float(METRICS[name][0](np.asarray(y_true), probs))


def higher_is_better(name: str) -> bool:
    check_metric(name)
    return METRICS[name][1]


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
    """Precision, recall (= per-class accuracy), F1 and support of every class, from the argmax."""
    pred = np.asarray(probs).argmax(1)
    p, r, f, n = skm().precision_recall_fscore_support(y_true, pred, labels=np.arange(len(classes)), zero_division=0)
    return {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(n[i])}
            for i, c in enumerate(classes)}


def all_scores(y_true, probs) -> dict[str, float]:
    out = {}
    for name in METRICS:
        try:
            out[name] = score(name, y_true, probs)
        except ValueError:  # e.g. AUC with one class present
            out[name] = float("nan")
    return out
