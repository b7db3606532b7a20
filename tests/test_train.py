import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import TINY
from vidkit.train import EarlyStopping


def test_early_stopping_follows_metric_direction():
    higher = EarlyStopping(patience=2, higher_is_better=True)
    assert [higher.step(s) for s in (0.5, 0.7, 0.6, 0.7)] == [True, True, False, False] and higher.stop
    lower = EarlyStopping(patience=2, higher_is_better=False)  # e.g. logloss
    assert [lower.step(s) for s in (0.9, 0.5, 0.6)] == [True, True, False] and not lower.stop


def test_two_processes_predict_every_validation_video_once(tiny_comp, tmp_path):
    """torchrun starts two CPU processes (gloo); gather_for_metrics must drop the padding duplicates."""
    torchrun = shutil.which("torchrun", path=str(sys.executable).rsplit("/", 1)[0])
    if torchrun is None:
        pytest.skip("torchrun not found")
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "vidkit", "train", "r3d18_demo",
                           f"comp={tiny_comp}", f"out_dir={tmp_path}", "fold=0", "epochs=1", *TINY,
                           "batch_size=3", "tta_clips=3"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("fold 0 epoch 0:") == 1  # only the main process prints and writes
    oof = pd.read_csv(tmp_path / "fold0" / "oof.csv")
    folds = pd.read_csv(tmp_path / "folds.csv")
    assert sorted(oof["video_id"]) == sorted(folds.loc[folds["fold"] == 0, "video_id"])
    probs = oof[["down", "left", "right", "up"]].sum(1)
    assert ((probs - 1).abs() < 1e-4).all()
