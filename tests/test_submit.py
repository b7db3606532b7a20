import numpy as np
import pandas as pd
import pytest

from vidkit.config import Competition
from vidkit.errors import VidkitError
from vidkit.submit import format_submission, validate

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
