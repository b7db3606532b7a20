import json

import numpy as np
import pandas as pd
import pytest

from vidkit.config import load_config
from vidkit.flows.cv import run_cv


@pytest.mark.slow
def test_r3d_learns_the_demo_through_cv(demo_comp, tmp_path):
    """The classes are motion directions: a model that ignores time cannot beat chance (25%)."""
    # 4 epochs (the demo config trains 6): OOF 0.994 (folds 0.97-1.0) when measured, a clear margin over 0.9
    cfg = load_config("r3d18_demo", {"comp": str(demo_comp), "out_dir": str(tmp_path / "run"), "num_workers": "0",
                                     "epochs": "4"})
    out = run_cv(cfg)
    report = json.loads((out / "cv_report.json").read_text())
    oof = pd.read_csv(out / "oof.csv")
    folds = pd.read_csv(out / "folds.csv")
    assert sorted(oof["video_id"]) == sorted(folds["video_id"]) and len(oof) == 160  # every video exactly once
    assert (oof.set_index("video_id")["fold"] == folds.set_index("video_id")["fold"]).all()
    probs = oof[["down", "left", "right", "up"]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    accuracy = (probs.argmax(1) == oof["label"].map({"down": 0, "left": 1, "right": 2, "up": 3})).mean()
    assert accuracy == pytest.approx(report["score"])
    assert report["score"] >= 0.9, report
    assert len(report["fold_scores"]) == 5 and report["protocol"] == "8x2x1 video-level"


@pytest.mark.slow
@pytest.mark.parametrize("config", ["r2plus1d_demo", "cnn_rnn_demo", "videomae_demo"])
def test_zoo_models_learn_the_demo_through_cv(demo_comp, tmp_path, config):
    """(2+1)D convs, a per-frame CNN with a BiLSTM, and a tiny VideoMAE must all use time: >= 85% OOF."""
    cfg = load_config(config, {"comp": str(demo_comp), "out_dir": str(tmp_path / "run"), "num_workers": "0"})
    report = json.loads((run_cv(cfg) / "cv_report.json").read_text())
    assert len(pd.read_csv(tmp_path / "run" / "oof.csv")) == 160
    assert report["score"] >= 0.85, report["fold_scores"]
