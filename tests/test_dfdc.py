"""DFDC-style binary competitions: metadata.json layout and its groups, video_reduce rules, region crops."""
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from vidkit.config import Config, load_competition, load_config
from vidkit.data import index_train
from vidkit.data.crop import (CropSettings, check_boxes, crop_media, link_tracks, pick_track, read_boxes,
                              settings_of, smooth_boxes, square_box)
from vidkit.data.folds import load_or_make_folds
from vidkit.data.layouts import original_groups
from vidkit.engine.reduce import confident, reduce_logits, topk_mean, video_reduce_of
from vidkit.engine.tta import tta_spec
from vidkit.errors import VidkitError


def write_frames(folder: Path, n: int = 3, size: int = 24, seed: int = 0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i + 1:05d}.jpg"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def json_comp(root: Path, parts: dict[str, dict], media: bool = True, n_folds: int = 2) -> Path:
    """A competition whose train_json globs part folders, each with a metadata.json and frame-folder media."""
    for part, meta in parts.items():
        (root / part).mkdir(parents=True)
        (root / part / "metadata.json").write_text(json.dumps(meta))
        for k, name in enumerate(meta if media else ()):
            write_frames(root / part / Path(name).stem, seed=k)
    spec = {"name": "dfdcmini", "train_json": "*/metadata.json", "submission": "probability",
            "positive_class": "FAKE", "metric": "logloss", "n_folds": n_folds}
    (root / "comp.yaml").write_text(yaml.safe_dump(spec))
    return root / "comp.yaml"


CHAIN = {  # a0 <- f1 <- f2 (a chain of fakes), a0 <- f3; b0 <- g1; c0 and d0 alone, e0 <- h1
    "part_0": {"a0.mp4": {"label": "REAL", "split": "train"},
               "f1.mp4": {"label": "FAKE", "split": "train", "original": "a0.mp4"},
               "b0.mp4": {"label": "REAL", "split": "train", "original": None},
               "c0.mp4": {"label": "REAL", "split": "train"}},
    "part_1": {"f2.mp4": {"label": "FAKE", "split": "train", "original": "f1.mp4"},
               "f3.mp4": {"label": "FAKE", "split": "train", "original": "a0.mp4"},
               "g1.mp4": {"label": "FAKE", "split": "train", "original": "b0.mp4"},
               "d0.mp4": {"label": "REAL", "split": "train"},
               "e0.mp4": {"label": "REAL", "split": "train"},
               "h1.mp4": {"label": "FAKE", "split": "train", "original": "e0.mp4"}},
}


def test_original_links_are_connected_components():
    groups = original_groups({"a": None, "f1": "a", "f2": "f1", "f3": "a", "b": None, "g": "b", "x": "y"})
    assert groups["a"] == groups["f1"] == groups["f2"] == groups["f3"] == "a"
    assert groups["b"] == groups["g"] != groups["a"]
    assert groups["x"] == "x"  # linked to a name outside the set: grouped by it, never a crash


def test_train_json_glob_groups_never_straddle_folds(tmp_path):
    comp = load_competition(json_comp(tmp_path, CHAIN))
    table = index_train(comp)
    assert sorted(table["video_id"]) == sorted(n for meta in CHAIN.values() for n in meta)
    group = dict(zip(table["video_id"], table["group"]))
    assert group["a0.mp4"] == group["f1.mp4"] == group["f2.mp4"] == group["f3.mp4"]
    assert group["b0.mp4"] == group["g1.mp4"] != group["a0.mp4"]
    assert table["kind"].eq("frames").all() and (table["n_frames"] == 3).all()
    folds = load_or_make_folds(tmp_path / "folds.csv", table, comp.n_folds)
    assert folds.groupby("group")["fold"].nunique().max() == 1
    assert set(folds["fold"]) == {0, 1}


def test_bad_metadata_is_a_one_line_error_naming_the_file(tmp_path, caplog):
    missing = json_comp(tmp_path / "a", {"p": {"x.mp4": {"label": "REAL"}}}, media=False)
    with pytest.raises(VidkitError, match=r"p/metadata.json: no media for 'x.mp4'"):
        index_train(load_competition(missing))
    stray = json_comp(tmp_path / "b", {"p": {"x.mp4": {"label": "REAL"},
                                             "y.mp4": {"label": "FAKE", "original": "gone.mp4"}}})
    with caplog.at_level(logging.WARNING):
        table = index_train(load_competition(stray))
    assert "metadata.json: 'y.mp4': original 'gone.mp4' is not in the set" in caplog.text
    assert len(table) == 2
    broken = tmp_path / "b" / "p" / "metadata.json"
    broken.write_text("{not json")
    with pytest.raises(VidkitError, match=r"p/metadata.json: not valid JSON"):
        index_train(load_competition(stray))
    (tmp_path / "b" / "comp.yaml").write_text(yaml.safe_dump({"name": "x", "train_json": "nope/*.json"}))
    with pytest.raises(VidkitError, match=r"nope/\*\.json: train_json matches no file"):
        index_train(load_competition(tmp_path / "b" / "comp.yaml"))


# ---------------------------------------------------------------- video_reduce

def test_confident_rule_by_hand():
    # 32 views, 14 above 0.8 (> 32 // 2.5 = 12 and > 11): the mean of those
    fakes = np.array([0.9] * 7 + [0.95] * 7 + [0.5] * 18)
    assert confident(fakes) == pytest.approx(0.925)
    # 12 confident fakes only (not > 12): nearly all real? no (20 < 28.8): the plain mean
    mixed = np.array([0.9] * 12 + [0.3] * 20)
    assert confident(mixed) == pytest.approx((0.9 * 12 + 0.3 * 20) / 32)
    # 30 of 32 below 0.2 (> 28.8): the mean of those
    real = np.array([0.1] * 15 + [0.05] * 15 + [0.7, 0.9])
    assert confident(real) == pytest.approx(0.075)
    # thresholds are parameters: 4 views, 3 above 0.6 with min_fakes=2
    assert confident(np.array([0.7, 0.8, 0.9, 0.1]), fake=0.6, min_fakes=2) == pytest.approx(0.8)
    assert topk_mean(np.array([0.1, 0.9, 0.5, 0.7]), k=2) == pytest.approx(0.8)


def test_reductions_score_the_positive_class_of_a_binary_task():
    p_fake = torch.tensor([[0.95, 0.9, 0.85, 0.1]])  # one video, 4 views; FAKE is column 0
    logits = torch.stack([p_fake.log(), (1 - p_fake).log()], -1)
    out = reduce_logits(logits, "max", positive=0)
    assert out[0].tolist() == pytest.approx([0.95, 0.05], abs=1e-6)
    out = reduce_logits(logits, "confident", positive=0, args={"min_fakes": 2})
    assert out[0, 0].item() == pytest.approx(0.9, abs=1e-6)
    assert reduce_logits(logits, "mean")[0, 0].item() == pytest.approx(0.7, abs=1e-6)
    three = torch.randn(2, 5, 3)
    assert torch.allclose(reduce_logits(three, "topk_mean", args={"k": 2}).sum(-1), torch.ones(2, dtype=three.dtype))


def test_video_reduce_config_is_checked_and_places_the_positive_class():
    cfg = load_config(None, {"video_reduce": "confident", "video_reduce_args.min_fakes": "3",
                             "reduce_positive": "FAKE", "tta_clips": "8"})
    spec = tta_spec(cfg, classes=["FAKE", "REAL"])
    assert (spec.reduce, spec.positive, dict(spec.args)["min_fakes"], dict(spec.args)["fake"]) == \
        ("confident", 0, 3, 0.8)
    assert spec.protocol(1) == "1x8x1 confident video-level"
    with pytest.raises(VidkitError, match="video_reduce: 'median' is not one of"):
        load_config(None, {"video_reduce": "median"})
    with pytest.raises(VidkitError, match="video_reduce_args: kk not known to video_reduce=topk_mean"):
        video_reduce_of(Config(video_reduce="topk_mean", video_reduce_args={"kk": 2}))
    with pytest.raises(VidkitError, match="reduce_positive: 'fake' is not one of FAKE, REAL"):
        video_reduce_of(Config(video_reduce="max", reduce_positive="fake"), ["FAKE", "REAL"])
    assert tta_spec(Config()).reduce == "mean" and tta_spec(Config()).args == ()


# ---------------------------------------------------------------- boxes

def test_tracks_smoothing_and_square_boxes():
    face = {f: [(100 + f, 50, 160 + f, 110, 1.0)] for f in range(0, 10, 2)}  # seen in 5 frames, moving right
    flash = {4: [(0, 0, 200, 200, 2.0)]}  # a large box in one frame only
    found = {f: face.get(f, []) + flash.get(f, []) for f in range(10)}
    tracks = link_tracks(found)
    assert len(tracks) == 2
    assert len(pick_track(tracks, "stable")) == 5 and len(pick_track(tracks, "largest")) == 1
    boxes = smooth_boxes(pick_track(tracks, "stable"), 10, window=3)
    assert boxes.shape == (10, 4)
    assert boxes[3, 0] == pytest.approx(133.0)  # interpolated between frames 2 and 4, then averaged
    assert np.all(np.diff(boxes[:, 0]) >= 0) and np.allclose(boxes[:, 2:], 60)
    x1, y1, x2, y2 = square_box(20, 20, 60, 40, 0.5, 320, 240)  # grown to 120, shifted inside the frame
    assert (x1, y1, x2 - x1, y2 - y1) == (0, 0, 120, 120)
    assert square_box(300, 200, 400, 400, 0.3, 320, 240) == (80, 0, 320, 240)


def test_boxes_outside_the_frame_name_the_file(tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text("video_id,frame,x1,y1,x2,y2\nv1.mp4,0,10,10,20,20\nv1.mp4,1,400,10,420,20\n")
    given = read_boxes(csv)
    assert list(given) == ["v1"]
    with pytest.raises(VidkitError, match=r"boxes.csv: video v1: frame 1: box \(400, 10, 420, 20\) lies outside "
                                          r"the 320x240 frame"):
        check_boxes(given["v1"], 320, 240, f"{csv}: video v1")
    assert check_boxes([(0, (-5, -5, 30, 30, 1.0))], 320, 240, "x")[0][1][:4] == (0, 0, 30, 30)
    (tmp_path / "bad.csv").write_text("video_id,frame,x1,y1,x2\nv1,0,1,2,3\n")
    with pytest.raises(VidkitError, match="bad.csv: missing column 'y2'"):
        read_boxes(tmp_path / "bad.csv")


def test_crop_from_given_boxes_and_bad_box_in_a_video(tmp_path):
    write_frames(tmp_path / "media" / "v1", n=4, size=64)
    csv = tmp_path / "boxes.csv"
    csv.write_text("video_id,frame,x1,y1,x2,y2,score\n" + "".join(f"v1,{f},20,20,40,40,0.9\n" for f in (0, 2, 3)))
    rows = crop_media([("v1", tmp_path / "media" / "v1")], tmp_path / "out" / "train",
                      CropSettings(margin=0.5, size=16, smooth=1), boxes=str(csv))
    assert rows["source"].tolist() == ["detected", "interpolated", "detected", "detected"]
    assert rows[["x1", "y1", "x2", "y2"]].drop_duplicates().values.tolist() == [[10, 10, 50, 50]]
    written = sorted((tmp_path / "out" / "train" / "v1").iterdir())
    assert [p.name for p in written] == [f"{i:05d}.jpg" for i in range(1, 5)]
    assert cv2.imread(str(written[0])).shape == (16, 16, 3)
    csv.write_text("video_id,frame,x1,y1,x2,y2\nv1,0,100,100,120,120\n")
    with pytest.raises(VidkitError, match=r"boxes.csv: video v1: frame 0: box .* lies outside the 64x64 frame"):
        crop_media([("v1", tmp_path / "media" / "v1")], tmp_path / "out" / "train", CropSettings(), boxes=str(csv))


def test_no_region_found_uses_the_full_frame(tmp_path, caplog):
    write_frames(tmp_path / "noise", n=3, size=48)
    with caplog.at_level(logging.WARNING):
        rows = crop_media([("noise", tmp_path / "noise")], tmp_path / "out",
                          CropSettings(detector="dlib_hog", size=32))
    assert "noise: no region found (dlib_hog); the full frame is used" in caplog.text
    assert rows["source"].eq("full").all() and rows[["x2", "y2"]].drop_duplicates().values.tolist() == [[48, 48]]
    assert len(list((tmp_path / "out" / "noise").glob("*.jpg"))) == 3


def test_crop_settings_come_from_the_yaml_then_the_keys(tmp_path):
    path = json_comp(tmp_path, {"p": {"x.mp4": {"label": "REAL"}}})
    spec = yaml.safe_load(path.read_text()) | {"crop_detector": "dlib_hog", "crop_margin": 0.2, "crop_every": 3}
    path.write_text(yaml.safe_dump(spec))
    comp = load_competition(path)
    assert settings_of(comp) == CropSettings("dlib_hog", 0.2, 224, "stable", 3)
    assert settings_of(comp, margin=0.5, every=None).margin == 0.5
    with pytest.raises(VidkitError, match="detector: 'mtcnn' is not one of dlib_hog, haar"):
        settings_of(comp, detector="mtcnn")


# ---------------------------------------------------------------- real faces

# hand-annotated face boxes (x1, y1, x2, y2) in frame 13 of four UCF101 ApplyEyeMakeup clips; the faces move
# little over their 25 frames
FACES = {"v_ApplyEyeMakeup_g08_c01": (150, 40, 235, 150), "v_ApplyEyeMakeup_g13_c03": (75, 20, 205, 190),
         "v_ApplyEyeMakeup_g16_c05": (175, 40, 290, 170), "v_ApplyEyeMakeup_g20_c06": (80, 35, 240, 195)}


@pytest.mark.slow
def test_face_detector_finds_hand_annotated_faces(shared_data, tmp_path):
    pytest.importorskip("dlib")
    root = shared_data / "ucf101_applyeyemakeup" / "ApplyEyeMakeup"
    media = [(vid, root / vid) for vid in FACES]
    rows = crop_media(media, tmp_path / "crops", CropSettings(detector="dlib_hog", margin=0.0, size=64, every=2))
    for vid, face in FACES.items():
        boxes = rows[rows["video_id"] == vid]
        assert len(boxes) == 25 and (tmp_path / "crops" / vid / "00025.jpg").is_file()
        from vidkit.data.crop import iou
        overlaps = [iou(face, b) for b in boxes[["x1", "y1", "x2", "y2"]].itertuples(index=False)]
        assert np.mean(np.array(overlaps) > 0.4) >= 0.8, (vid, np.round(overlaps, 2))
        assert (boxes["source"] == "detected").sum() >= 5


# ---------------------------------------------------------------- end to end

def write_mp4(path: Path, frames: list[np.ndarray]):
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()


def fake_of(frames: list[np.ndarray], box, seed: int) -> list[np.ndarray]:
    """A 'deepfake': the face region's colours swapped (BGR -> RGB) and a little noise, in every frame."""
    x1, y1, x2, y2 = box
    rng, out = np.random.default_rng(seed), []
    for f in frames:
        f = f.copy()
        face = f[y1:y2, x1:x2, ::-1].astype(np.int16) + rng.integers(-12, 12, (y2 - y1, x2 - x1, 3))
        f[y1:y2, x1:x2] = np.clip(face, 0, 255).astype(np.uint8)
        out.append(f)
    return out


@pytest.fixture
def dfdc_comp(shared_data, tmp_path_factory) -> Path:
    """A DFDC-like competition from real UCF101 faces: 8 originals (one per actor group, 13 frames) as .mp4,
    each with one fake (its face recoloured), three with a second fake; two part folders, each with its
    metadata.json; the last two originals and their fakes are the test set (ids with .mp4, sample
    filename,label)."""
    pytest.importorskip("dlib")
    from vidkit.data.crop import dlib_hog
    find = dlib_hog()
    root = tmp_path_factory.mktemp("dfdc") / "data"
    clips = sorted((shared_data / "ucf101_applyeyemakeup" / "ApplyEyeMakeup").iterdir())
    firsts = [next(c for c in clips if f"_g{g:02d}_" in c.name) for g in range(8, 16)]
    meta: dict[str, dict] = {"dfdc_train_part_0": {}, "dfdc_train_part_1": {}}
    test_ids = []
    for k, clip in enumerate(firsts):
        frames = [cv2.imread(str(p)) for p in sorted(clip.glob("*.jpg"))[::2]]
        found = find(cv2.cvtColor(frames[6], cv2.COLOR_BGR2RGB))
        box = tuple(int(v) for v in max(found, key=lambda b: b[4])[:4]) if found else (110, 40, 230, 180)
        box = (max(box[0], 0), max(box[1], 0), min(box[2], 340), min(box[3], 256))
        videos = {f"real{k}.mp4": (frames, None), f"fake{k}a.mp4": (fake_of(frames, box, k), f"real{k}.mp4")}
        if k % 3 == 1:
            videos[f"fake{k}b.mp4"] = (fake_of(frames, box, 100 + k), f"real{k}.mp4")
        for name, (video, original) in videos.items():
            if k >= 6:
                write_mp4(root / "test_videos" / name, video)
                test_ids.append(name)
                continue
            part = f"dfdc_train_part_{k % 2}"
            write_mp4(root / part / name, video)
            meta[part][name] = {"label": "REAL" if original is None else "FAKE", "split": "train",
                                "original": original}
    for part, records in meta.items():
        (root / part / "metadata.json").write_text(json.dumps(records))
    pd.DataFrame({"filename": test_ids, "label": 0.5}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"filename": test_ids, "label": [int(n.startswith("fake")) for n in test_ids]}) \
        .to_csv(root.parent / "test_labels.csv", index=False)
    spec = {"name": "dfdcmini", "train_json": "data/dfdc_train_part_*/metadata.json", "test_dir": "data/test_videos",
            "sample_submission": "data/sample_submission.csv", "id_column": "filename", "target_column": "label",
            "submission": "probability", "positive_class": "FAKE", "metric": "logloss", "n_folds": 2,
            "crops_dir": "crops", "crop_detector": "dlib_hog", "crop_margin": 0.3, "crop_size": 48,
            "crop_every": 4, "kaggle_user": "alice", "kaggle_competition": "dfdc-mini", "kernel_gpu": False}
    (root.parent / "dfdcmini.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root.parent / "dfdcmini.yaml"


@pytest.mark.slow
def test_dfdc_end_to_end_crop_cv_ensemble_submit_kernel(dfdc_comp, kaggle_python, tmp_path, monkeypatch):
    from conftest import TINY
    from vidkit.data.crop import run_crop
    from vidkit.flows.cv import run_cv
    from vidkit.flows.ensemble import run_ensemble
    from vidkit.flows.infer import load_member, predict_member
    from vidkit.flows.submit import run_submit
    from vidkit.kaggle.kernel import build, dry_run
    from vidkit.config import parse_overrides
    config = Path(__file__).resolve().parents[1] / "configs" / "r3d18_demo.yaml"
    monkeypatch.chdir(tmp_path)  # weights/dfdcmini/ensemble.yaml: what submit and kernel read by default
    comp = load_competition(dfdc_comp)
    boxes = pd.read_csv(run_crop(comp, settings_of(comp)))
    assert set(boxes["split"]) == {"train", "test"} and (boxes["source"] == "detected").mean() > 0.1
    table = index_train(comp)
    assert len(table) == 14 and table["path"].str.contains("/crops/train/").all()
    assert table.groupby("group")["video_id"].count().max() == 3 and table["group"].nunique() == 6
    runs = []  # a frame-level model (one frame per clip) scored per video over 8 frames, two ways
    for reduce in ("mean", "confident"):
        overrides = {**parse_overrides(TINY), "comp": str(dfdc_comp), "epochs": "2", "num_frames": "1", "tta_clips": "8",
                     "video_reduce": reduce, "video_reduce_args": "{fake: 0.5, real: 0.45, min_fakes: 1}",
                     "out_dir": str(tmp_path / "weights" / reduce)}
        if reduce == "mean":
            overrides.pop("video_reduce_args")
        runs.append(run_cv(load_config(str(config), overrides)))
    # OOF and test predictions go through the same reduction: fold 0's checkpoint alone, as `submit` runs it,
    # reproduces fold 0's OOF rows
    member = load_member(runs[1])
    assert member.tta.reduce == "confident" and member.cfg.reduce_positive == "FAKE"
    assert json.loads((runs[1] / "cv_report.json").read_text())["protocol"] == "1x8x1 confident video-level"
    member.checkpoints = [c for c in member.checkpoints if c.parent.name == "fold0"]
    oof = pd.read_csv(runs[1] / "oof.csv")
    folds = pd.read_csv(runs[1] / "folds.csv")
    val = table[table["video_id"].isin(folds.loc[folds["fold"] == 0, "video_id"])].reset_index(drop=True)
    want = oof.set_index("video_id").loc[val["video_id"], ["FAKE", "REAL"]].to_numpy()
    assert np.allclose(predict_member(member, val, ["FAKE", "REAL"]), want, atol=1e-5)
    blend = yaml.safe_load(run_ensemble(comp, [str(r) for r in runs]).read_text())
    assert [m["run"] for m in blend["members"]] == [str(r) for r in runs]
    sub = pd.read_csv(run_submit(comp, [str(r) for r in runs], str(tmp_path / "sub" / "submission.csv")))
    assert sub["filename"].tolist() == pd.read_csv(comp.resolve(comp.sample_submission))["filename"].tolist()
    assert len(list((tmp_path / "sub" / "crops" / "test").iterdir())) == 5  # submit cropped the test videos
    bundle, kernel_dir = build(comp, [str(r) for r in runs], out=str(tmp_path / "kernels"))
    kaggle = pd.read_csv(dry_run(kernel_dir, bundle, comp, tmp_path / "fake", python=kaggle_python))
    assert np.allclose(kaggle["label"], sub["label"], atol=1e-5)
    assert len(list((tmp_path / "fake" / "kaggle" / "working" / "vidkit" / "crops" / "test").iterdir())) == 5


def test_crop_verb_with_external_boxes_and_shards(tmp_path, monkeypatch):
    from vidkit.cli import main
    monkeypatch.chdir(tmp_path)
    path = json_comp(tmp_path, {"p": {"x.mp4": {"label": "REAL"}, "y.mp4": {"label": "FAKE", "original": "x.mp4"}}})
    csv = tmp_path / "boxes.csv"
    csv.write_text("video_id,frame,x1,y1,x2,y2,score\nx.mp4,1,4,4,12,12,0.9\ny.mp4,0,10,10,20,20,0.8\n")
    assert not main(["crop", f"comp={path}", f"boxes={csv}", "out=crops", "size=16", "margin=0"])
    boxes = pd.read_csv(tmp_path / "crops" / "boxes.csv")
    assert sorted(boxes["video_id"].unique()) == ["x.mp4", "y.mp4"] and set(boxes["split"]) == {"train"}
    assert boxes.groupby("video_id").size().tolist() == [3, 3]
    spec = yaml.safe_load(path.read_text()) | {"crops_dir": "crops"}
    path.write_text(yaml.safe_dump(spec))
    table = index_train(load_competition(path))  # training now reads the crops
    assert table["path"].str.endswith(("/crops/train/x", "/crops/train/y")).all() and (table["width"] == 16).all()
    for k in (0, 1):
        assert not main(["crop", f"comp={path}", f"boxes={csv}", "out=sh", f"shard={k}/2"])
    shards = pd.concat([pd.read_csv(tmp_path / "sh" / f"boxes.{k}-of-2.csv") for k in (0, 1)])
    assert sorted(shards["video_id"].unique()) == ["x.mp4", "y.mp4"] and len(shards) == 6


def test_check_lists_unknown_originals_as_a_hint(tmp_path, capsys):
    from vidkit.data.check import run_check
    path = json_comp(tmp_path, {"p": {"x.mp4": {"label": "REAL"}, "y.mp4": {"label": "FAKE", "original": "gone.mp4"}}})
    assert run_check(load_competition(path), 2) == 0
    out = capsys.readouterr().out
    assert "original is not in the set" in out and "metadata.json" in out


def test_haar_cascade_finds_a_face_or_says_what_it_needs(shared_data):
    from vidkit.data.crop import haar
    try:
        find = haar()
    except VidkitError as e:  # opencv 5 wheels ship no cascade files (opencv-python 4.x, Kaggle's, does)
        assert "haarcascade_frontalface_default.xml: detector=haar needs the cascade files" in str(e)
        return
    frame = cv2.imread(str(shared_data / "ucf101_applyeyemakeup" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g20_c06"
                           / "00013.jpg"))
    from vidkit.data.crop import iou
    boxes = find(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    assert max(iou(FACES["v_ApplyEyeMakeup_g20_c06"], b) for b in boxes) > 0.4
