import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import TINY
from vidkit.config import load_competition, load_config, parse_overrides
from vidkit.flows.cv import run_train
from vidkit.data import classes_of, index_test, index_train
from vidkit.flows.ensemble import blend
from vidkit.errors import VidkitError
from vidkit.flows.infer import ensemble, fit_budget, load_member, load_run, predict_member, resolve_members
from vidkit.flows.predict import run_predict


@pytest.fixture(scope="module")
def other_run(tiny_comp, tmp_path_factory):
    """A second member with other frames and input size (one fold is enough to be a member)."""
    out = tmp_path_factory.mktemp("other_run")
    overrides = {**parse_overrides(TINY), "comp": str(tiny_comp), "out_dir": str(out), "epochs": "1",
                 "num_frames": "6", "image_size": "24", "tta_clips": "3", "tta_crops": "3", "fold": "0"}
    run_train(load_config("configs/r3d18_demo.yaml", overrides))
    return out


def _test_table(tiny_comp):
    comp = load_competition(tiny_comp)
    return index_test(comp), classes_of(comp, index_train(comp))


def test_oof_is_made_with_the_submission_tta(tiny_run, tiny_comp):
    report = json.loads((tiny_run / "cv_report.json").read_text())
    assert report["protocol"] == "4x2x1+flip video-level"
    assert json.loads((tiny_run / "run.json").read_text())["protocol"] == report["protocol"]
    oof = pd.read_csv(tiny_run / "oof.csv", dtype={"video_id": str})
    member = load_member(tiny_run)
    assert member.tta.n_views == 4 and len(member.checkpoints) == 3
    fold0 = dataclasses.replace(member, checkpoints=[tiny_run / "fold0" / "model.safetensors"])
    train = index_train(load_competition(tiny_comp)).set_index("video_id")
    rows = oof[oof["fold"] == 0]
    probs = predict_member(fold0, train.loc[rows["video_id"]].reset_index(), member.classes)
    np.testing.assert_allclose(probs, rows[member.classes].to_numpy(), atol=1e-5)


def test_members_with_different_inputs_blend(tiny_run, other_run, tiny_comp):
    test, classes = _test_table(tiny_comp)
    test = test.iloc[:3]
    a, b = load_member(tiny_run, 3.0), load_member(other_run, 1.0)
    assert b.num_frames == 6 and b.tta.n_views == 9 and len(b.checkpoints) == 1
    probs = ensemble([a, b], test, classes)
    pa, pb = predict_member(a, test, classes), predict_member(b, test, classes)
    assert not np.allclose(pa, pb)
    np.testing.assert_allclose(probs, blend([pa, pb], [3, 1], "mean"), atol=1e-6)


def test_ensemble_yaml_gives_weights_unless_other_runs_are_named(tiny_run, other_run, tiny_comp, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    comp = load_competition(tiny_comp)
    with pytest.raises(VidkitError, match="no finished runs"):
        resolve_members(comp)
    path = tmp_path / "weights" / comp.name / "ensemble.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"metric": "accuracy", "method": "logit", "temperature": 2.0, "members": [
        {"run": str(tiny_run), "weight": 3, "score": 0.5}, {"run": str(other_run), "weight": 1, "score": 0.4}]}))
    members, spec = resolve_members(comp)
    assert [m.weight for m in members] == [0.75, 0.25] and spec["method"] == "logit" and spec["temperature"] == 2.0
    members, spec = resolve_members(comp, [str(other_run), str(tiny_run)])
    assert sorted(m.weight for m in members) == [0.25, 0.75] and spec
    members, spec = resolve_members(comp, [str(tiny_run)])
    assert [m.weight for m in members] == [1.0] and spec == {}


def test_seed_subruns_add_checkpoints(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copytree(run / "fold0", run / "seed1" / "fold0")
    assert len(load_run(run)[2]) == 4 and load_run(run)[2][-1].parts[-3] == "seed1"


def test_fit_budget_cuts_views_then_members(tiny_run, other_run):
    a, b = load_member(tiny_run, 0.7), load_member(other_run, 0.3)  # 4 views x 3 ckpts, 9 views x 1 ckpt
    speeds = [{"read_s": 0.0, "view_s": 1.0}, {"read_s": 0.0, "view_s": 1.0}]
    kept, dropped = fit_budget([a, b], speeds, 1, budget_s=1000)
    assert kept == [a, b] and dropped == []
    kept, dropped = fit_budget([a, b], speeds, 1, budget_s=7)  # 12 + 9 s -> flip(a), crops(b), clips ...
    assert dropped[:2] == [f"{a.name}: flip", f"{b.name}: 3 crops -> centre crop"]
    assert sum(m.tta.n_views * len(m.checkpoints) for m in kept) <= 7 and len(kept) == 2
    kept, dropped = fit_budget([a, b], speeds, 1, budget_s=3.5)  # both at one view: 3 + 1 s; drop b (lighter)
    assert [m.name for m in kept] == [a.name] and kept[0].tta.n_views == 1
    assert dropped[-1] == f"member {b.name} (weight 0.3)"
    assert dropped.index(dropped[-1]) > max(i for i, d in enumerate(dropped) if "clips" in d or "flip" in d)
    kept, dropped = fit_budget([a], speeds[:1], 1, budget_s=0.5)
    assert "nothing left to cut" in dropped[-1] and len(kept) == 1


def test_predict_real_videos(tiny_run, shared_data, capsys):
    videos = sorted((shared_data / "videos").glob("*.mp4"))
    frames = sorted(p for p in (shared_data / "ucf101_applyeyemakeup" / "ApplyEyeMakeup").iterdir())[0]
    assert videos
    for video in [*videos, frames]:
        top = run_predict([tiny_run], video, topk=3)
        assert len(top) == 3 and list(top) == sorted(top, reverse=True) and 0 < top.sum() <= 1 + 1e-6
        assert set(top.index) <= {"down", "left", "right", "up"}
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 * (len(videos) + 1) and lines[0].split()[0] in {"down", "left", "right", "up"}
    with pytest.raises(VidkitError, match="not a video file"):
        run_predict([tiny_run], shared_data / "README.md", topk=5)


@pytest.mark.slow
def test_predict_cli(tiny_run, shared_data):
    video = sorted((shared_data / "videos").glob("*.mp4"))[0]
    proc = subprocess.run([sys.executable, "-m", "vidkit", "predict", f"run={tiny_run}", f"video={video}", "topk=2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(0 <= float(line.split()[1]) <= 1 for line in lines)


def test_shared_decoding_equals_per_member_decoding_and_reads_each_video_once(tiny_run, other_run, tiny_comp,
                                                                              shared_data):
    from vidkit.data.index import media_row
    from vidkit.engine.tta import DECODES
    test, classes = _test_table(tiny_comp)
    members = [load_member(tiny_run, 3.0), load_member(other_run, 1.0)]  # other frames, size, clips and crops
    videos = pd.DataFrame([media_row(p) for p in sorted((shared_data / "videos").glob("*.mp4"))])
    for table in (test, videos):
        DECODES.clear()
        shared = ensemble(members, table, classes)
        per_member = ensemble(members, table, classes, shared=False)
        np.testing.assert_allclose(shared, per_member, atol=1e-6)
        assert np.isfinite(shared).all() and len(DECODES) == len(table)
        # raw videos: once for both members; frame folders: once per member short side (libjpeg scales per size)
        assert set(DECODES.values()) == ({1} if table is videos else {2})


def test_a_run_knows_its_competition(tiny_run, tiny_comp):
    from vidkit.rundir import RunDir, competition_of
    assert RunDir(tiny_run).competition_yaml() == str(tiny_comp.resolve())  # recorded by cv in run.json
    assert competition_of([tiny_run]) == str(tiny_comp.resolve())


def test_predict_with_comp_uses_the_ensemble_blend_and_calibration(tiny_run, tiny_comp, shared_data, tmp_path,
                                                                   monkeypatch):
    """`predict comp=` (and `app comp=`) without runs: the competition's ensemble.yaml, calibration included."""
    from vidkit.config import load_competition
    from vidkit.flows.ensemble import calibrate
    from vidkit.flows.predict import predict_video
    from vidkit.rundir import CompDir
    monkeypatch.chdir(tmp_path)
    comp = load_competition(tiny_comp)
    blend = CompDir(comp).ensemble_yaml
    blend.parent.mkdir(parents=True)
    blend.write_text(f"metric: accuracy\nmethod: mean\ntemperature: 3.0\nmembers:\n- run: {tiny_run}\n  weight: 1.0\n")
    video = sorted((shared_data / "videos").glob("*.mp4"))[0]
    plain = predict_video([tiny_run], video)
    blended = predict_video([], video, comp=comp)
    want = calibrate(plain.reindex(blended.index).to_numpy()[None], {"temperature": 3.0})[0]
    assert np.allclose(blended.to_numpy(), want, atol=1e-6) and blended.max() < plain.max()  # flatter at T=3
    with pytest.raises(VidkitError, match="comp= for the competition's ensemble"):
        predict_video([], video)
