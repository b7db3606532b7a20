"""Bad data, one kind at a time, built from real UCF101 frames: `vidkit check` reports it, training leaves it
out (or patches a corrupt frame) with a warning, and the submission still has every id."""
import logging
import re
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import tiny_overrides
from vidkit import cli
from vidkit.config import load_competition, load_config
from vidkit.flows.cv import prepare_run, run_cv
from vidkit.data import index_train
from vidkit.data.check import KINDS
from vidkit.data.layouts import PROBLEMS
from vidkit.data.media import list_frames, read_images
from vidkit.errors import VidkitError
from vidkit.flows.submit import run_submit
from vidkit.engine.runtime import make_accelerator

CLASSES = {"A": ["g08_c01", "g08_c02", "g09_c01"], "B": ["g10_c01", "g10_c02", "g11_c01"]}
TEST = ["g12_c01", "g13_c01"]


def vid(name: str) -> str:
    return f"v_ApplyEyeMakeup_{name}"


def make_comp(tmp_path, shared_data, csv: bool = False, **spec) -> dict:
    """A 2-class frame-folder competition (labels arbitrary) copied from the real clips; `csv`: the same
    videos in one folder with a train_csv."""
    src = shared_data / "ucf101_applyeyemakeup" / "ApplyEyeMakeup"
    data = tmp_path / "data"
    rows = []
    for label, names in CLASSES.items():
        for n in names:
            shutil.copytree(src / vid(n), data / "train" / ("" if csv else label) / vid(n))
            rows.append({"video_id": vid(n), "label": label})
    for n in TEST:
        shutil.copytree(src / vid(n), data / "test" / vid(n))
    pd.DataFrame({"id": [vid(n) for n in TEST], "label": "A"}).to_csv(data / "sample.csv", index=False)
    pd.DataFrame(rows).to_csv(data / "train.csv", index=False)
    comp = {"name": "bad", "train_dir": "data/train", "test_dir": "data/test", "sample_submission": "data/sample.csv",
            "group_regex": "_(g\\d+)_", "n_folds": 2, "train_csv": "data/train.csv" if csv else None, **spec}
    (tmp_path / "comp.yaml").write_text(yaml.safe_dump(comp))
    return {"yaml": tmp_path / "comp.yaml", "train": data / "train" / ("" if csv else "A"), "data": data}


def check(capsys, comp, *args):
    rc = cli.main(["check", f"comp={comp['yaml']}", *args])
    return rc, capsys.readouterr().out


def frame(comp, name: str, i: int = 1):
    return comp["train"] / vid(name) / f"{i:05d}.jpg"


def test_clean_data_exits_0(tmp_path, shared_data, capsys):
    rc, out = check(capsys, make_comp(tmp_path, shared_data))
    assert rc == 0 and out.startswith("scanned 6 training and 2 test videos: no problems")


def test_truncated_jpeg(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    bad = frame(comp, "g08_c01", 7)
    bad.write_bytes(bad.read_bytes()[:4000])
    rc, out = check(capsys, comp)
    assert rc == 1 and "corrupt_image: 1 unreadable or corrupt images" in out and str(bad) in out


def test_zero_byte_file(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    (comp["train"] / vid("g08_c02") / "00026.jpg").write_bytes(b"")
    rc, out = check(capsys, comp)
    assert rc == 1 and "zero_byte: 1 zero-byte files" in out and "00026.jpg" in out


def test_non_image_files_in_a_frame_folder(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    (comp["train"] / vid("g08_c01") / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (comp["data"] / "test" / vid("g12_c01") / "notes.txt").write_text("hi")
    rc, out = check(capsys, comp)
    assert rc == 1 and "non_image: 2 non-image files" in out and ".DS_Store" in out and "notes.txt" in out


def test_empty_folder(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    (comp["train"] / vid("g09_c02")).mkdir()
    rc, out = check(capsys, comp)
    assert rc == 1 and "empty: 1 empty folders" in out and vid("g09_c02") in out


def test_short_video_against_the_clip_length(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    for p in sorted((comp["train"] / vid("g09_c01")).iterdir())[3:]:
        p.unlink()
    rc, out = check(capsys, comp)
    assert rc == 1 and "short: 1 videos with fewer frames" in out and "3 readable frames < 16" in out
    assert check(capsys, comp, "num_frames=3")[0] == 0
    assert "< 8" in check(capsys, comp, "config=r3d18_demo")[1]  # the config's num_frames


def test_frame_and_video_size_outliers(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    odd = frame(comp, "g08_c01", 5)
    cv2.imwrite(str(odd), cv2.resize(cv2.imread(str(odd)), (170, 128)))
    for p in (comp["train"] / vid("g08_c02")).iterdir():  # a whole video at a far smaller size
        cv2.imwrite(str(p), cv2.resize(cv2.imread(str(p)), (100, 80)))
    rc, out = check(capsys, comp)
    assert rc == 1 and "frame_size: 1 frames" in out and "170x128, first frame 340x256" in out
    assert "video_size: 1 videos far" in out and "100x80, usual 340x256" in out


def test_duplicate_ids_in_the_csv(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data, csv=True)
    csv = comp["data"] / "train.csv"
    csv.write_text(csv.read_text() + f"{vid('g08_c01')},B\n")
    rc, out = check(capsys, comp)
    assert rc == 1 and "duplicate_id: 2 duplicate video ids" in out


def test_unknown_label_in_the_csv(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data, csv=True, classes=["A", "B"])
    df = pd.read_csv(comp["data"] / "train.csv")
    df.loc[0, "label"] = "C"
    df.to_csv(comp["data"] / "train.csv", index=False)
    rc, out = check(capsys, comp)
    assert rc == 1 and "unknown_label: 1 labels not in the competition's classes" in out and "label 'C'" in out


def test_test_id_missing_from_the_test_folder(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    shutil.rmtree(comp["data"] / "test" / vid("g13_c01"))
    rc, out = check(capsys, comp)
    assert rc == 1 and "missing_test: 1 test ids missing" in out and vid("g13_c01") in out


def test_group_spread_across_classes_is_a_hint_only(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    shutil.move(comp["train"] / vid("g08_c02"), comp["data"] / "train" / "B" / vid("g08_c02"))
    rc, out = check(capsys, comp)
    assert rc == 0 and "group_leak: 1 groups spread across classes" in out and "group 'g08': classes A, B" in out


def test_an_id_the_group_regex_does_not_match(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    odd = comp["train"] / "v_ApplyEyeMakeup_nogroup"
    shutil.move(comp["train"] / vid("g08_c02"), odd)
    rc, out = check(capsys, comp)
    assert rc == 1 and "group_regex: 1 video ids the group_regex does not match" in out and str(odd) in out
    with pytest.raises(VidkitError, match=re.escape(f"{odd}: group_regex")):  # training refuses the same video
        index_train(load_competition(comp["yaml"]))


def test_test_media_the_sample_does_not_list_is_a_hint_only(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    shutil.copytree(comp["data"] / "test" / vid("g12_c01"), comp["data"] / "test" / vid("g14_c01"))
    rc, out = check(capsys, comp)
    assert rc == 0 and out.startswith("scanned 6 training and 2 test videos: no problems")
    assert "unlisted_test: 1 test folders" in out and f"will not be written: {vid('g14_c01')}" in out


def test_every_problem_the_walker_reports_has_a_check_kind():
    assert set(PROBLEMS) <= set(KINDS)


def test_exclude_out_lists_the_bad_training_videos(tmp_path, shared_data, capsys):
    comp = make_comp(tmp_path, shared_data)
    frame(comp, "g09_c01", 3).write_bytes(b"")
    (comp["train"] / vid("g09_c02")).mkdir()
    (comp["train"] / vid("g08_c01") / ".DS_Store").write_bytes(b"x")  # harmless: not a reason to exclude
    rc, _ = check(capsys, comp, f"exclude_out={tmp_path / 'bad.csv'}")
    bad = pd.read_csv(tmp_path / "bad.csv")
    assert rc == 1 and dict(zip(bad["video_id"], bad["reason"])) == {vid("g09_c01"): "zero_byte",
                                                                      vid("g09_c02"): "empty"}


def test_a_corrupt_frame_is_replaced_by_its_neighbour(shared_data, tmp_path, caplog):
    folder = tmp_path / "v"
    shutil.copytree(shared_data / "ucf101_applyeyemakeup" / "ApplyEyeMakeup" / vid("g08_c01"), folder)
    names = list_frames(folder)
    good = read_images(folder, names, [0, 1, 2, 3], short_side=64)
    (folder / names[1]).write_bytes((folder / names[1]).read_bytes()[:3000])
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            clip = read_images(folder, names, [0, 1, 2, 3], short_side=64)
            assert np.array_equal(clip[1], good[0]) and np.array_equal(clip[[0, 2, 3]], good[[0, 2, 3]])
    warned = [r.getMessage() for r in caplog.records if "corrupt frame" in r.getMessage()]
    assert len(warned) == 1 and str(folder / names[1]) in warned[0]  # once per file


def _overrides(comp, out, **kw):
    kv = tiny_overrides()
    kv.update({"comp": str(comp["yaml"]), "out_dir": str(out), "epochs": "1", "num_frames": "8", **kw})
    return kv


def test_cv_leaves_bad_videos_out_and_submit_writes_every_id(tmp_path, shared_data, caplog):
    comp = make_comp(tmp_path, shared_data)
    for i in range(2, 25):  # every clip meets corrupt frames; frame 1 (probed) and 25 are fine
        p = frame(comp, "g08_c02", i)
        p.write_bytes(p.read_bytes()[:2000])
    (comp["train"] / vid("g09_c02")).mkdir()  # an empty folder
    shutil.rmtree(comp["data"] / "test" / vid("g13_c01"))  # a test id without media
    with caplog.at_level(logging.WARNING):
        run = run_cv(load_config("r3d18_demo", _overrides(comp, tmp_path / "run")))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"leaving out 1 training videos: {vid('g09_c02')} (no readable frames)" in text
    assert f"{vid('g08_c02')}/00002.jpg: corrupt frame" in text
    oof = pd.read_csv(run / "oof.csv")
    assert len(oof) == 6 and vid("g09_c02") not in set(oof["video_id"]) and vid("g08_c02") in set(oof["video_id"])
    assert len(pd.read_csv(run / "folds.csv")) == 6
    sub = pd.read_csv(run_submit(str(comp["yaml"]), [str(run)], str(tmp_path / "sub.csv")))
    assert sub["id"].tolist() == [vid(n) for n in TEST] and sub["label"].notna().all()


def test_exclude_file_drops_ids_and_keeps_the_drawn_folds(tmp_path, shared_data):
    comp = make_comp(tmp_path, shared_data)
    cfg = load_config("r3d18_demo", _overrides(comp, tmp_path / "run"))
    _, table, _, _ = prepare_run(cfg, make_accelerator(cfg))
    (tmp_path / "bad.csv").write_text(f"video_id,reason\n{vid('g10_c02')},corrupt_image\n")
    cfg = load_config("r3d18_demo", _overrides(comp, tmp_path / "run2", exclude=str(tmp_path / "bad.csv")))
    _, kept, _, _ = prepare_run(cfg, make_accelerator(cfg))
    assert list(kept["video_id"]) == [v for v in table["video_id"] if v != vid("g10_c02")]
    assert kept.set_index("video_id")["fold"].equals(table.set_index("video_id")["fold"].drop(vid("g10_c02")))


@pytest.mark.parametrize("line, message", [
    ("metric: foo", "metric: 'foo' is not one of accuracy"),
    ("submission: labelz", "submission: 'labelz' is not one of label"),
    ("n_folds: many", "n_folds: expected int, got 'many'"),
    ('group_regex: "(g"', "group_regex: '(g' is not a valid regular expression"),
])
def test_spec_errors_are_one_line_naming_field_and_value(tmp_path, shared_data, capsys, line, message):
    comp = make_comp(tmp_path, shared_data)
    spec = yaml.safe_load(comp["yaml"].read_text()) | yaml.safe_load(line)
    comp["yaml"].write_text(yaml.safe_dump(spec))
    for verb in ("check", "folds", "submit"):
        assert cli.main([verb, f"comp={comp['yaml']}"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err and str(comp["yaml"]) in err
    with pytest.raises(VidkitError, match=re.escape(message)):
        cli.main(["check", f"comp={comp['yaml']}", "debug=true"])  # debug: the traceback


def test_check_image_without_simplejpeg(tmp_path, monkeypatch):
    """Kaggle's image has no simplejpeg: the header comes from PIL, the same findings."""
    import vidkit.data.check as check
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    good.write_bytes(cv2.imencode(".jpg", np.full((24, 40, 3), 128, np.uint8))[1].tobytes())
    bad.write_bytes(good.read_bytes()[:20])
    monkeypatch.setattr(check, "simplejpeg", None)
    assert check.check_image(good) == (None, "", (24, 40))
    assert check.check_image(bad)[0] == "corrupt_image"
