import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from vidkit.config import load_competition, load_config, parse_overrides
from vidkit.engine.distill import distill_kl, read_probs, signal_loss
from vidkit.errors import VidkitError
from helpers import TINY


def test_distillation_loss_is_kl_at_temperature():
    torch.manual_seed(0)
    student, teacher_logits = torch.randn(5, 4), torch.randn(5, 4)
    for t in (1.0, 2.0, 4.0):
        expected = F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher_logits / t, 1), reduction="none").sum(1)
        got = distill_kl(student, F.softmax(teacher_logits, 1), t)
        assert torch.allclose(got, expected * t * t, atol=1e-5)
    # by hand, two classes, T = 2: teacher (0.8, 0.2) -> (2/3, 1/3); student logits (0, 0) -> (1/2, 1/2)
    by_hand = 4 * (2 / 3 * np.log(4 / 3) + 1 / 3 * np.log(2 / 3))
    assert distill_kl(torch.zeros(1, 2), torch.tensor([[0.8, 0.2]]), 2.0).item() == pytest.approx(by_hand, rel=1e-5)


def test_signal_loss_mixes_label_and_teacher_per_video():
    torch.manual_seed(1)
    logits, teacher = torch.randn(3, 4), F.softmax(torch.randn(3, 4), 1)
    onehot = F.one_hot(torch.tensor([2, 0, 1]), 4).float()
    nan = torch.full((1, 4), float("nan"))
    batch = {"target": torch.cat([onehot[:2], nan]),                 # video 2 has no label
             "teacher": torch.cat([teacher[:1], nan, teacher[2:]]),  # video 1 has no teacher
             "weight": torch.tensor([1.0, 0.5, 1.0])}
    ce = F.cross_entropy(logits, onehot, reduction="none", label_smoothing=0.1)
    kd = distill_kl(logits, teacher, 2.0)
    expected = ((0.7 * ce[0] + 0.3 * kd[0]) + 0.5 * ce[1] + kd[2]) / 3
    assert signal_loss(logits, batch, None, 0.1, 0.3, 2.0).item() == pytest.approx(expected.item(), rel=1e-5)
    # a labelled video alone is the usual smoothed cross-entropy
    plain = {"target": onehot[:1], "teacher": nan, "weight": torch.ones(1)}
    assert signal_loss(logits[:1], plain, None, 0.1, 0.3, 2.0).item() == pytest.approx(ce[0].item(), rel=1e-5)


def test_probabilities_come_from_the_sibling_of_a_label_submission(tiny_comp, tmp_path):
    comp = load_competition(tiny_comp)
    classes = ["down", "left", "right", "up"]
    (tmp_path / "sub.csv").write_text("id,label\nx,up\n")
    with pytest.raises(VidkitError, match=r"sub.csv: no probability column per class"):
        read_probs(tmp_path / "sub.csv", comp, classes)
    (tmp_path / "sub_probs.csv").write_text("video_id,down,left,right,up,prior\nx,0,0,0.1,0.9,False\n"
                                             "y,0.25,0.25,0.25,0.25,True\n")
    probs = read_probs(tmp_path / "sub.csv", comp, classes)
    assert list(probs.index) == ["x"] and probs.loc["x", "up"] == pytest.approx(0.9)  # prior-filled y left out


def _cv(tiny_comp, out, **extra):
    from vidkit.flows.cv import run_cv
    overrides = {**parse_overrides(TINY), "comp": str(tiny_comp), "epochs": "1", "out_dir": str(out), **extra}
    return run_cv(load_config("configs/r3d18_demo.yaml", overrides))


@pytest.mark.slow
def test_pseudo_labels_train_but_never_validate(tiny_comp, tmp_path):
    data = tiny_comp.parent.parent / "data"
    truth = pd.read_csv(data / "test_labels.csv", dtype=str)
    ids, classes = truth["id"].tolist(), ["down", "left", "right", "up"]
    probs = np.full((len(ids), 4), 0.25)
    confident = ids[:4]
    for i, label in enumerate(truth["label"][:4]):
        probs[i] = 0.02
        probs[i, classes.index(label)] = 0.94
    pd.DataFrame(probs, columns=classes).assign(video_id=ids).to_csv(tmp_path / "test_probs.csv", index=False)
    folds_before = (tiny_comp.parent / "tiny.folds.csv").read_bytes() if (tiny_comp.parent / "tiny.folds.csv").exists() else None
    run = _cv(tiny_comp, tmp_path / "run", pseudo=str(tmp_path / "test_probs.csv"), threshold="0.9")
    oof = pd.read_csv(run / "oof.csv", dtype={"video_id": str})
    assert not set(oof["video_id"]) & set(ids)  # no test video is ever scored out of fold
    folds = pd.read_csv(run / "folds.csv", dtype={"video_id": str})
    assert set(folds["video_id"]) == set(oof["video_id"]) and not set(folds["video_id"]) & set(ids)
    if folds_before is not None:
        assert (tiny_comp.parent / "tiny.folds.csv").read_bytes() == folds_before
    record = json.loads((run / "run.json").read_text())["pseudo"]
    assert sorted(record["ids"]) == sorted(confident)
    assert record["per_class"] == truth["label"][:4].value_counts().to_dict()
    from vidkit.analysis.report import run_row
    assert run_row(run, "accuracy")["extra"] == "pseudo 4 (p >= 0.9)"  # report shows it


@pytest.mark.slow
def test_student_distils_from_a_teacher_run(tiny_comp, tiny_run, tmp_path):
    run = _cv(tiny_comp, tmp_path / "student", teacher=str(tiny_run), alpha="0.7")
    assert (run / "oof.csv").is_file()
    assert json.loads((run / "run.json").read_text())["teacher"]["runs"] == [str(tiny_run)]
    with pytest.raises(VidkitError, match="oof.csv: teacher run has no out-of-fold predictions"):
        _cv(tiny_comp, tmp_path / "student2", teacher=str(tmp_path / "nowhere"))
