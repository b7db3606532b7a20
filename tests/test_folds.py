import pandas as pd
import pytest

from vidkit.config import load_competition
from vidkit.data import index_train
from vidkit.errors import VidkitError
from vidkit.data.folds import load_or_make_folds, make_folds


def test_folds_are_grouped_and_stratified(demo_comp):
    table = index_train(load_competition(demo_comp))
    folds = make_folds(table, 5)
    assert (folds.groupby("group")["fold"].nunique() == 1).all()  # no group in two folds
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    counts = folds.groupby(["fold", "label"]).size().unstack()
    assert counts.min().min() >= 4 and counts.max().max() <= 12  # every class in every fold, roughly even


def test_folds_are_written_once_and_reused(tiny_comp, tmp_path):
    table = index_train(load_competition(tiny_comp))
    path = tmp_path / "folds.csv"
    first = load_or_make_folds(path, table, 3, seed=1)
    again = load_or_make_folds(path, table, 3, seed=999)  # a new seed does not silently redraw
    assert first["fold"].tolist() == again["fold"].tolist()
    pd.read_csv(path).head(5).to_csv(path, index=False)
    with pytest.raises(VidkitError, match="folds do not match the training videos"):
        load_or_make_folds(path, table, 3)


def test_too_few_groups_is_an_error(tiny_comp):
    table = index_train(load_competition(tiny_comp))
    with pytest.raises(VidkitError, match="only 6 groups"):
        make_folds(table, 10)
