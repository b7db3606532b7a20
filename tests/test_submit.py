import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from vidkit.config import Competition, load_competition
from vidkit.errors import VidkitError
from vidkit.flows.submit import format_submission, run_submit, validate, validate_file

CLASSES = ["cat", "dog", "eel"]


@pytest.fixture
def sample():
    return pd.DataFrame({"id": ["a", "b", "c"], "label": ["cat"] * 3})


def _probs():
    return np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])


def test_label_submission(sample):
    sub = format_submission(Competition(), sample, _probs(), CLASSES)
    assert sub["label"].tolist() == ["cat", "dog", "eel"]
    validate(sub, sample, "id")


def test_probabilities_submission_follows_sample_columns():
    sample = pd.DataFrame({"id": ["a", "b", "c"], "eel": 0.0, "cat": 0.0, "dog": 0.0})
    sub = format_submission(Competition(submission="probabilities"), sample, _probs(), CLASSES)
    assert list(sub.columns) == ["id", "eel", "cat", "dog"]
    assert sub["eel"].tolist() == [0.1, 0.1, 0.6]
    validate(sub, sample, "id")


def test_probability_submission_for_binary():
    sample = pd.DataFrame({"id": ["a", "b"], "target": 0.5})
    comp = Competition(submission="probability", positive_class="fake", target_column="target")
    sub = format_submission(comp, sample, np.array([[0.9, 0.1], [0.3, 0.7]]), ["fake", "real"])
    assert sub["target"].tolist() == [0.9, 0.3]
    with pytest.raises(VidkitError, match="positive_class"):
        format_submission(Competition(submission="probability", positive_class="x"), sample,
                          np.array([[0.9, 0.1], [0.3, 0.7]]), ["fake", "real"])


def test_a_registered_format_is_a_competition_choice(tmp_path, sample, monkeypatch):
    from vidkit import formats
    from vidkit.choices import CHOICES
    from vidkit.config import load_competition
    (tmp_path / "c.yaml").write_text("name: c\ntrain_dir: t\nsubmission: class_index\n")
    with pytest.raises(VidkitError, match="submission: 'class_index' is not one of label, probability, probabilities, topk"):
        load_competition(tmp_path / "c.yaml")
    monkeypatch.setitem(formats.FORMATS, "class_index",
                        lambda comp, sample, probs, classes, spec: {comp.target_column: probs.argmax(1)})
    monkeypatch.setitem(CHOICES, "submission", (*CHOICES["submission"], "class_index"))  # its choice list too
    comp = load_competition(tmp_path / "c.yaml")
    assert format_submission(comp, sample, _probs(), CLASSES)["label"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.iloc[:2], "1 ids missing, e.g. 'c'"),
    (lambda s: s.assign(label=[None, "dog", "eel"]), "NaN values in column 'label'"),
    (lambda s: s.rename(columns={"label": "class"}), "columns"),
    (lambda s: s.iloc[[1, 0, 2]], "not in the sample's order"),
    (lambda s: pd.concat([s, s.iloc[:1]]), "duplicate ids"),
    (lambda s: s.assign(id=["a", "b", "zzz"]), "ids missing"),
])
def test_validation_rejects(sample, mutate, message):
    sub = format_submission(Competition(), sample, _probs(), CLASSES)
    with pytest.raises(VidkitError, match=message):
        validate(mutate(sub), sample, "id")


def test_validation_rejects_probabilities_out_of_range():
    sample = pd.DataFrame({"id": ["a", "b"], "cat": 0.0, "dog": 0.0})
    sub = sample.assign(cat=[0.5, 1.5], dog=[0.5, -0.5])
    with pytest.raises(VidkitError, match=r"outside \[0, 1\]"):
        validate(sub, sample, "id")
    with pytest.raises(VidkitError, match="NaN"):
        validate(sample.assign(cat=[np.nan, 0.1]), sample, "id")


# ---------------------------------------------------------------- every format, through a CSV file and back

def _roundtrip(tmp_path, sample, sub, classes=None):
    sample.to_csv(tmp_path / "sample.csv", index=False)
    sub.to_csv(tmp_path / "sub.csv", index=False)
    validate_file(str(tmp_path / "sub.csv"), str(tmp_path / "sample.csv"), "id", classes)


@pytest.mark.parametrize("first, k, pairs", [("cat", 3, False), ("cat dog", 2, False), ("dog 0.9 cat 0.1", 2, True),
                                              ("eel 1.0", 3, True)])
def test_topk_follows_the_samples_first_row(tmp_path, first, k, pairs):
    sample = pd.DataFrame({"id": ["a.mp4", "b.mp4", "c.mp4"], "label": [first] * 3})
    sub = format_submission(Competition(submission="topk"), sample, _probs(), CLASSES)
    rows = [r.split() for r in sub["label"]]
    assert all(len(r) == (2 * k if pairs else k) for r in rows)
    labels = [r[0::2] if pairs else r for r in rows]
    assert labels[0][:2] == ["cat", "dog"][:k] and labels[2][0] == "eel"
    if pairs:
        assert float(rows[0][1]) == 0.7
    _roundtrip(tmp_path, sample, sub, CLASSES)


def test_every_format_round_trips_through_validate(tmp_path):
    sample = pd.DataFrame({"id": ["a", "b", "c"], "label": ["cat"] * 3})
    _roundtrip(tmp_path, sample, format_submission(Competition(), sample, _probs(), CLASSES), CLASSES)
    named = pd.DataFrame({"id": ["a", "b", "c"], "Prob_Eel": 0.0, "Prob_Cat": 0.0, "Prob_Dog": 0.0})
    sub = format_submission(Competition(submission="probabilities"), named, _probs(), CLASSES)
    assert sub["Prob_Eel"].tolist() == [0.1, 0.1, 0.6]
    _roundtrip(tmp_path, named, sub)
    binary = pd.DataFrame({"id": ["a", "b"], "target": 0.5})
    comp = Competition(submission="probability", positive_class="real", target_column="target")
    _roundtrip(tmp_path, binary, format_submission(comp, binary, np.array([[0.9, 0.1], [0.3, 0.7]]), ["fake", "real"]))


def test_binary_label_uses_the_ensemble_threshold():
    sample = pd.DataFrame({"id": ["a", "b", "c"], "label": ["fake"] * 3})
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6]])
    comp = Competition(positive_class="real")
    assert format_submission(comp, sample, probs, ["fake", "real"])["label"].tolist() == ["fake", "fake", "real"]
    tuned = format_submission(comp, sample, probs, ["fake", "real"], {"threshold": 0.25})
    assert tuned["label"].tolist() == ["fake", "real", "real"]


def test_sample_columns_that_name_no_class_are_an_error():
    sample = pd.DataFrame({"id": ["a"], "cat": 0.0, "zebra": 0.0})
    with pytest.raises(VidkitError, match="'zebra' does not name a class"):
        format_submission(Competition(submission="probabilities"), sample, _probs()[:1], CLASSES)


@pytest.mark.parametrize("column, value, message", [
    ("label", "cat zebra", "unknown label 'zebra'"),
    ("pairs", "cat 1.5 dog 0.2", "label confidence"),
    ("score", "high", "non-numeric value 'high'"),
    ("score", np.inf, "inf values"),
])
def test_validation_rejects_bad_values(tmp_path, column, value, message):
    sample = pd.DataFrame({"id": ["a", "b"], "label": ["cat dog"] * 2, "pairs": ["cat 0.5 dog 0.5"] * 2,
                           "score": [0.5, 0.5]})
    sub = sample.copy()
    sub[column] = sub[column].astype(object)
    sub.loc[1, column] = value
    with pytest.raises(VidkitError, match=message):
        validate(sub, sample, "id", classes=CLASSES)


# ---------------------------------------------------------------- end to end on the tiny competition

@pytest.fixture
def messy_comp(tiny_comp, tmp_path):
    """tiny_comp's test set with an id carrying an extension, an id without media, an undecodable video and a
    test folder that the sample does not list; `probabilities` format."""
    spec = yaml.safe_load(tiny_comp.read_text())
    data = tiny_comp.parent / spec["test_dir"]
    test = tmp_path / "test"
    shutil.copytree(data, test)
    shutil.copytree(test / "test_0001", test / "not_in_sample")
    (test / "broken.mp4").write_bytes(b"\x00" * 64)
    ids = sorted(p.name for p in data.iterdir())
    ids = [ids[0] + ".mp4", "ghost", *ids[1:], "broken.mp4"]
    pd.DataFrame({"id": ids, **{c: 0.25 for c in ("down", "left", "right", "up")}}).to_csv(
        tmp_path / "sample.csv", index=False)
    spec.update(train_dir=str(tiny_comp.parent / spec["train_dir"]), test_dir=str(test),
                sample_submission=str(tmp_path / "sample.csv"), submission="probabilities")
    (tmp_path / "messy.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "messy.yaml"


def test_submit_keeps_every_id_and_gives_the_prior_where_media_is_missing(messy_comp, tiny_run, tmp_path, caplog):
    out = tmp_path / "subs" / "submission.csv"
    with caplog.at_level(logging.WARNING):
        run_submit(str(messy_comp), [str(tiny_run)], str(out))
    sub = pd.read_csv(out, dtype={"id": str})
    sample = pd.read_csv(tmp_path / "sample.csv", dtype={"id": str})
    assert sub["id"].tolist() == sample["id"].tolist()
    by_id = sub.set_index("id")
    assert (by_id.loc[["ghost", "broken.mp4"]].to_numpy() == 0.25).all()  # tiny_comp's classes are balanced
    assert not np.allclose(by_id.loc[sample["id"][0]].to_numpy(), 0.25)  # "test_0000.mp4" found test/test_0000/
    assert np.allclose(sub.drop(columns="id").sum(1), 1)
    assert "2 test ids have no readable media" in caplog.text and "ghost, broken.mp4" in caplog.text
    assert "not in the sample submission" in caplog.text and "not_in_sample" in caplog.text
    meta = json.loads(next((tmp_path / "subs").glob("*_*.json")).read_text())
    assert meta["prior_ids"] == ["ghost", "broken.mp4"] and meta["tta"] == {tiny_run.name: "4x2x1+flip video-level"}


def test_budget_cuts_views_when_tiny(messy_comp, tiny_run, tmp_path, capsys):
    out = tmp_path / "subs" / "submission.csv"
    run_submit(str(messy_comp), [str(tiny_run)], str(out), budget="0.001s", scale=10)
    meta = json.loads(next((tmp_path / "subs").glob("*_*.json")).read_text())
    assert meta["dropped"][:2] == [f"{tiny_run.name}: flip", f"{tiny_run.name}: 2 -> 1 clips"]
    assert "nothing left to cut" in meta["dropped"][-1] and meta["scale"] == 10
    assert meta["tta"] == {tiny_run.name: "4x1x1 video-level"}
    assert "after dropping: " in capsys.readouterr().out
    validate_file(str(out), str(tmp_path / "sample.csv"))
    with pytest.raises(VidkitError, match="budget"):
        run_submit(str(messy_comp), [str(tiny_run)], str(out), budget="soon")


def test_classes_and_prior_from_runs_or_training_data(tiny_comp, tmp_path):
    """run.json's class_counts give the prior with no training data; older runs count the training data when
    it is there, else a clear error naming the run."""
    from types import SimpleNamespace

    from vidkit.flows.submit import classes_and_prior
    comp = load_competition(tiny_comp)
    classes = ["down", "left", "right", "up"]
    recorded = SimpleNamespace(run=tmp_path / "new", classes=classes, class_counts=dict(zip(classes, [1, 1, 2, 0])))
    old = SimpleNamespace(run=tmp_path / "old", classes=classes, class_counts=None)
    comp.train_dir = str(tmp_path / "absent")
    assert classes_and_prior(comp, [old, recorded])[1].tolist() == [0.25, 0.25, 0.5, 0.0]
    with pytest.raises(VidkitError, match=r"old/run.json: no class_counts .* no training data at .*absent"):
        classes_and_prior(comp, [old])
    prior = classes_and_prior(load_competition(tiny_comp), [old])[1]
    assert np.allclose(prior, 0.25)  # tiny_comp: 6 videos of each class
