"""Multi-label competitions (`task: multilabel`): metrics, grouped iterative stratification, the CSV column
mapping and its bad inputs, the `labels`/`pairs` formats, and one synthetic competition end to end."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import average_precision_score, f1_score

from conftest import TINY
from multilabel_data import CUES, make_multilabel_comp
from vidkit.config import load_competition
from vidkit.data import index_train
from vidkit.data.folds import make_folds
from vidkit.data.labels import multi_hot
from vidkit.errors import VidkitError
from vidkit.formats import format_submission
from vidkit.metrics import all_scores, gap, score

Y = np.array([[1, 0, 1], [0, 1, 0]])
P = np.array([[0.9, 0.8, 0.1], [0.3, 0.7, 0.2]])


def test_metrics_by_hand():
    # pooled top-2: .9 hit, .8 miss, .7 hit, .3 miss; 3 true labels -> (1/1 + 2/3) / 3
    assert score("gap@2", Y, P) == pytest.approx((1 + 2 / 3) / 3)
    # k = 20 (>= classes): all six pooled, the last hit (.1) at rank 6 -> (1 + 2/3 + 3/6) / 3
    assert score("gap", Y, P) == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    assert gap(Y, P, k=1) == pytest.approx((1 + 1) / 3)  # top-1: .9 hit, .7 hit
    assert score("map", Y, P) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert score("f1_micro", Y, P) == pytest.approx(4 / 6)  # tp 2, fp 1, fn 1
    assert score("f1_samples", Y, P) == pytest.approx((0.5 + 1) / 2)
    assert score("logloss", Y, P) == pytest.approx(-np.mean(Y * np.log(P) + (1 - Y) * np.log(1 - P)))


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 5)) < 0.3).astype(int)
    y[0] = 1  # every class has a positive
    p = np.clip(0.5 * y + rng.random((60, 5)) * 0.6, 0, 1)
    assert score("map", y, p) == pytest.approx(average_precision_score(y, p, average="macro"))
    assert score("f1_micro", y, p) == pytest.approx(f1_score(y, p >= 0.5, average="micro"))
    assert score("f1_samples", y, p) == pytest.approx(f1_score(y, p >= 0.5, average="samples", zero_division=0))
    assert score("gap", y, p) == pytest.approx(score("gap@5", y, p))  # k >= classes: every prediction
    assert score("gap@2", y, p) < score("gap", y, p)
    assert set(all_scores(y, p)) == {"map", "gap", "f1_micro", "f1_samples", "logloss", "auc"}


def _table(n, n_classes, groups, rng):
    y = (rng.random((n, n_classes)) < rng.uniform(0.05, 0.5, n_classes)).astype(int)
    labels = [" ".join(f"c{j}" for j in np.flatnonzero(r)) for r in y]
    return pd.DataFrame({"video_id": [f"v{i}" for i in range(n)], "group": groups, "label": labels})


def test_multilabel_folds_rule():
    """No group straddles folds; with one video per group every label's count per fold is within one of even;
    with groups, within the largest group's count of that label."""
    rng = np.random.default_rng(1)
    classes = [f"c{j}" for j in range(6)]
    for trial in range(6):
        n = 90
        groups = [f"v{i}" for i in range(n)] if trial % 2 else [f"g{i // 3}" for i in range(n)]
        table = _table(n, 6, groups, rng)
        folds = make_folds(table, 5, seed=trial, label_sep=" ")
        assert (folds.groupby("group")["fold"].nunique() == 1).all()
        y = multi_hot(folds["label"], classes)
        per_fold = pd.DataFrame(y).groupby(folds["fold"].to_numpy()).sum().to_numpy()
        spread = np.abs(per_fold - y.sum(0) / 5)
        largest = pd.DataFrame(y).groupby(folds["group"].to_numpy()).sum().max().to_numpy()
        assert (spread <= (1 if trial % 2 else np.maximum(largest, 1))).all(), (trial, spread.max())
        assert folds["fold"].nunique() == 5


@pytest.fixture(scope="module")
def ml_comp(tmp_path_factory) -> Path:
    return make_multilabel_comp(tmp_path_factory.mktemp("ml"))


def _variant(comp: Path, tmp_path: Path, csv_rows: list[dict] | None = None, **keys) -> Path:
    """A copy of the competition yaml (paths made absolute) with other keys and, optionally, another train.csv."""
    spec = yaml.safe_load(comp.read_text())
    for k in ("train_dir", "train_csv", "test_dir", "sample_submission"):
        spec[k] = str((comp.parent / spec[k]).resolve())
    if csv_rows is not None:
        pd.DataFrame(csv_rows).to_csv(tmp_path / "train.csv", index=False)
        spec["train_csv"] = str(tmp_path / "train.csv")
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump({**spec, **keys}))
    return path


def test_column_mapping_and_sub_folders(ml_comp):
    table = index_train(load_competition(ml_comp))
    assert len(table) == 48 and table["group"].nunique() == 12
    assert table["path"].str.contains(r"/clips/s\d+/s\d+_c\d$").all()  # train_path_column, sub-folders
    assert set(" ".join(table["label"]).split()) <= set(CUES)


def test_ids_from_paths_and_zero_one_columns(ml_comp, tmp_path):
    rows = pd.read_csv(ml_comp.parent.parent / "data" / "train.csv", keep_default_na=False)
    onehot = [{"clip_path": r["clip_path"], "scene": r["scene"], **{c: int(c in r["tags"].split()) for c in CUES}}
              for r in rows.to_dict("records")]
    comp = _variant(ml_comp, tmp_path, onehot, train_id_column="nope")  # ids from the path column
    table = index_train(load_competition(comp))
    assert table["video_id"].tolist() == rows["clip_name"].tolist()
    assert table["label"].tolist() == [" ".join(c for c in CUES if c in t.split()) for t in rows["tags"]]


@pytest.mark.parametrize("change, message", [
    ({"tags": "red purple"}, r"train\.csv: video 's00_c0': label 'purple' is not in the competition's classes"),
    ({"tags": ""}, r"train\.csv: video 's00_c0' has no label \(set allow_empty_labels"),
    ({"clip_path": "../../../etc"}, r"train\.csv: path '\.\./\.\./\.\./etc' points outside"),
])
def test_bad_cells_are_one_line_errors(ml_comp, tmp_path, change, message):
    rows = pd.read_csv(ml_comp.parent.parent / "data" / "train.csv", keep_default_na=False).to_dict("records")
    rows[0].update(change)
    comp = _variant(ml_comp, tmp_path, rows, allow_empty_labels=False)
    with pytest.raises(VidkitError, match=message) as err:
        index_train(load_competition(comp))
    assert "\n" not in str(err.value)


def test_missing_mapped_column_and_bad_task(ml_comp, tmp_path):
    with pytest.raises(VidkitError, match=r"train\.csv: missing column 'labels' \(train_label_column"):
        index_train(load_competition(_variant(ml_comp, tmp_path, train_label_column="labels")))
    with pytest.raises(VidkitError, match=r"variant\.yaml: task: 'multi' is not one of single_label, multilabel"):
        load_competition(_variant(ml_comp, tmp_path, task="multi"))
    with pytest.raises(VidkitError, match=r"metric: 'accuracy' is not a multi-label metric"):
        load_competition(_variant(ml_comp, tmp_path, metric="accuracy"))
    assert load_competition(_variant(ml_comp, tmp_path, metric="gap", gap_k=3)).metric == "gap@3"


def test_empty_label_set_allowed_when_the_competition_says_so(ml_comp):
    table = index_train(load_competition(ml_comp))  # allow_empty_labels: true in the fixture
    assert (table["label"] == "").any()


def test_formats_labels_and_pairs(ml_comp):
    comp = load_competition(ml_comp)
    classes = list(CUES)
    probs = np.array([[0.9, 0.2, 0.6, 0.1], [0.1, 0.2, 0.3, 0.4]])
    sample = pd.DataFrame({"id": ["a", "b"], "tags": ["red green", "red green"]})
    sub = format_submission(comp, sample, probs, classes, {"thresholds": {"blue": 0.7}})
    assert sub["tags"].tolist() == ["red", "white"]  # blue under its 0.7; nothing passes -> the top label
    comp.submission, comp.gap_k = "pairs", 3
    sub = format_submission(comp, sample.assign(tags="0 0.5"), probs, classes, {})
    assert sub["tags"][0] == "red 0.900000 blue 0.600000 green 0.200000"
    sub = format_submission(comp, sample.assign(tags="red 0.5 blue 0.4"), probs, classes, {})
    assert sub["tags"][1] == "white 0.400000 blue 0.300000"  # k from the sample's pairs
    from vidkit.flows.submit import validate
    validate(sub, sample.assign(tags="red 0.5 blue 0.4"), "id", classes=classes)
    with pytest.raises(VidkitError, match="unknown label 'purple'"):
        validate(sub.assign(tags="purple 0.5 red 0.1"), sample.assign(tags="red 0.5 blue 0.4"), "id", classes=classes)


@pytest.mark.slow
def test_multilabel_end_to_end(ml_comp, tmp_path, kaggle_python):
    """cv -> ensemble -> submit -> offline kernel dry run; OOF map above the all-prior baseline."""
    from vidkit.config import load_config, parse_overrides
    from vidkit.flows.cv import run_cv
    from vidkit.flows.ensemble import run_ensemble
    from vidkit.flows.submit import run_submit
    from vidkit.kaggle.kernel import build, dry_run
    overrides = {**parse_overrides(TINY), "comp": str(ml_comp), "epochs": "6", "lr": "3e-3", "tta_clips": "1",
                 "color_jitter": "0", "crop_scale": "0.8", "out_dir": str(tmp_path / "run")}
    run = run_cv(load_config("configs/r3d18_demo.yaml", overrides))
    report = json.loads((run / "cv_report.json").read_text())
    oof = pd.read_csv(run / "oof.csv", keep_default_na=False)
    y = multi_hot(oof["label"], list(CUES))
    baseline = score("map", y, np.tile(y.mean(0), (len(y), 1)))  # every video the training prior
    assert report["metric"] == "map" and report["score"] > baseline + 0.1, (report["score"], baseline)
    assert set(report["per_class"]["red"]) >= {"ap", "f1"} and (run / "per_class.png").is_file()
    assert ((oof[list(CUES)].sum(1) - 1).abs() > 0.05).any()  # sigmoids, not a softmax
    spec = yaml.safe_load(run_ensemble(str(ml_comp), [str(run)], out=str(tmp_path / "ensemble.yaml")).read_text())
    assert spec["task"] == "multilabel" and set(spec["thresholds"]) == set(CUES)
    sub = pd.read_csv(run_submit(str(ml_comp), [str(run)], str(tmp_path / "sub.csv"),
                                 ensemble_yaml=tmp_path / "ensemble.yaml"), keep_default_na=False)
    assert sub["id"].tolist() == [f"t{i:02d}" for i in range(8)]
    assert all(set(t.split()) <= set(CUES) and t for t in sub["tags"])
    from vidkit.flows.predict import predict_video
    top = predict_video([run], ml_comp.parent.parent / "data" / "test" / "t00")
    probs = pd.read_csv(tmp_path / "sub_probs.csv").set_index("video_id").loc["t00", top.index]
    assert np.allclose(top.to_numpy(), probs.to_numpy(), atol=1e-5) and abs(top.sum() - 1) > 0.05
    bundle, kernel_dir = build(str(ml_comp), [str(run)], out=str(tmp_path / "kernels"),
                               user="alice", competition="ml-videos", gpu=False)
    kernel_sub = pd.read_csv(dry_run(kernel_dir, bundle, load_competition(ml_comp), tmp_path / "fake",
                                     python=kaggle_python), keep_default_na=False)
    assert kernel_sub["tags"].tolist() == sub["tags"].tolist()


def test_bce_loss_smoothing_and_positive_weights():
    import torch
    from vidkit.config import Config
    from vidkit.engine.multilabel import bce_loss, pos_weights, setup
    y = np.array([[1, 0], [0, 0], [0, 0], [1, 1]], dtype=np.float32)
    w = pos_weights(y, "inverse")
    assert w.tolist() == pytest.approx([1.0, 3.0])  # negatives / positives
    assert pos_weights(y, "sqrt").tolist() == pytest.approx([1.0, 3 ** 0.5]) and pos_weights(y, "none") is None
    logits, target = torch.tensor([[4.0, -4.0]]), torch.tensor([[1.0, 0.0]])
    smoothed = bce_loss(0.2, None)(logits, target)
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[0.9, 0.1]]))
    assert smoothed.item() == pytest.approx(want.item())  # targets pulled towards 0.5
    loss, mixer = setup(Config(mixup=0.4, label_smoothing=0.0), y, 2, "cpu")
    video, mixed = mixer(torch.rand(4, 3, 8, 8), torch.tensor(y))
    assert mixed.shape == (4, 2) and ((mixed >= 0) & (mixed <= 1)).all()
    assert torch.allclose(mixed + mixed.flip(0), torch.tensor(y) + torch.tensor(y).flip(0))  # lam and 1 - lam
    with pytest.raises(VidkitError, match="balanced_sampler: not available for task: multilabel"):
        setup(Config(balanced_sampler=True), y, 2, "cpu")


def test_sigmoid_views_and_per_class_blend():
    import torch
    from vidkit.engine.tta import reduce_views
    from vidkit.flows.ensemble import blend, calibrate
    logits = torch.tensor([[[2.0, 2.0, -1.0], [0.0, 2.0, -3.0]]])
    probs = reduce_views(logits, "mean", multilabel=True)
    assert torch.allclose(probs, torch.sigmoid(logits).mean(1)) and probs.sum() > 1
    p1, p2 = np.array([[0.9, 0.8, 0.1]]), np.array([[0.7, 0.6, 0.3]])
    assert blend([p1, p2], [0.5, 0.5], "mean", multilabel=True) == pytest.approx(np.array([[0.8, 0.7, 0.2]]))
    assert blend([p1, p2], [1, 0], "logit", multilabel=True) == pytest.approx(p1)
    assert calibrate(p1, {"temperature": 2.0}, multilabel=True)[0, 0] == pytest.approx(1 / (1 + (0.1 / 0.9) ** 0.5))


def _imbalance(counts: np.ndarray, fold_of: np.ndarray, n_folds: int) -> float:
    per_fold = np.stack([counts[fold_of == k].sum(0) for k in range(n_folds)])
    return float(((per_fold - counts.sum(0) / n_folds) ** 2).sum())


def test_multilabel_folds_with_groups_are_a_local_optimum():
    """What the fold rule guarantees with multi-video groups (data/multilabel_folds.py): no group straddles
    folds, and no single group moved to another fold nor any swap of two groups lowers the squared distance of
    the folds' label and video counts from even (checked here by brute force)."""
    rng = np.random.default_rng(7)
    for trial in range(3):
        sizes = rng.integers(1, 7, 30)  # 30 groups of 1 to 6 videos
        groups = [f"g{i}" for i, s in enumerate(sizes) for _ in range(s)]
        table = _table(len(groups), 5, groups, rng)
        n_folds = 4
        folds = make_folds(table, n_folds, seed=trial, label_sep=" ")
        assert (folds.groupby("group")["fold"].nunique() == 1).all()
        classes = [f"c{j}" for j in range(5)]
        per_group = pd.DataFrame(multi_hot(folds["label"], classes)).groupby(folds["group"].to_numpy()).sum()
        counts = np.column_stack([per_group.to_numpy(), folds.groupby("group").size().loc[per_group.index]])
        fold_of = folds.groupby("group")["fold"].first().loc[per_group.index].to_numpy()
        best = _imbalance(counts, fold_of, n_folds)
        for g in range(len(counts)):
            for k in range(n_folds):
                moved = fold_of.copy()
                moved[g] = k
                assert _imbalance(counts, moved, n_folds) >= best - 1e-9, (trial, "move", g, k)
            for h in range(g + 1, len(counts)):
                swapped = fold_of.copy()
                swapped[g], swapped[h] = fold_of[h], fold_of[g]
                assert _imbalance(counts, swapped, n_folds) >= best - 1e-9, (trial, "swap", g, h)
