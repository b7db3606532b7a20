"""Metric values against hand-computed cases; the plots are written and are valid PNG."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from vidkit import metrics
from vidkit.analysis import plots
from vidkit.errors import VidkitError

PNG = b"\x89PNG\r\n\x1a\n"
# 3 classes, 4 videos: argmax = [0, 1, 1, 1] against y = [0, 1, 2, 1]
Y3 = np.array([0, 1, 2, 1])
P3 = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.3, 0.4, 0.3]])
# binary, 5 videos: P(1) = [.9, .4, .35, .8, .7] -> argmax [1, 0, 0, 1, 1]; TP 2, FN 1, TN 1, FP 1
Y2 = np.array([1, 1, 0, 0, 1])
P2 = np.stack([1 - np.array([0.9, 0.4, 0.35, 0.8, 0.7]), [0.9, 0.4, 0.35, 0.8, 0.7]], 1)


def test_multiclass_values_by_hand():
    assert metrics.score("accuracy", Y3, P3) == pytest.approx(3 / 4)
    assert metrics.score("logloss", Y3, P3) == pytest.approx(-(math.log(.7) + math.log(.6) + math.log(.3)
                                                               + math.log(.4)) / 4)
    # per-class F1: class 0 = 1, class 1 = 2 * (2/3 * 1) / (2/3 + 1) = 0.8, class 2 (never predicted) = 0
    assert metrics.score("f1_macro", Y3, P3) == pytest.approx((1 + 0.8 + 0) / 3)
    assert metrics.score("top5", Y3, P3) == 1.0  # 3 classes: the true class is always in the top 5
    assert metrics.score("accuracy", Y3, P3 * 3) == pytest.approx(3 / 4)  # unnormalised rows are renormalised


def test_per_class_precision_recall_by_hand():
    pc = metrics.per_class(Y3, P3, ["a", "b", "c"])
    assert pc["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert pc["b"]["precision"] == pytest.approx(2 / 3) and pc["b"]["recall"] == 1.0 and pc["b"]["support"] == 2
    assert pc["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_binary_values_by_hand():
    assert metrics.score("accuracy", Y2, P2) == pytest.approx(3 / 5)
    assert metrics.score("mcc", Y2, P2) == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))
    # positive/negative pairs ranked right: (.9 > .35, .9 > .8, .4 > .35, .7 > .35) = 4 of 6
    assert metrics.score("auc", Y2, P2) == pytest.approx(4 / 6)
    assert metrics.score_labels("accuracy", Y2, np.array([1, 1, 0, 0, 0])) == pytest.approx(4 / 5)


def test_one_vs_rest_auc_and_missing_class():
    y = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[y] * 0.7 + 0.1
    assert metrics.score("auc", y, perfect) == pytest.approx(1.0)
    assert metrics.score("auc", y, perfect[:, ::-1]) < 0.5
    scores = metrics.all_scores(np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]]))  # one class present
    assert math.isnan(scores["auc"]) and scores["accuracy"] == 1.0


def test_direction_and_unknown_metric():
    assert metrics.better("accuracy", 0.9, 0.8) and not metrics.better("accuracy", 0.8, 0.8)
    assert metrics.better("logloss", 0.3, 0.5) and not metrics.better("logloss", 0.5, 0.3)
    assert metrics.better("auc", 0.6, float("nan")) and not metrics.better("auc", float("nan"), 0.6)
    with pytest.raises(VidkitError, match="'rmse' is not one of"):
        metrics.score("rmse", Y3, P3)
    with pytest.raises(VidkitError, match="not a label metric"):
        metrics.score_labels("logloss", Y2, Y2)


def test_plots_are_valid_png(tmp_path):
    rng = np.random.default_rng(0)
    classes = [f"class_with_a_long_name_{i:03d}" for i in range(120)]  # 100+ classes must still render
    y = rng.integers(0, 120, 600)
    pred = np.where(rng.random(600) < 0.6, y, rng.integers(0, 120, 600))
    plots.plot_confusion(y, pred, classes, tmp_path / "cm.png")
    plots.plot_per_class(y, pred, classes, tmp_path / "pc.png")
    folds = pd.DataFrame({"label": [classes[i] for i in y], "fold": np.arange(600) % 5})
    plots.plot_fold_distribution(folds, classes, tmp_path / "dist.png")
    plots.plot_fold_distribution(folds.head(40).assign(label=["a", "b"] * 20), ["a", "b"], tmp_path / "dist2.png")
    log = tmp_path / "metrics.jsonl"
    log.write_text("\n".join(json.dumps({"fold": 0, "epoch": e, "train_loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1),
                                         "val_score": e / 4, "metric": "accuracy", "lr": 1e-3}) for e in range(4)))
    plots.plot_curves([log], tmp_path / "curves.png")
    for name in ("cm", "pc", "dist", "dist2", "curves"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == PNG and len(data) > 1000, name
    width = int.from_bytes((tmp_path / "cm.png").read_bytes()[16:20], "big")  # IHDR width
    assert width >= 2000  # the confusion matrix grows with the class count so 120 names stay legible
