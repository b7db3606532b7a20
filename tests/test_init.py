"""`vidkit init DATA_DIR`: competition yamls written from folders shaped like real downloads (UCF101's Kaggle CSV
layout, HMDB-style class folders, DFDC's metadata.json, a YouTube-8M-style feature folder, a multi-label CSV)."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY
from multilabel_data import make_multilabel_comp
from vidkit.data.discover import run_init
from vidkit.errors import VidkitError


def write_avi(path: Path, brightness: int, n: int = 16, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    rng = np.random.default_rng(brightness)
    for i in range(n):
        frame = np.full((size, size, 3), brightness, np.uint8)
        frame[:, (i * 3) % size:(i * 3) % size + 4] = rng.integers(0, 255, 3)
        writer.write(frame)
    writer.release()


def ucf_download(root: Path) -> Path:
    """UCF101 as Kaggle ships it: train.csv (clip_name, clip_path "/train/<class>/<clip>.avi", label), train/,
    test/ and a sample whose ids carry the extension."""
    rows = []
    for c, (cls, light) in enumerate((("ApplyEyeMakeup", 60), ("Basketball", 190))):
        for g in range(8, 14):
            clip = f"v_{cls}_g{g:02d}_c01"
            write_avi(root / "train" / cls / f"{clip}.avi", light + g)
            rows.append({"clip_name": clip, "clip_path": f"/train/{cls}/{clip}.avi", "label": cls})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    for t in range(4):
        write_avi(root / "test" / f"v_test_{t}.avi", 60 + 130 * (t % 2))
    pd.DataFrame({"id": [f"v_test_{t}.avi" for t in range(4)], "label": "Basketball"}).to_csv(
        root / "sample_submission.csv", index=False)
    return root


def hmdb_download(root: Path) -> Path:
    """HMDB51's shape: hmdb51_org/<class>/<clip>.avi, no table, no test set, no sample."""
    for cls, light in (("brush_hair", 50), ("cartwheel", 200)):
        for i in range(6):
            write_avi(root / "hmdb51_org" / cls / f"April_09_{cls}_u_nm_np1_ba_goo_{i}.avi", light + i)
    return root


def dfdc_download(root: Path) -> Path:
    """DFDC: train_sample_videos/metadata.json ({file: {label, split, original}}), test_videos/, a sample."""
    meta = {}
    for i in range(6):
        real = f"real{i}.mp4"
        meta[real] = {"label": "REAL", "split": "train", "original": None}
        meta[f"fake{i}.mp4"] = {"label": "FAKE", "split": "train", "original": real}
    (root / "train_sample_videos").mkdir(parents=True)
    (root / "train_sample_videos" / "metadata.json").write_text(json.dumps(meta))
    for t in range(2):
        write_avi(root / "test_videos" / f"t{t}.avi", 100)
    pd.DataFrame({"filename": ["t0.mp4", "t1.mp4"], "label": 0.5}).to_csv(root / "sample_submission.csv",
                                                                          index=False)
    return root


def yt8m_download(root: Path) -> Path:
    """YouTube-8M style: train.csv (id, labels "3 17"), train_features/<id>.npy, LabelConfidencePairs sample."""
    rng = np.random.default_rng(0)
    (root / "train_features").mkdir(parents=True)
    rows = []
    for i in range(20):
        np.save(root / "train_features" / f"v{i:03d}.npy", rng.random((4, 8)).astype(np.float32))
        rows.append({"id": f"v{i:03d}", "labels": " ".join(map(str, sorted(rng.choice(6, 2, replace=False))))})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"Id": ["t0", "t1"], "LabelConfidencePairs": "1 0.5 2 0.4"}).to_csv(
        root / "sample_submission.csv", index=False)
    return root


def _init(data: Path, tmp_path: Path, name: str) -> tuple[Path, dict]:
    path = run_init(str(data), name=name, out=str(tmp_path / "competition" / f"{name}.yaml"))
    return path, yaml.safe_load(path.read_text())


def _vidkit(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidkit", *map(str, args)], capture_output=True, text=True)


def test_ucf101_kaggle_layout(tmp_path):
    path, spec = _init(ucf_download(tmp_path / "ucf101"), tmp_path, "ucf")
    assert spec["train_csv"] == "../ucf101/train.csv" and spec["train_dir"] == "../ucf101"
    assert spec["train_id_column"] == "clip_name" and spec["train_path_column"] == "clip_path"
    assert spec["group_regex"] == "_(g\\d+)_" and spec["classes"] == ["ApplyEyeMakeup", "Basketball"]
    assert (spec["submission"], spec["metric"], spec["id_column"]) == ("label", "accuracy", "id")
    text = path.read_text()
    assert "# the training table (12 rows)" in text and "a guess: check the evaluation page" in text


@pytest.mark.slow
def test_ucf101_yaml_runs_check_cv_submit(tmp_path):
    path, _ = _init(ucf_download(tmp_path / "ucf101"), tmp_path, "ucf")
    check = _vidkit("check", f"comp={path}")
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    from vidkit.config import load_config, parse_overrides
    from vidkit.flows.cv import run_cv
    from vidkit.flows.submit import run_submit
    overrides = {**parse_overrides(TINY), "comp": str(path), "epochs": "1", "out_dir": str(tmp_path / "run")}
    run = run_cv(load_config("configs/r3d18_demo.yaml", overrides))
    sub = pd.read_csv(run_submit(str(path), [str(run)], str(tmp_path / "sub.csv")))
    assert sub["id"].tolist() == [f"v_test_{t}.avi" for t in range(4)]
    assert set(sub["label"]) <= {"ApplyEyeMakeup", "Basketball"}


def test_hmdb_folders(tmp_path):
    path, spec = _init(hmdb_download(tmp_path / "hmdb"), tmp_path, "hmdb")
    assert spec["train_dir"] == "../hmdb/hmdb51_org" and spec["classes"] == ["brush_hair", "cartwheel"]
    assert spec["sample_submission"] is None and "submit` needs one" in path.read_text()
    from vidkit.config import load_competition
    from vidkit.data import index_train
    from vidkit.data.folds import make_folds
    from vidkit.flows.submit import run_submit
    comp = load_competition(path)
    folds = make_folds(index_train(comp), comp.n_folds)
    assert len(folds) == 12 and folds["fold"].nunique() == 5
    with pytest.raises(VidkitError, match=r"hmdb\.yaml: sample_submission is required to submit"):
        run_submit(comp, out=str(tmp_path / "sub.csv"))


def test_dfdc_metadata(tmp_path):
    _, spec = _init(dfdc_download(tmp_path / "dfdc"), tmp_path, "dfdc")
    assert spec["train_json"] == "../dfdc/train_sample_videos/metadata.json"
    assert (spec["submission"], spec["positive_class"], spec["id_column"]) == ("probability", "FAKE", "filename")
    assert spec["test_dir"] == "../dfdc/test_videos" and spec["classes"] == ["FAKE", "REAL"]


def test_youtube8m_features(tmp_path):
    _, spec = _init(yt8m_download(tmp_path / "yt8m"), tmp_path, "yt8m")
    assert spec["features_dir"] == "../yt8m/train_features" and spec["train_label_column"] == "labels"
    assert (spec["task"], spec["label_sep"], spec["submission"], spec["metric"]) == ("multilabel", " ", "pairs", "gap")
    assert (spec["id_column"], spec["target_column"]) == ("Id", "LabelConfidencePairs")
    assert spec["classes"] == [str(i) for i in range(6)]


def test_multilabel_csv_round_trip(tmp_path):
    comp = make_multilabel_comp(tmp_path / "src")
    path, spec = _init(comp.parent.parent / "data", tmp_path, "mlinit")
    assert (spec["task"], spec["submission"], spec["train_label_column"]) == ("multilabel", "labels", "tags")
    assert spec["train_group_column"] == "scene" and spec["allow_empty_labels"] is True
    from vidkit.config import load_competition
    from vidkit.data import index_train
    assert len(index_train(load_competition(path))) == 48


def test_refusals_name_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidkitError, match=r"empty: no training data found"):
        run_init(str(tmp_path / "empty"), out=str(tmp_path / "x.yaml"))
    data = ucf_download(tmp_path / "two")
    (data / "train_extra.csv").write_text("a,b\n1,2\n")
    with pytest.raises(VidkitError, match=r"two: several training tables \(train\.csv, train_extra\.csv\)"):
        run_init(str(data), out=str(tmp_path / "y.yaml"))
    (data / "train_extra.csv").unlink()
    pd.DataFrame({"clip_name": ["a"], "clip_path": ["/train/x.avi"], "what": ["b"]}).to_csv(data / "train.csv")
    with pytest.raises(VidkitError, match=r"train\.csv: cannot tell which column is the label"):
        run_init(str(data), out=str(tmp_path / "z.yaml"))


def test_label_separator_rule():
    from vidkit.data.discover import label_sep
    assert label_sep(pd.Series(["dog ball", "dog", "cat", "ball cat"])) == " "
    assert label_sep(pd.Series(["3 17", "5 8 13"])) == " "  # label ids
    assert label_sep(pd.Series(["a|b", "b", "a", "c|a"])) == "|"
    assert label_sep(pd.Series(["playing guitar", "playing drums", "surfing"])) is None  # class names with spaces
    assert label_sep(pd.Series(["up", "down"])) is None


def test_real_ucf101_folder(shared_data, tmp_path):
    """The shared UCF101 clips (meta.csv: video_id,label,group,...; frame folders under ApplyEyeMakeup/)."""
    _, spec = _init(shared_data / "ucf101_applyeyemakeup", tmp_path, "ucfreal")
    assert spec["train_csv"].endswith("ucf101_applyeyemakeup/meta.csv")
    assert spec["train_dir"].endswith("ucf101_applyeyemakeup/ApplyEyeMakeup") and spec["classes"] == ["ApplyEyeMakeup"]
    from vidkit.config import load_competition
    from vidkit.data import index_train
    table = index_train(load_competition(tmp_path / "competition" / "ucfreal.yaml"))
    assert len(table) == 101 and table["group"].str.fullmatch(r"g\d+").all()
