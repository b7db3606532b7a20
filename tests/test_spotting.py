"""Spotting (competition task `spotting`): the metric on hand-made cases, sliding windows, memory on a 30-minute
video, bad input, and the spine end to end (cv, ensemble, submit) on a tiny synthetic long-video competition."""
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vidkit.errors import VidkitError
from vidkit.metrics import event_ap, spotting_map

SPOT_TINY = {"epochs": "1", "num_frames": "16", "spot_windows": "4", "model_args.hidden": "16", "batch_size": "8"}


# ---------------------------------------------------------------- the metric, by hand

def test_event_ap_hand_case_duplicate_and_out_of_tolerance():
    truth = {"v": [10, 50]}
    # ranked: 11 hit, 12 duplicate of the matched 10 (FP), 100 outside every tolerance (FP), 49 hit
    preds = [("v", 11, 0.9), ("v", 12, 0.8), ("v", 100, 0.7), ("v", 49, 0.6)]
    # precision at the hits: 1/1 and 2/4; each hit adds recall 1/2
    assert event_ap(truth, preds, tolerance=2) == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    # tolerance 0: no detection is exact, AP 0; tolerance 60: 12 takes 50 (nearest unmatched), 100 takes nothing
    assert event_ap(truth, preds, tolerance=0) == 0.0
    assert event_ap(truth, preds, tolerance=60) == pytest.approx(1.0)


def test_event_ap_other_video_and_unfound_events():
    truth = {"a": [5], "b": [5, 30]}
    preds = [("a", 30, 0.9), ("b", 6, 0.5)]  # the first is at b's event frame but in video a: a false positive
    assert event_ap(truth, preds, tolerance=1) == pytest.approx((1 / 2) * (1 / 3))
    assert np.isnan(event_ap({}, preds, 1))


def test_spotting_map_averages_classes_then_tolerances():
    truth = pd.DataFrame({"video_id": ["v", "v"], "pos": [1.0, 3.0], "event": ["goal", "card"]})
    preds = pd.DataFrame({"video_id": ["v", "v", "v"], "pos": [1.1, 3.5, 9.0], "event": ["goal", "card", "throw"],
                          "score": [0.9, 0.8, 0.7]})
    out = spotting_map(truth, preds, [0.2, 1.0], ["card", "goal", "throw"])
    # tolerance 0.2: goal 1, card 0 -> 0.5; tolerance 1.0: both 1 -> 1; "throw" has no events: left out
    assert out["per_tolerance"] == {"0.2": pytest.approx(0.5), "1.0": pytest.approx(1.0)}
    assert out["score"] == pytest.approx(0.75)
    assert out["per_class"]["goal"] == pytest.approx(1.0) and out["per_class"]["card"] == pytest.approx(0.5)
    assert np.isnan(out["per_class"]["throw"])


# ---------------------------------------------------------------- sliding windows

def _per_frame(clips):  # a model with no temporal context: each frame's score from that frame alone
    return clips.reshape(*clips.shape[:2], -1).astype(np.float64).mean(-1, keepdims=True) / 255


@pytest.mark.parametrize("n,window,stride", [(100, 16, 8), (101, 16, 5), (16, 16, 8), (7, 16, 8), (40, 16, 16)])
def test_slider_covers_every_frame_once_per_pass(n, window, stride):
    from vidkit.engine.spotting import sliding_scores
    frames = np.random.default_rng(n).integers(0, 255, (n, 4, 4, 3), dtype=np.uint8)
    scores = sliding_scores(_per_frame, iter(frames), window, stride, 1, batch=3, size_hint=n // 2)
    assert scores.shape == (n, 1)
    np.testing.assert_allclose(scores, _per_frame(frames[None])[0], rtol=1e-6)


def test_sliding_windows_equal_one_pass_with_the_model():
    """spot_dense without temporal context: stitched windows == the whole video as one window; with a GRU, a
    video of one window's length is that one window."""
    import torch
    from vidkit.engine.spotting import model_predictor, sliding_scores
    from vidkit.models import create_model
    frames = np.random.default_rng(0).integers(0, 255, (30, 32, 32, 3), dtype=np.uint8)
    for head, n in (("none", 30), ("gru", 16)):
        torch.manual_seed(0)
        model = create_model("spot_dense", 2, num_frames=16, image_size=32, backbone="test_efficientnet",
                             head=head, hidden=16).eval()
        predict = model_predictor([model], model.input_spec, "heat", torch.device("cpu"))
        stitched = sliding_scores(predict, iter(frames[:n]), 16, 6, 2, batch=2)
        np.testing.assert_allclose(stitched, predict(frames[None, :n])[0], atol=1e-5)


def test_pick_events_minimum_distance_and_thresholds():
    from vidkit.engine.spotting import pick_events
    scores = np.zeros((50, 2), np.float32)
    scores[[10, 12, 30], 0] = [0.9, 0.8, 0.3]  # 12 is within 4 frames of a higher peak
    scores[[0, 49], 1] = [0.6, 0.7]            # peaks at both ends count
    found = pick_events(scores, ["a", "b"], min_distance=4, thresholds={"a": 0.5})
    assert found == [(0, "b", pytest.approx(0.6)), (10, "a", pytest.approx(0.9)), (49, "b", pytest.approx(0.7))]


def test_targets_heat_and_class_with_background():
    import torch
    from vidkit.config import load_config
    from vidkit.data.events import frame_targets
    from vidkit.engine.spotting import loss_fn, num_outputs, to_scores
    frames, labels = np.array([3, 10]), np.array([1, 0])
    heat = frame_targets(14, frames, labels, 2, sigma=1.0)
    assert heat.shape == (14, 2) and heat[3, 1] == 1 and heat[10, 0] == 1 and heat[3, 0] < 1e-9
    assert heat[4, 1] == pytest.approx(np.exp(-0.5)) and heat[0].max() < 0.02
    cls = frame_targets(14, frames, labels, 2, sigma=1.0, target="class")
    assert cls.tolist() == [0, 0, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1, 0, 0]  # 0 is background
    for target, y in (("heat", heat), ("class", cls)):
        cfg = load_config("configs/spot_demo.yaml", {"spot_target": target})
        logits = torch.zeros(1, 14, num_outputs(2, target), requires_grad=True)
        loss = loss_fn(logits, torch.from_numpy(y)[None], cfg, 2)
        loss.backward()
        assert torch.isfinite(loss) and logits.grad.abs().sum() > 0
        assert to_scores(logits, target).shape == (1, 14, 2)


MEMORY_SCRIPT = textwrap.dedent("""
    import numpy as np, torch
    from vidkit.engine.spotting import sliding_scores, stream_friendly_malloc
    stream_friendly_malloc()                         # as submit does
    def rss_mb():                                    # resident now (ru_maxrss would carry the parent's peak over exec)
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    n, size = 30 * 60 * 25, 64                       # 30 minutes at 25 fps, 64 px
    base = np.random.default_rng(0).integers(0, 255, (size, 2 * size, 3), dtype=np.uint8)
    samples = []
    def frames():                                    # a synthetic decoder: each frame made when asked for
        for i in range(n):
            yield base[:, i % size:i % size + size].copy()
    weight = torch.randn(3, 2)
    def predict(clips):                              # batches of 8 windows: 25 MiB as float
        x = torch.from_numpy(clips).float().mean((2, 3)) / 255
        samples.append(rss_mb())
        return (x @ weight).sigmoid().numpy()
    before = rss_mb()
    scores = sliding_scores(predict, frames(), 64, 32, 2, batch=8, size_hint=n)
    print(scores.shape[0], before, max(samples), samples[len(samples) // 5], n * size * size * 3 / 2**20)
""")



@pytest.mark.slow
def test_thirty_minute_video_streams_in_bounded_memory():
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n, before, peak, at_a_fifth, whole = map(float, proc.stdout.split())
    assert n == 45000 and whole > 500  # held whole, the video would take 527 MiB
    # the window buffer, one batch (uint8 and float) and the scores: < 60 MiB, and no growth with the length
    assert peak - before < 60 and peak - at_a_fifth < 10, (before, at_a_fifth, peak)


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope="session")
def spot_comp(tmp_path_factory) -> Path:
    """A tiny spotting competition: 6 training videos of ~160 frames (32 px), 2 test videos, 3 folds."""
    from vidkit.spot_demo import make_spot_demo
    root = tmp_path_factory.mktemp("spot")
    return make_spot_demo(root / "data", root / "competition" / "spot.yaml", n_train=6, n_test=2, n_frames=160)


def _variant(spot_comp: Path, tmp_path: Path, events: pd.DataFrame | None = None, **changes) -> Path:
    spec = yaml.safe_load(spot_comp.read_text())
    data = spot_comp.parent.parent / "data"
    spec = {**spec, "train_dir": str(data / "train"), "test_dir": str(data / "test"),
            "sample_submission": str(data / "sample_submission.csv"), "events_csv": str(data / "events.csv"),
            **changes}
    if events is not None:
        events.to_csv(tmp_path / "events.csv", index=False)
        spec["events_csv"] = str(tmp_path / "events.csv")
    path = tmp_path / "comp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _events(spot_comp):
    return pd.read_csv(spot_comp.parent.parent / "data" / "events.csv")


def _prepare(path):
    from vidkit.config import load_competition, load_config
    from vidkit.flows.spotting import prepare
    return prepare(load_config("configs/spot_demo.yaml"), load_competition(path))


def test_event_after_the_end_is_one_line_naming_the_file(spot_comp, tmp_path):
    events = _events(spot_comp)
    events.loc[2, "time"] = 999.0
    with pytest.raises(VidkitError, match=r"events.csv: event at time 999.0 of video .* is outside the video"):
        _prepare(_variant(spot_comp, tmp_path, events))


def test_unknown_event_class_is_one_line_naming_the_file(spot_comp, tmp_path):
    events = _events(spot_comp)
    events.loc[0, "event"] = "penalty"
    with pytest.raises(VidkitError, match=r"events.csv: unknown event class 'penalty' \(line 2"):
        _prepare(_variant(spot_comp, tmp_path, events))


def test_a_video_without_events_is_allowed(spot_comp, tmp_path):
    events = _events(spot_comp)
    quiet = events["video_id"].iloc[0]
    videos, found, classes, unit = _prepare(_variant(spot_comp, tmp_path, events[events["video_id"] != quiet]))
    assert quiet in set(videos["video_id"]) and quiet not in set(found["video_id"])
    assert classes == ["colour", "shape"] and unit == "time"
    from vidkit.data.events import window_starts
    starts = window_starts(160, np.zeros(0, int), 16, 8, np.random.default_rng(0))
    assert len(starts) == 8 and starts.max() <= 144


def test_spotting_yaml_needs_events_and_tolerances(spot_comp, tmp_path):
    from vidkit.config import load_competition
    with pytest.raises(VidkitError, match="comp.yaml: tolerances: expected a list of numbers"):
        load_competition(_variant(spot_comp, tmp_path, tolerances=None))
    with pytest.raises(VidkitError, match="task: 'detection' is not one of"):
        load_competition(_variant(spot_comp, tmp_path, task="detection"))


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="session")
def spot_run(spot_comp, tmp_path_factory) -> Path:
    from vidkit.config import load_config
    from vidkit.flows.cv import run_cv
    out = tmp_path_factory.mktemp("spot_run") / "spot_demo"
    return run_cv(load_config("configs/spot_demo.yaml", {**SPOT_TINY, "comp": str(spot_comp), "out_dir": str(out)}))


@pytest.mark.slow
def test_cv_writes_oof_events_scores_and_report(spot_run, spot_comp):
    report = json.loads((spot_run / "cv_report.json").read_text())
    assert report["metric"] == "spotting_map" and set(report["per_tolerance"]) == {"0.08", "0.16", "0.32"}
    assert len(report["fold_scores"]) == 3 and 0 <= report["score"] <= 1 and "baseline_score" in report
    assert report["score"] > report["baseline_score"]  # one epoch: 0.109 against 0.062
    records = [json.loads(line) for line in (spot_run / "fold0" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["metric"] == "spotting_map" and {"val_score", "val_loss", "step", "lr"} <= set(records[0])
    oof = pd.read_csv(spot_run / "oof.csv")
    assert list(oof.columns) == ["video_id", "fold", "frame", "pos", "event", "score"]
    assert set(oof["event"]) <= {"colour", "shape"}
    scores = sorted((spot_run / "oof_scores").glob("*.npy"))
    assert len(scores) == 6 and np.load(scores[0]).shape[1] == 2
    assert len(list((spot_run / "timeline").glob("*.png"))) == 6 and (spot_run / "curves.png").is_file()
    assert all((spot_run / f"fold{k}" / "model.safetensors").is_file() for k in range(3))


@pytest.mark.slow
def test_ensemble_and_submit_write_a_valid_event_list(spot_run, spot_comp, tmp_path, caplog):
    from vidkit.config import load_competition
    from vidkit.flows.ensemble import run_ensemble
    from vidkit.flows.submit import run_submit
    comp = load_competition(spot_comp)
    blend = run_ensemble(comp, [str(spot_run), str(spot_run)], out=str(tmp_path / "ensemble.yaml"))
    spec = yaml.safe_load(blend.read_text())
    assert spec["task"] == "spotting" and sum(m["weight"] for m in spec["members"]) == pytest.approx(1.0)
    # an undecodable test video (zero bytes): no events for it, a warning naming it, the others predicted
    broken = spot_comp.parent.parent / "data" / "test" / "test_g99.mp4"
    broken.write_bytes(b"")
    try:
        with caplog.at_level(logging.WARNING):
            out = run_submit(comp, None, str(tmp_path / "sub.csv"), ensemble_yaml=blend)
    finally:
        broken.unlink()
    assert "test_g99.mp4" in caplog.text and "no events for test_g99" in caplog.text
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["video_id", "time", "event", "score"]
    assert set(sub["video_id"]) <= {"test_g00", "test_g01"} and len(sub) > 0
    assert sub["score"].between(0, 1).all() and set(sub["event"]) <= {"colour", "shape"}


@pytest.mark.slow
def test_kernel_dry_run_matches_submit(spot_run, spot_head_run, spot_comp, kaggle_python, tmp_path):
    """A frame run and a head on per-frame features in one blend: the bundle carries the head's backbone in its
    run folder, the kernel computes the test features from the frames, and equals the local submit."""
    from vidkit.config import load_competition
    from vidkit.flows.submit import run_submit
    from vidkit.kaggle.kernel import build, dry_run
    comp = load_competition(spot_comp)
    runs, store = [str(spot_run), str(spot_head_run[0])], spot_head_run[1]
    store.rename(store.with_name("store.away"))  # neither the bundle nor a submit reads the feature store
    try:
        bundle, kernel_dir = build(comp, runs, out=str(tmp_path / "kernels"), user="alice",
                                   competition="spot-videos", kernel_type="script")
        assert len(list(bundle.rglob("backbone.safetensors"))) == 1 and not (bundle / "backbones").exists()
        sub = pd.read_csv(dry_run(kernel_dir, bundle, comp, tmp_path / "fake", python=kaggle_python))
        want = pd.read_csv(run_submit(comp, runs, str(tmp_path / "local.csv")))
    finally:
        store.with_name("store.away").rename(store)
    assert set(want["video_id"]) == {"test_g00", "test_g01"}  # every test video has events
    pd.testing.assert_frame_equal(sub, want)


@pytest.fixture(scope="session")
def spot_head_run(spot_comp, tmp_path_factory) -> tuple[Path, Path]:
    """(run, store): `embed` of every training and test video's frames, then a spot_head trained on them."""
    from vidkit.config import load_config
    from vidkit.flows.cv import run_cv
    from vidkit.flows.embed import run_embed
    out = tmp_path_factory.mktemp("spot_head")
    store = run_embed(load_config("configs/spot_demo.yaml", {"comp": str(spot_comp), "model_args.stack": "1"}),
                      out=str(out / "store"))
    return run_cv(load_config("configs/spot_head_demo.yaml", {**SPOT_TINY, "comp": str(spot_comp),
                                                             "features": str(store), "out_dir": str(out / "run")})), store


@pytest.mark.slow
def test_head_run_submits_from_frames_as_the_store_has_them(spot_head_run, spot_comp):
    """submit's scores of a feature-head run (features computed from the decoded frames by the run folder's
    backbone, the store moved away) equal the head on the stored features of the same videos."""
    import torch
    from vidkit.config import load_competition
    from vidkit.data.events import index_videos
    from vidkit.flows import spotting
    from vidkit.flows.spotting import (backbone_seconds, frame_seconds, load_member, predict_arrays, predict_events,
                                       predict_video)
    run, store = spot_head_run
    test = index_videos(load_competition(spot_comp), "test")
    stored = {v: np.load(store / "all" / f"{v}.npy").astype(np.float32) for v in test["video_id"]}
    away = store.with_name("store.away")
    store.rename(away)
    try:
        member = load_member(run, torch.device("cpu"))
        got = {r["video_id"]: predict_video(r, [member], [1.0], "cv2") for _, r in test.iterrows()}
        events = predict_events([run], test["path"].iloc[0])  # `predict`: the same stream, the store away too
        assert list(events.columns) == ["video_id", "time", "event", "score"]
        assert backbone_seconds(member) > 0 and backbone_seconds({**member, "backbone": None}) == 0
        with pytest.MonkeyPatch.context() as patch:  # the budget's per-frame cost counts the backbone
            patch.setattr(spotting, "backbone_seconds", lambda m, repeats=2: 1.0)
            assert 1.0 < frame_seconds(member) < 1.1
    finally:
        away.rename(store)
    want = predict_arrays(member["models"], stored, member["cfg"], torch.device("cpu"))
    for v in stored:
        assert got[v].shape == want[v].shape == (len(stored[v]), 2)
        np.testing.assert_allclose(got[v], want[v], atol=1e-5)


def test_head_store_without_recipe_or_other_backbone_is_refused(spot_head_run, spot_comp, tmp_path):
    import shutil
    import torch
    from vidkit.config import load_config
    from vidkit.flows.cv import run_cv
    from vidkit.flows.spotting import load_member
    run, store = spot_head_run
    copy = Path(shutil.copytree(store, tmp_path / "store"))
    manifest = json.loads((copy / "manifest.json").read_text())
    cfg = load_config("configs/spot_head_demo.yaml", {**SPOT_TINY, "comp": str(spot_comp), "features": str(copy),
                                                      "out_dir": str(tmp_path / "run")})
    (copy / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "recipe"}))
    with pytest.raises(VidkitError, match=r"store/manifest.json: no backbone recipe .* re-run `vidkit embed`"):
        run_cv(cfg)
    (copy / "manifest.json").write_text(json.dumps({**manifest, "sources": {"all": "0" * 16}}))
    with pytest.raises(VidkitError, match=r"store/manifest.json: its recipe's backbone .* other weights"):
        run_cv(cfg)
    head = Path(shutil.copytree(run, tmp_path / "head"))
    info = json.loads((head / "backbone.json").read_text())
    (head / "backbone.json").write_text(json.dumps({**info, "weights_sha256": "0" * 16}))
    with pytest.raises(VidkitError, match=r"head/backbone.safetensors: not the backbone weights"):
        load_member(head, torch.device("cpu"))
    (head / "backbone.json").write_text(json.dumps(info))
    weights = (head / "backbone.safetensors").read_bytes()
    (head / "backbone.safetensors").write_bytes(weights[:len(weights) // 2])
    with pytest.raises(VidkitError, match=r"head/backbone.safetensors: not a readable safetensors backbone"):
        load_member(head, torch.device("cpu"))
    (head / "backbone.json").unlink()
    with pytest.raises(VidkitError, match=r"head/backbone.json: missing"):
        load_member(head, torch.device("cpu"))


# ---------------------------------------------------------------- predict, check, submit budget=, explain

@pytest.mark.slow
def test_predict_prints_the_event_list_submit_writes(spot_run, spot_comp, tmp_path, capsys):
    from vidkit.config import load_competition
    from vidkit.flows.predict import run_predict
    from vidkit.flows.submit import run_submit
    video = spot_comp.parent.parent / "data" / "test" / "test_g00.mp4"
    events = run_predict([str(spot_run)], video, topk=5, out=tmp_path / "events.csv")
    assert list(events.columns) == ["video_id", "time", "event", "score"] and len(events) > 0
    printed = capsys.readouterr().out
    assert printed.startswith("video_id,time,event,score\n") and f"{len(events)} events ->" in printed
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "events.csv"), events, check_dtype=False)
    sub = pd.read_csv(run_submit(load_competition(spot_comp), [str(spot_run)], str(tmp_path / "sub.csv")))
    mine = sub[sub["video_id"] == "test_g00"]  # the same stream, windows, peaks and thresholds as submit
    order = ["time", "event"]
    pd.testing.assert_frame_equal(events.sort_values(order).reset_index(drop=True),
                                  mine.sort_values(order).reset_index(drop=True), check_dtype=False)


@pytest.mark.slow
def test_predict_with_comp_uses_the_ensemble_blend(spot_run, spot_comp, tmp_path, monkeypatch):
    from vidkit.config import load_competition
    from vidkit.flows.ensemble import run_ensemble
    from vidkit.flows.spotting import predict_events
    monkeypatch.chdir(tmp_path)  # weights/<comp>/ensemble.yaml lands here
    comp = load_competition(spot_comp)
    blend = run_ensemble(comp, [str(spot_run)])
    video = spot_comp.parent.parent / "data" / "test" / "test_g00.mp4"
    plain = predict_events([str(spot_run)], video, comp)  # the run's own OOF thresholds
    values = np.unique(plain["score"])  # a cut halfway between two (rounded) scores: no score on the edge
    cut = float(values[len(values) // 2 - 1:len(values) // 2 + 1].mean())
    blend.write_text(yaml.safe_dump({**yaml.safe_load(blend.read_text()), "thresholds": {"colour": cut, "shape": cut}}))
    blended = predict_events([], video, comp)  # the blend's members, weights and thresholds
    want = plain[plain["score"] >= cut].reset_index(drop=True)
    assert 0 < len(blended) < len(plain)
    pd.testing.assert_frame_equal(blended, want)


def test_predict_on_a_spotting_run_refuses_a_classification_run(spot_comp, tmp_path):
    from vidkit.flows.spotting import predict_events
    classify = tmp_path / "r3d18"  # a classification run's run.json: no task: spotting
    classify.mkdir()
    (classify / "run.json").write_text(json.dumps({"classes": ["a", "b"], "model": "r3d_18"}))
    with pytest.raises(VidkitError, match="r3d18: not a spotting run"):
        predict_events([str(classify)], spot_comp.parent.parent / "data" / "test" / "test_g00.mp4")


def test_check_lists_each_bad_event_with_the_line_cv_stops_on(spot_comp, tmp_path, capsys):
    from vidkit.config import load_competition
    from vidkit.data.check import run_check
    events = _events(spot_comp)
    quiet = events["video_id"].iloc[-1]
    events = events[events["video_id"] != quiet].reset_index(drop=True)
    events.loc[1, "time"] = 999.0
    events.loc[3, "event"] = "penalty"
    events.loc[4, "video_id"] = "train_g77"
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for video in (spot_comp.parent.parent / "data" / "test").glob("*.mp4"):
        (test_dir / video.name).symlink_to(video)
    (test_dir / "test_g99.mp4").write_bytes(b"")  # a test video that cannot be decoded
    path = _variant(spot_comp, tmp_path, events, test_dir=str(test_dir))
    with pytest.raises(VidkitError) as stopped:  # cv stops on the first problem; check lists them all
        _prepare(path)
    assert run_check(load_competition(path)) == 1
    out = capsys.readouterr().out
    assert "scanned 6 training and 3 test videos: 4 problems" in out
    assert str(stopped.value).split(": ", 1)[1] in out and "unknown event class 'penalty' (line 5" in out
    assert "event at time 999.0 of video" in out and "event of video 'train_g77' (line 6)" in out
    assert "no_events: 1 spotting: training videos without events (allowed: background only) [info]" in out
    assert f"{quiet}.mp4 (no events in events.csv" in out
    assert "unreadable_video: 1" in out and "test_g99.mp4" in out
    (tmp_path / "cols").mkdir()
    assert run_check(load_competition(_variant(spot_comp, tmp_path / "cols", events.rename(columns={"event": "x"})))) == 1
    assert "events.csv (missing column(s) event (expected video_id,frame|time,event))" in capsys.readouterr().out


def test_budget_plan_cuts_fold_models_then_members_by_weight():
    from vidkit.flows.spotting import plan_budget
    # two members of 3 fold models, 3 ms and 6 ms of model time per frame, 1 ms decoding, 10000 frames:
    # 10000 x (1 + 3 + 6) ms = 100 s in all
    args = (["a", "b"], [0.7, 0.3], [3, 3], [3e-3, 6e-3], 1e-3, 10_000)
    assert plan_budget(*args, budget_s=100.5) == ([3, 3], [])
    keep, dropped = plan_budget(*args, budget_s=75.0)  # b's folds cost 2 ms each: 100 -> 80 -> 60 s
    assert keep == [3, 1] and dropped == ["b: fold model 3", "b: fold model 2"]
    keep, dropped = plan_budget(*args, budget_s=30.0)  # then a's (1 ms each) until 40 s, then b goes (weight 0.3)
    assert keep == [1, 0] and dropped[-1] == "member b (weight 0.3)" and len(dropped) == 5
    keep, dropped = plan_budget(*args, budget_s=5.0)
    assert keep == [1, 0] and dropped[-1] == "nothing left to cut: a alone needs ~20s"
    # b a head on features: 1 ms per fold model, and its backbone 5 ms per frame whatever its fold models
    head = (["a", "b"], [0.7, 0.3], [3, 3], [3e-3, 3e-3], 1e-3, 10_000)
    assert plan_budget(*head, budget_s=119.0, fixed_s=[0.0, 5e-3])[0] == [3, 2]  # 120 s -> 110 s
    assert plan_budget(*head, budget_s=85.0, fixed_s=[0.0, 5e-3])[0] == [1, 1]  # 80 s: the backbone stays
    keep, dropped = plan_budget(*head, budget_s=45.0, fixed_s=[0.0, 5e-3])  # b and its backbone go: 20 s
    assert keep == [1, 0] and dropped[-1] == "member b (weight 0.3)"


@pytest.mark.slow
def test_submit_budget_measures_and_drops_to_fit(spot_run, spot_comp, tmp_path, capsys):
    from vidkit.config import load_competition
    from vidkit.flows.submit import run_submit
    comp = load_competition(spot_comp)
    tight = pd.read_csv(run_submit(comp, [str(spot_run), str(spot_run)], str(tmp_path / "tight.csv"), budget="0.01s"))
    printed = capsys.readouterr().out
    assert "budget 0.0s for 295 test frames: estimated" in printed and "after dropping: spot_demo: fold model 3" \
        in printed and "member spot_demo (weight 1)" in printed and "nothing left to cut" in printed
    assert "(1 runs)" in printed and len(tight) > 0  # one fold model of one run: still a valid event list
    assert list(tight.columns) == ["video_id", "time", "event", "score"]
    with pytest.raises(VidkitError, match="scale: must be > 0"):
        run_submit(comp, [str(spot_run)], str(tmp_path / "x.csv"), budget="1h", scale=0)


@pytest.mark.slow
def test_explain_weighs_the_window_frames_around_the_explained_one(spot_run, spot_comp, tmp_path):
    from vidkit.analysis.explain import explain_video
    video = spot_comp.parent.parent / "data" / "test" / "test_g00.mp4"
    png, weights, method, clip = explain_video(spot_run, video, "shape", out=tmp_path / "a.png", frame=40)
    assert png.stat().st_size > 10_000 and method == "gradient x input over time"
    assert weights.shape == (16,) and clip.shape == (16, 32, 32, 3) and weights.max() == 1 and weights.min() >= 0
    assert abs(int(weights.argmax()) - 8) <= 1  # the window is centred on frame 40; its own frames weigh most
    _, later, _, later_clip = explain_video(spot_run, video, "shape", out=tmp_path / "b.png", time=4.0)  # frame 100
    assert not np.array_equal(later_clip, clip) and not np.allclose(later, weights)
    _, last, _, _ = explain_video(spot_run, video, out=tmp_path / "c.png", frame=1)  # near the start: no centring
    assert int(last.argmax()) <= 2
    with pytest.raises(VidkitError, match=r"test_g00.mp4: frame 9999 is outside the video \(\d+ frames\)"):
        explain_video(spot_run, video, frame=9999, out=tmp_path / "d.png")
    with pytest.raises(VidkitError, match="class"):
        explain_video(spot_run, video, "penalty", frame=3, out=tmp_path / "e.png")
