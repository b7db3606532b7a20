import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from vidkit.config import load_competition
from vidkit.data import VideoDataset, eval_transform, index_test, index_train, make_sampler, train_transform
from vidkit.data.frames import extract_tree
from vidkit.data.media import list_frames, read_video
from vidkit.data.sampling import multi_indices, offset_indices, random_indices, uniform_indices
from vidkit.errors import VidkitError
from vidkit.models import InputSpec


def _write_comp(root, **fields):
    lines = [f"{k}: {v}" for k, v in {"name": "t", **fields}.items()]
    (root / "c.yaml").write_text("\n".join(lines) + "\n")
    return load_competition(root / "c.yaml")


def _frames(folder, n, size=(24, 32), start=0):
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i + start}.jpg"), np.full((*size, 3), i * 10, np.uint8))


def test_frame_folder_layout(tiny_comp):
    table = index_train(load_competition(tiny_comp))
    assert len(table) == 24 and sorted(table["label"].unique()) == ["down", "left", "right", "up"]
    assert table["group"].nunique() == 6 and table["group"].str.fullmatch(r"g\d+").all()
    assert (table["kind"] == "frames").all() and table["n_frames"].between(16, 24).all()
    assert (table["height"] == 48).all()


def test_natural_frame_order(tmp_path):
    _frames(tmp_path / "v", 12)
    (tmp_path / "v" / ".DS_Store").write_text("x")
    assert list_frames(tmp_path / "v")[:4] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert list_frames(tmp_path / "v")[-2:] == ["10.jpg", "11.jpg"]


def test_video_file_layout(tmp_path, shared_data):
    for cls, name in (("wrestle", "kinetics_arm_wrestling.mp4"), ("other", "sample_a.mp4")):
        (tmp_path / "train" / cls).mkdir(parents=True)
        shutil.copy(shared_data / "videos" / name, tmp_path / "train" / cls / name)
    table = index_train(_write_comp(tmp_path, train_dir="train"))
    assert sorted(table["video_id"]) == ["kinetics_arm_wrestling", "sample_a"]
    assert (table["kind"] == "video").all()
    assert table.set_index("video_id").loc["sample_a", "n_frames"] == 300
    assert table["group"].tolist() == table["video_id"].tolist()  # no regex, no CSV: each video its own group


def test_csv_layout(tmp_path, shared_data):
    _frames(tmp_path / "media" / "a1", 5)
    shutil.copy(shared_data / "videos" / "sample_a.mp4", tmp_path / "media" / "b1.mp4")
    pd.DataFrame({"video_id": ["a1", "b1"], "label": ["x", "y"], "group": ["g1", "g2"]}).to_csv(
        tmp_path / "train.csv", index=False)
    table = index_train(_write_comp(tmp_path, train_dir="media", train_csv="train.csv"))
    assert table["kind"].tolist() == ["frames", "video"]
    assert table["group"].tolist() == ["g1", "g2"] and table["n_frames"].tolist() == [5, 300]


def test_csv_missing_media_is_a_clear_error(tmp_path):
    (tmp_path / "media").mkdir()
    pd.DataFrame({"video_id": ["nope"], "label": ["x"]}).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(VidkitError, match="train.csv: no media for video_id 'nope'"):
        index_train(_write_comp(tmp_path, train_dir="media", train_csv="train.csv"))


def test_test_ids_with_and_without_extension(tmp_path, shared_data):
    _frames(tmp_path / "train" / "x" / "v1", 4)
    _frames(tmp_path / "test" / "abc", 4)
    shutil.copy(shared_data / "videos" / "sample_a.mp4", tmp_path / "test" / "def.mp4")
    pd.DataFrame({"id": ["def.mp4", "abc", "ghost"], "label": "x"}).to_csv(tmp_path / "sample.csv", index=False)
    test = index_test(_write_comp(tmp_path, train_dir="train", test_dir="test", sample_submission="sample.csv"))
    assert test["video_id"].tolist() == ["def.mp4", "abc", "ghost"]
    assert test["kind"].tolist() == ["video", "frames", "missing"]


def test_a_training_id_the_group_regex_does_not_match_is_a_clear_error(tmp_path):
    _frames(tmp_path / "train" / "x" / "clip_g1_a", 2)
    _frames(tmp_path / "train" / "x" / "clip_nogroup", 2)
    comp = _write_comp(tmp_path, train_dir="train", group_regex=r"'_(g\d+)_'")
    with pytest.raises(VidkitError) as err:
        index_train(comp)
    assert str(err.value) == (f"{tmp_path / 'train' / 'x' / 'clip_nogroup'}: group_regex '_(g\\\\d+)_' "
                              "does not match video id 'clip_nogroup'")


def test_test_media_the_sample_does_not_list_is_a_warning(tmp_path, caplog):
    _frames(tmp_path / "train" / "x" / "v1", 2)
    for vid in ("a", "b", "c"):
        _frames(tmp_path / "test" / vid, 2)
    pd.DataFrame({"id": ["b"], "label": "x"}).to_csv(tmp_path / "sample.csv", index=False)
    with caplog.at_level("WARNING"):
        test = index_test(_write_comp(tmp_path, train_dir="train", test_dir="test", sample_submission="sample.csv"))
    assert test["video_id"].tolist() == ["b"]
    assert "2 test videos are not in the sample submission and will not be written: a, c" in caplog.text


def test_uniform_sampler_centres_segments():
    assert uniform_indices(16, 8).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert uniform_indices(3, 5, "repeat").tolist() == [0, 1, 2, 2, 2]
    assert uniform_indices(3, 5, "loop").tolist() == [0, 1, 2, 0, 1]


def test_random_sampler_keeps_stride_and_range():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        idx = random_indices(40, 8, 2, rng)
        assert (np.diff(idx) == 2).all() and idx.min() >= 0 and idx.max() < 40
        starts.add(int(idx[0]))
    assert len(starts) > 5
    # too short for the stride: the stride shrinks before any padding
    assert (np.diff(random_indices(10, 8, 4, rng)) == 1).all()


def test_multi_sampler_spreads_clips():
    clips = [multi_indices(100, 8, 2, k, 3) for k in range(3)]
    assert clips[0][0] == 0 and clips[2][-1] == 99 and 40 <= clips[1][0] <= 45
    assert make_sampler("multi", 8, 2, 3)(100, 1).tolist() == clips[1].tolist()


def test_offset_clips_start_at_their_frame_and_fit_short_videos():
    assert offset_indices(100, 4, 2, 8, "repeat").tolist() == [8, 10, 12, 14]
    assert offset_indices(10, 4, 4, 8, "repeat").tolist() == [0, 3, 6, 9]  # stride 4 -> 3, moved back to 0
    assert offset_indices(3, 4, 2, 1, "loop").tolist() == [0, 1, 2, 0]


def test_one_augmentation_draw_for_all_frames():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    clip = np.stack([frame] * 6)
    transform = train_transform(32, crop_scale=0.2, hflip=0.5, color_jitter=1.0)
    outs = []
    for seed in range(4):
        transform.set_random_seed(seed)
        out = transform(images=clip)["images"]
        assert out.shape == (6, 32, 32, 3)
        assert all((out[t] == out[0]).all() for t in range(6))  # same crop, flip and jitter on every frame
        outs.append(out[0])
    assert not all((o == outs[0]).all() for o in outs)  # but different draws across clips


def test_read_video_matches_sequential_decode(shared_data):
    path = shared_data / "videos" / "kinetics_arm_wrestling.mp4"
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f[..., ::-1])
    wanted = [0, 3, 3, 50, 200, len(frames) - 1]
    clip = read_video(path, wanted)
    assert clip.shape == (6, 256, 340, 3)
    for got, i in zip(clip, wanted):
        assert np.abs(got.astype(int) - frames[i].astype(int)).mean() < 2


def test_frames_verb_extracts_at_fps_and_size(tmp_path, shared_data):
    (tmp_path / "in" / "cls").mkdir(parents=True)
    shutil.copy(shared_data / "videos" / "kinetics_arm_wrestling.mp4", tmp_path / "in" / "cls" / "a.mp4")
    assert extract_tree(str(tmp_path / "in"), str(tmp_path / "out"), fps=7, size=64) == 1
    names = list_frames(tmp_path / "out" / "cls" / "a")
    assert abs(len(names) - 70) <= 2  # 280 frames at 28 fps -> 10 s at 7 fps
    assert cv2.imread(str(tmp_path / "out" / "cls" / "a" / names[0])).shape[:2] == (64, 85)


def test_dataset_items_in_model_layout(tiny_comp):
    table = index_train(load_competition(tiny_comp)).head(3)
    spec = InputSpec(4, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "TCHW")
    ds = VideoDataset(table, make_sampler("multi", 4, 2, 2), eval_transform(32), spec, 36, np.arange(3), num_clips=2)
    assert len(ds) == 6
    item = ds[3]
    assert item["video"].shape == (4, 3, 32, 32) and item["video"].dtype.is_floating_point
    assert item["label"] == 1 and item["clip_index"] == 1 and item["video_id"] == table["video_id"].iloc[1]
    assert -2.1 <= float(item["video"].min()) and float(item["video"].max()) <= 2.1  # normalised
