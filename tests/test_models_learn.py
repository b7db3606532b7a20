"""The new model families learn the demo competition through `cv` (directions of motion: chance is 25%)."""
import json

import pandas as pd
import pytest

from vidkit.config import load_config
from vidkit.flows.cv import run_cv


@pytest.mark.slow
@pytest.mark.parametrize("config", ["vjepa2_demo", "i3d_r50_demo", "stack2d3d_demo"])
def test_new_families_learn_the_demo_through_cv(demo_comp, tmp_path, config):
    """A tiny V-JEPA 2 (RoPE transformer), an inflated 3D ResNet and the 2.5D stack model, trained from
    scratch: each must use time to reach >= 85% out-of-fold accuracy on all 160 videos."""
    cfg = load_config(config, {"comp": str(demo_comp), "out_dir": str(tmp_path / "run"), "num_workers": "0"})
    report = json.loads((run_cv(cfg) / "cv_report.json").read_text())
    assert len(pd.read_csv(tmp_path / "run" / "oof.csv")) == 160
    assert report["score"] >= 0.85, report["fold_scores"]
