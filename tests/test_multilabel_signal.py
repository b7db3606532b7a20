"""Multi-label pseudo-labels and distillation (engine.distill with multi-hot targets)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import TINY
from multilabel_data import CUES, make_multilabel_comp
from vidkit.config import Config, load_competition, load_config, parse_overrides
from vidkit.data.labels import multi_hot
from vidkit.errors import VidkitError
from vidkit.metrics import score

CLASSES = list(CUES)


@pytest.fixture(scope="module")
def ml_comp(tmp_path_factory) -> Path:
    return make_multilabel_comp(tmp_path_factory.mktemp("mlsig"), n_groups=6, n_folds=2)


def test_multilabel_pseudo_labels_are_the_decided_classes(ml_comp):
    from vidkit.engine.distill import pseudo_labels
    comp = load_competition(ml_comp)
    p = np.array([[0.95, 0.02, 0.97, 0.01],   # every class decided: red blue
                  [0.95, 0.50, 0.97, 0.01],   # green undecided: left out
                  [0.05, 0.02, 0.03, 0.01]])  # all absent: a video with no label
    keep, labels = pseudo_labels(p, 0.9, CLASSES, comp)
    assert keep.tolist() == [True, False, True] and labels == ["red blue", ""]
    keep, labels = pseudo_labels(p, 0.5, CLASSES, comp)  # 0.5: every video, the classes at or above 0.5
    assert keep.all() and labels[1] == "red green blue"


def test_multilabel_signal_loss_is_bce_and_tempered_bce():
    import torch
    import torch.nn.functional as F
    from vidkit.engine.distill import distill_bce, multilabel_signal_loss
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-2.0, 1.0]])
    teacher = torch.tensor([[0.9, 0.2], [0.7, 0.4], [float("nan")] * 2])
    target = torch.tensor([[1.0, 0.0], [float("nan")] * 2, [0.0, 1.0]])
    batch = {"target": target, "teacher": teacher, "weight": torch.tensor([1.0, 1.0, 0.5])}
    t = 2.0
    soft = torch.sigmoid(torch.logit(teacher[:2]) / t)
    kd = F.binary_cross_entropy_with_logits(logits[:2] / t, soft, reduction="none").mean(1) * t * t
    assert torch.allclose(distill_bce(logits[:2], teacher[:2], t), kd)
    bce = F.binary_cross_entropy_with_logits(logits, target.nan_to_num(0), reduction="none").mean(1)
    # video 0: label and teacher (alpha .3); video 1: teacher alone; video 2: label alone, weight .5
    want = ((0.7 * bce[0] + 0.3 * kd[0]) + kd[1] + 0.5 * bce[2]) / 3
    got = multilabel_signal_loss(logits, batch, None, 0.0, 0.3, t)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    # the teacher's own sigmoids at T = 1 are the student's minimum
    assert distill_bce(torch.logit(teacher[:1]), teacher[:1], 1.0) < distill_bce(logits[:1], teacher[:1], 1.0)


def test_multilabel_setup_with_signal_uses_labelled_videos_for_positive_weights():
    from vidkit.engine.multilabel import setup
    nan = np.nan
    signal = {"target": np.array([[1, 0], [0, 0], [nan, nan], [0, 1]], np.float32)}
    loss, mixer = setup(Config(class_weights="inverse"), np.zeros((4, 2), np.float32), 2, "cpu", signal)
    assert mixer is None and callable(loss)


def _cv(comp, out, **extra):
    from vidkit.flows.cv import run_cv
    overrides = {**parse_overrides(TINY), "comp": str(comp), "epochs": "5", "lr": "3e-3", "tta_clips": "1",
                 "val_clips": "1", "color_jitter": "0", "crop_scale": "0.8", "out_dir": str(out), **extra}
    return run_cv(load_config("configs/r3d18_demo.yaml", overrides))


def _map_and_baseline(run: Path) -> tuple[float, float]:
    oof = pd.read_csv(run / "oof.csv", keep_default_na=False)
    y = multi_hot(oof["label"], CLASSES)
    return score("map", y, oof[CLASSES].to_numpy()), score("map", y, np.tile(y.mean(0), (len(y), 1)))


@pytest.mark.slow
def test_multilabel_pseudo_labels_and_distillation_learn(ml_comp, tmp_path):
    """A pseudo-label cv (the test videos' truth as confident sigmoids) and a student of a teacher (the OOF truth
    as soft sigmoids): each trains on multi-hot targets, never validates a test video, and beats the all-prior
    baseline on map."""
    data = ml_comp.parent.parent / "data"
    truth = pd.read_csv(data / "test_truth.csv", keep_default_na=False)
    y_test = multi_hot(truth["tags"], CLASSES)
    pd.DataFrame(np.where(y_test > 0, 0.95, 0.03), columns=CLASSES).assign(video_id=truth["id"]).to_csv(
        tmp_path / "test_probs.csv", index=False)
    run = _cv(ml_comp, tmp_path / "pseudo", pseudo=str(tmp_path / "test_probs.csv"), pseudo_soft="true")
    record = json.loads((run / "run.json").read_text())["pseudo"]
    assert sorted(record["ids"]) == truth["id"].tolist()
    assert record["per_class"] == {c: int(n) for c, n in zip(CLASSES, y_test.sum(0)) if n}
    oof = pd.read_csv(run / "oof.csv", dtype={"video_id": str})
    assert not set(oof["video_id"]) & set(truth["id"])
    got, baseline = _map_and_baseline(run)
    assert got > baseline + 0.1, (got, baseline)
    teacher = tmp_path / "teacher"  # a teacher run is its OOF table: the truth, softened
    teacher.mkdir()
    y = multi_hot(oof["label"].fillna(""), CLASSES)
    oof[["video_id", "fold", "label"]].assign(**{c: np.where(y[:, i] > 0, 0.9, 0.1) for i, c in enumerate(CLASSES)}) \
        .to_csv(teacher / "oof.csv", index=False)
    student = _cv(ml_comp, tmp_path / "student", teacher=str(teacher), alpha="0.7")
    assert json.loads((student / "run.json").read_text())["teacher"]["runs"] == [str(teacher)]
    got, baseline = _map_and_baseline(student)
    assert got > baseline + 0.1, (got, baseline)


def test_hard_pseudo_labels_at_the_ensembles_per_class_thresholds(ml_comp, tmp_path):
    from vidkit.engine.distill import pseudo_rows
    comp = load_competition(ml_comp)
    truth = pd.read_csv(ml_comp.parent.parent / "data" / "test_truth.csv", keep_default_na=False)
    probs = np.tile([0.6, 0.3, 0.5, 0.1], (len(truth), 1))
    pd.DataFrame(probs, columns=CLASSES).assign(video_id=truth["id"]).to_csv(tmp_path / "p.csv", index=False)
    spec = {"metric": "map", "members": [{"run": "r", "weight": 1}],
            "thresholds": {"red": 0.7, "green": 0.2, "blue": 0.5, "white": 0.05}}
    (tmp_path / "ensemble.yaml").write_text(json.dumps(spec))
    cfg = Config(pseudo=str(tmp_path / "p.csv"), pseudo_thresholds=str(tmp_path / "ensemble.yaml"))
    rows = pseudo_rows(cfg, comp, CLASSES)
    assert len(rows) == len(truth) and set(rows["label"]) == {"green blue white"}  # red's .6 is under its .7
    del spec["thresholds"]["white"]
    (tmp_path / "ensemble.yaml").write_text(json.dumps(spec))
    with pytest.raises(VidkitError, match=r"ensemble\.yaml: thresholds: no threshold for classes \['white'\]"):
        pseudo_rows(cfg, comp, CLASSES)
