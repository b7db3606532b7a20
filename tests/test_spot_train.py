"""Spotting training through the one training loop (vidkit.engine.train.fit): a killed fold resumes to the
uninterrupted state, `train` of one fold (two processes too), hard-negative windows from an earlier run's OOF."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from vidkit.errors import VidkitError

TINY = {"num_frames": "16", "spot_windows": "4", "model_args.hidden": "16", "batch_size": "8"}


@pytest.fixture(scope="session")
def small_spot_comp(tmp_path_factory) -> Path:
    """6 training videos of ~120 frames (32 px), 2 test videos, 3 folds: 4 training videos a fold, 2 batches."""
    from vidkit.spot_demo import make_spot_demo
    root = tmp_path_factory.mktemp("spot_train")
    return make_spot_demo(root / "data", root / "competition" / "spot.yaml", n_train=6, n_test=2, n_frames=120)


def _cfg(comp, out, **kw):
    from vidkit.config import load_config
    return load_config("configs/spot_demo.yaml", {**TINY, "comp": str(comp), "out_dir": str(out), "fold": "0",
                                                  **{k: str(v) for k, v in kw.items()}})


def _records(fold_dir):
    return [json.loads(line) for line in (fold_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_killed_spotting_fold_resumes_to_the_same_state(small_spot_comp, tmp_path):
    from vidkit.flows.cv import run_train
    a = run_train(_cfg(small_spot_comp, tmp_path / "a", epochs=2))
    # 16 windows at batch 8: 2 steps an epoch; step 3 stops in the middle of epoch 1, as a kill after a save would
    b = run_train(_cfg(small_spot_comp, tmp_path / "b", epochs=2, max_steps=3))
    progress = json.loads((b / "state" / "progress.json").read_text())
    assert (progress["epoch"], progress["batch"]) == (1, 1) and len(_records(b)) == 1
    assert not (tmp_path / "b" / "oof_scores").exists()  # an unfinished fold predicts nothing
    run_train(_cfg(small_spot_comp, tmp_path / "b", epochs=2, resume=True))
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    ra, rb = _records(a), _records(b)
    assert [r["epoch"] for r in rb] == [0, 1] and all(r["metric"] == "spotting_map" for r in rb)
    for x, y in zip(ra, rb):
        assert x["step"] == y["step"] and abs(x["train_loss"] - y["train_loss"]) < 1e-5
        assert abs(x["val_score"] - y["val_score"]) < 1e-6 and abs(x["val_loss"] - y["val_loss"]) < 1e-5
    assert not (b / "state").exists()
    folds = pd.read_csv(tmp_path / "b" / "folds.csv")
    held_out = set(folds.loc[folds["fold"] == 0, "video_id"])
    assert {p.stem for p in (tmp_path / "b" / "oof_scores").glob("*.npy")} == held_out
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["task"] == "spotting" and "fold0" in run["provenance"]["fold_seconds"]


@pytest.mark.slow
def test_two_process_spotting_fold_trains_once(small_spot_comp, tmp_path):
    """torchrun, two CPU processes (gloo): one `train` of fold 0, printed and written once."""
    torchrun = shutil.which("torchrun", path=str(sys.executable).rsplit("/", 1)[0])
    if torchrun is None:
        pytest.skip("torchrun not found")
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "vidkit", "train", "configs/spot_demo.yaml",
                           f"comp={small_spot_comp}", f"out_dir={tmp_path}", "fold=0", "epochs=1",
                           *[f"{k}={v}" for k, v in TINY.items()], "batch_size=4"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("fold 0 epoch 0:") == 1 and proc.stdout.count("fold 0 spotting_map:") == 1
    record, = _records(tmp_path / "fold0")
    assert record["step"] == 2  # 16 windows, 4 a process a step, over 2 processes
    folds = pd.read_csv(tmp_path / "folds.csv")
    assert {p.stem for p in (tmp_path / "oof_scores").glob("*.npy")} == set(folds.loc[folds["fold"] == 0, "video_id"])
    assert (tmp_path / "fold0" / "model.safetensors").is_file()


def test_hard_negative_windows_are_cut_around_the_given_frames():
    from vidkit.data.windows import SpotWindows
    video = np.zeros((300, 2, 2, 3), np.uint8)
    target = np.zeros((300, 1), np.float32)

    def starts(fraction, events):
        data = SpotWindows([video], [target], [events], 16, 8, [np.array([100, 250])], fraction)
        return [data.start(epoch * len(data) + i)[1] for epoch in range(5) for i in range(len(data))]
    inside = [any(s <= f < s + 16 for f in (100, 250)) for s in starts(1.0, np.zeros(0, int))]
    assert all(inside)  # every window of a video without events holds a hard frame
    assert not all(any(s <= f < s + 16 for f in (100, 250)) for s in starts(0.0, np.zeros(0, int)))
    # with events: half the windows around them, then `fraction` of the rest around the hard frames
    mixed = starts(0.5, np.array([20]))
    assert sum(s <= 20 < s + 16 for s in mixed) >= 20 and sum(any(s <= f < s + 16 for f in (100, 250))
                                                              for s in mixed) >= 10


def test_hard_negatives_are_the_earlier_runs_false_positive_peaks(tmp_path):
    from vidkit.config import Competition, load_config
    from vidkit.flows.spotting import hard_negatives
    (tmp_path / "oof.csv").write_text("video_id,fold,frame,pos,event,score\n"
                                      "v1,0,50,2.0,goal,0.9\nv1,0,200,8.0,goal,0.8\n"  # a hit, a false positive
                                      "v1,0,52,2.08,card,0.7\nv2,1,10,0.4,goal,0.6\n")  # wrong class, no event
    events = pd.DataFrame({"video_id": ["v1"], "frame": [50], "event": ["goal"], "pos": [2.0]})
    videos = pd.DataFrame({"video_id": ["v1", "v2"]})
    comp = Competition(tolerances=[0.2, 0.5])
    cfg = load_config("configs/spot_demo.yaml", {"spot_hard_negatives": "0.5", "spot_hard_from": str(tmp_path)})
    hard = hard_negatives(cfg, comp, events, videos, "time")
    assert {v: f.tolist() for v, f in hard.items()} == {"v1": [200, 52], "v2": [10]}
    with pytest.raises(VidkitError, match="spot_hard_negatives: needs spot_hard_from"):
        hard_negatives(load_config("configs/spot_demo.yaml", {"spot_hard_negatives": "0.5"}), comp, events,
                       videos, "time")


@pytest.mark.slow
def test_spot_head_trains_on_per_frame_features_above_the_constant_baseline(small_spot_comp, tmp_path):
    """`embed` on a spotting competition stores every frame's backbone features once; `cv spot_head features=`
    trains the temporal head on them into the same run folder as the end-to-end model's."""
    from vidkit.config import load_config
    from vidkit.flows.cv import run_cv
    from vidkit.flows.embed import run_embed
    store = run_embed(load_config("configs/spot_demo.yaml", {"comp": str(small_spot_comp), "model_args.stack": "1"}),
                      out=str(tmp_path / "store"))
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["per_frame"] and manifest["complete"] and manifest["positions"] == 1
    first = np.load(store / "all" / "train_g00.npy")
    assert first.ndim == 2 and first.shape[1] == manifest["dims"] and len(list((store / "all").glob("*.npy"))) == 8
    run = run_cv(load_config("configs/spot_head_demo.yaml", {"comp": str(small_spot_comp), "features": str(store),
                                                             "out_dir": str(tmp_path / "run")}))
    report = json.loads((run / "cv_report.json").read_text())
    assert report["score"] > 1.5 * report["baseline_score"], report  # seeds 42, 1, 2: 2.3x, 3.7x, 1.9x
    assert len(list((run / "oof_scores").glob("*.npy"))) == 6 and (run / "oof.csv").is_file()
    assert all((run / f"fold{k}" / "model.safetensors").is_file() for k in range(3))
    assert json.loads((run / "run.json").read_text())["model"] == "spot_head"
