"""OOF blending on constructed predictions: weights, calibration, ensemble.yaml, refusals."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from vidkit.flows import ensemble as E
from vidkit import metrics
from vidkit.choices import CHOICES
from vidkit.errors import VidkitError

CLASSES = ["a", "b", "c", "d"]


def member(y, signal, seed, n_classes=4):
    """Softmax of noise plus `signal` on the true class: larger signal, better member."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(y), n_classes))
    logits[np.arange(len(y)), y] += signal
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


@pytest.fixture(scope="module")
def y():
    return np.random.default_rng(0).integers(0, 4, 400)


def test_blend_methods_by_hand():
    p, q = np.array([[0.9, 0.1]]), np.array([[0.5, 0.5]])
    assert E.blend([p, q], [0.5, 0.5], "mean") == pytest.approx(np.array([[0.7, 0.3]]))
    assert E.blend([p, q], [3, 1], "mean") == pytest.approx(np.array([[0.8, 0.2]]))  # weights are normalised
    # logit: mean of log-probabilities, softmax again = normalised geometric mean
    geometric = E.blend([np.array([[0.8, 0.2]]), np.array([[0.2, 0.8]])], [1, 1], "logit")
    assert geometric == pytest.approx(np.array([[0.5, 0.5]]))
    assert E.blend([p, q], [1, 0], "logit") == pytest.approx(p)
    rng = np.random.default_rng(1)
    probs = [rng.dirichlet(np.ones(5), 30) for _ in range(3)]
    for method in CHOICES["method"]:
        out = E.blend(probs, [0.2, 0.5, 0.3], method)
        assert out.shape == (30, 5) and np.allclose(out.sum(1), 1) and (out >= 0).all()
    # rank: only the order of each class column counts, so a monotone distortion of a member changes nothing
    yb, pb = (rng.random(50) < 0.5).astype(int), rng.dirichlet(np.ones(2), 50)
    distorted = np.stack([1 - pb[:, 1] ** 5, pb[:, 1] ** 5], 1)
    assert E.blend([pb, distorted], [0.5, 0.5], "rank") == pytest.approx(E.blend([pb], [1], "rank"))
    assert metrics.score("auc", yb, E.blend([pb], [1], "rank")) == pytest.approx(metrics.score("auc", yb, pb))
    with pytest.raises(VidkitError, match="method: 'median'"):
        E.blend(probs, [1, 1, 1], "median")
    with pytest.raises(VidkitError, match="one non-negative weight per member"):
        E.blend(probs, [1, -1, 1], "mean")


def test_calibrate_temperature_and_clip():
    p = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]])
    flat = E.calibrate(p, {"temperature": 2.0})
    assert (flat.argmax(1) == p.argmax(1)).all() and (flat.max(1) < p.max(1)).all() and np.allclose(flat.sum(1), 1)
    assert E.calibrate(p, {"temperature": 1.0, "clip": None}) == pytest.approx(p)
    assert E.calibrate(np.array([[1.0, 0.0]]), {"clip": 0.01}) == pytest.approx(np.array([[0.99, 0.01]]))


@pytest.mark.parametrize("metric", ["accuracy", "logloss", "auc", "f1_macro"])
@pytest.mark.parametrize("method", ["mean", "logit"])
def test_clearly_better_member_gets_most_weight(y, metric, method):
    probs = [member(y, 0.5, 1), member(y, 3.0, 2), member(y, 0.5, 3)]
    weights, score = E.search_weights(y, probs, metric, method)
    assert weights[1] >= 0.8 and sum(weights) == pytest.approx(1)
    singles = [metrics.score(metric, y, p) for p in probs]
    best = max(singles) if metrics.higher_is_better(metric) else min(singles)
    assert not metrics.better(metric, best, score)  # never worse than the best member on its own OOF
    assert score == pytest.approx(metrics.score(metric, y, E.blend(probs, weights, method)))


@pytest.mark.parametrize("search", ["hill", "scipy"])
def test_two_comparable_members_blend_better_than_either(y, search):
    probs = [member(y, 1.5, 4), member(y, 1.5, 5)]
    weights, score = E.search_weights(y, probs, "logloss", "mean", search)
    assert min(weights) > 0.2
    assert score < min(metrics.score("logloss", y, p) for p in probs) - 0.01


def test_temperature_fixes_overconfidence(y):
    sharp = member(y, 1.5, 6) ** 4
    sharp /= sharp.sum(1, keepdims=True)
    t = E.fit_temperature(y, sharp)
    assert t > 1.5
    assert metrics.score("logloss", y, E.calibrate(sharp, {"temperature": t})) < metrics.score("logloss", y, sharp)
    good = member(y, 1.5, 7)
    assert E.fit_temperature(y, good) == pytest.approx(1.0, abs=0.35)


def test_binary_threshold_tuned_on_oof():
    rng = np.random.default_rng(8)
    y = (rng.random(300) < 0.5).astype(int)
    p_yes = np.where(y == 1, rng.uniform(0.3, 0.45, 300), rng.uniform(0.05, 0.28, 300))  # under-confident positives
    probs = np.stack([1 - p_yes, p_yes], 1)
    assert metrics.score("accuracy", y, probs) < 0.6  # argmax (0.5) calls nearly everything "no"
    spec = E.fit_blend(y, [probs], "accuracy", pos=1)
    assert p_yes[y == 0].max() < spec["threshold"] <= p_yes[y == 1].min()
    labels = E.predict_labels(probs, {**spec, "positive_class": "yes"}, ["no", "yes"])
    assert (labels == y).mean() == 1.0
    assert E.spec_score(y, [probs], spec, "accuracy") == 1.0
    assert E.fit_blend(y, [probs], "auc")["threshold"] is None  # AUC does not use a threshold


def write_run(root, name, y, probs, folds, competition="toy", drop=0):
    run = root / name
    run.mkdir(parents=True)
    ids = [f"v{i:03d}" for i in range(len(y))]
    oof = pd.DataFrame({"video_id": ids, "fold": folds, "label": [CLASSES[i] for i in y]})
    oof = pd.concat([oof, pd.DataFrame(probs, columns=CLASSES)], axis=1).iloc[drop:]
    oof.to_csv(run / "oof.csv", index=False)
    oof[["video_id", "label", "fold"]].to_csv(run / "folds.csv", index=False)
    (run / "run.json").write_text(json.dumps({"classes": CLASSES, "competition": competition}))
    (run / "cv_report.json").write_text(json.dumps({"metric": "accuracy", "score": 0.0, "fold_scores": [0.0]}))
    return run


@pytest.fixture
def toy(tmp_path, y):
    comp = tmp_path / "toy.yaml"
    comp.write_text("name: toy\ntrain_dir: train\nmetric: logloss\nn_folds: 5\n")
    folds = np.arange(len(y)) % 5
    good = write_run(tmp_path / "weights" / "toy", "good", y, member(y, 2.5, 10), folds)
    weak = write_run(tmp_path / "weights" / "toy", "weak", y, member(y, 1.0, 11), folds, drop=7)
    return comp, good, weak, folds


def test_run_ensemble_writes_a_loadable_yaml(toy, tmp_path, monkeypatch, capsys):
    comp, good, weak, _ = toy
    monkeypatch.chdir(tmp_path)
    path = E.run_ensemble(str(comp), [str(good), str(weak)])
    assert path == E.default_ensemble_path("toy") and path.is_file()
    spec = E.load_ensemble(path)
    assert spec["metric"] == "logloss" and spec["method"] == "mean" and spec["n_videos"] == 400 - 7
    weights = {m["run"]: m["weight"] for m in spec["members"]}
    assert sum(weights.values()) == pytest.approx(1) and weights[str(good)] > 0.5
    assert spec["score"] <= min(m["score"] for m in spec["members"])  # logloss: lower is better
    assert spec["temperature"] > 0 and spec["threshold"] is None
    out = capsys.readouterr().out
    assert str(good) in out and "blend" in out and "nested CV" in out


def test_only_shared_videos_and_same_folds(toy, tmp_path, y):
    comp, good, weak, folds = toy
    labels, probs, used_folds, classes = E.align_members([good, weak])
    assert len(labels) == 400 - 7 and all(len(p) == 400 - 7 for p in probs) and classes == CLASSES
    other = write_run(tmp_path / "weights" / "toy", "other_folds", y, member(y, 2.0, 12), (folds + 1) % 5)
    with pytest.raises(VidkitError, match=f"{good} and {other} use different folds"):
        E.run_ensemble(str(comp), [str(good), str(other)], out=str(tmp_path / "e.yaml"))
    foreign = write_run(tmp_path / "weights" / "x", "foreign", y, member(y, 2.0, 13), folds, competition="x")
    with pytest.raises(VidkitError, match="run of competition 'x', not 'toy'"):
        E.run_ensemble(str(comp), [str(good), str(foreign)], out=str(tmp_path / "e.yaml"))


@pytest.mark.parametrize("text, error", [
    ("metric: accuracy\nmethod: median\nmembers: [{run: a, weight: 1}]", "method: 'median'"),
    ("metric: accuracy\nmembers: [{run: a, weight: -1}]", r"members\[0\]: weight: expected a number >= 0"),
    ("metric: accuracy\nmembers: []", "members: expected a non-empty list"),
    ("metric: accuracy\nmembers: [{run: a, weight: 1}]\nwieghts: 2", "unknown key 'wieghts'"),
    ("metric: accuracy\nmembers: [{run: a, weight: 1}]\nthreshold: 1.5", "threshold: 1.5 is out of range"),
    ("metric: accuracy\nmembers: [{run: a, weight: heavy}]", r"members\[0\]: weight: expected float, got 'heavy'"),
    ("metric: accuracy\nmembers: [{run: a, weight: 1, wieght: 2}]", r"members\[0\]: unknown key 'wieght'"),
    ("metric: accuracy\nmembers: [{run: a, weight: 1}]\nn_videos: many", "n_videos: expected int"),
])
def test_bad_ensemble_yaml_is_one_clear_error(tmp_path, text, error):
    path = tmp_path / "ensemble.yaml"
    path.write_text(text)
    with pytest.raises(VidkitError, match=error) as e:
        E.load_ensemble(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_load_normalises_weights(tmp_path):
    path = tmp_path / "ensemble.yaml"
    path.write_text("metric: accuracy\nmembers: [{run: a, weight: 3}, {run: b, weight: 1}]\n")
    spec = E.load_ensemble(path)
    assert [m["weight"] for m in spec["members"]] == [0.75, 0.25]
    assert spec["method"] == "mean" and spec["temperature"] == 1.0 and spec["clip"] is None


def test_ensemble_verb(toy, tmp_path):
    comp, good, weak, _ = toy
    out = tmp_path / "ens.yaml"
    proc = subprocess.run([sys.executable, "-m", "vidkit", "ensemble", f"comp={comp}", f"runs={good},{weak}",
                           "method=logit", f"out={out}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "weight" in proc.stdout and f"wrote {out}" in proc.stdout
    assert yaml.safe_load(out.read_text())["method"] == "logit"
    proc = subprocess.run([sys.executable, "-m", "vidkit", "ensemble", f"comp={comp}", "methd=mean"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown key 'methd'" in proc.stderr


def test_ensemble_without_comp_uses_the_runs_competition(toy, tmp_path, y, monkeypatch, capsys):
    from vidkit.cli import main
    comp, good, weak, folds = toy
    monkeypatch.chdir(tmp_path)
    meta = json.loads((good / "run.json").read_text())
    (good / "run.json").write_text(json.dumps({**meta, "competition_yaml": str(comp)}))  # as cv records it
    (weak / "config.yaml").write_text(f"comp: {comp}\n")  # a run from before: config.yaml's comp
    assert main(["ensemble", f"runs={good},{weak}"]) == 0
    assert E.load_ensemble(E.default_ensemble_path("toy"))["competition"] == "toy"
    other = tmp_path / "other.yaml"
    other.write_text("name: other\ntrain_dir: train\nmetric: logloss\n")
    foreign = write_run(tmp_path / "weights" / "other", "foreign", y, member(y, 2.0, 13), folds, competition="other")
    (foreign / "config.yaml").write_text(f"comp: {other}\n")
    with pytest.raises(VidkitError, match=f"runs of different competitions: .*{good}.*{foreign}"):
        E.run_ensemble(None, [str(good), str(foreign)])
    assert main(["ensemble", f"runs={good},{foreign}"]) == 2
    assert "runs of different competitions" in capsys.readouterr().err
