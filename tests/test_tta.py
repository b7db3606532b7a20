import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from vidkit.config import Config, load_competition, load_config
from vidkit.data import eval_transform, index_train
from vidkit.data.media import read_clip
from vidkit.data.transforms import normalize, to_tensor
from vidkit.errors import VidkitError
from vidkit.models import create_model
from vidkit.engine.runtime import make_accelerator
from vidkit.engine.tta import TTADataset, TTASpec, eval_loader, predict, spatial_crops, tta_spec


def _model(frames=4, size=32):
    torch.manual_seed(0)
    return create_model("r3d_18", 4, num_frames=frames, image_size=size, width=8).eval()


def _table(tiny_comp, n=3):
    return index_train(load_competition(tiny_comp)).iloc[:n].reset_index(drop=True)


@pytest.mark.parametrize("reduce", ["mean", "logits"])
def test_batched_views_equal_view_by_view(tiny_comp, reduce):
    model, table = _model(), _table(tiny_comp)
    tta = TTASpec(clips=2, crops=3, flip=True, reduce=reduce)
    dataset = TTADataset(table, model.input_spec, tta, frame_stride=2)
    cfg = Config(batch_size=12, num_workers=0)  # 24 clips a batch: 2 videos x 12 views, so one batch mixes videos
    batched = predict(model, eval_loader(cfg, dataset), make_accelerator(cfg), len(table))
    with torch.no_grad():
        for i in range(len(table)):
            spec = model.input_spec
            views = normalize(dataset[i]["video"], spec.mean, spec.std, spec.layout)
            logits = torch.stack([model(view[None])[0] for view in views])
            want = logits.mean(0).softmax(-1) if reduce == "logits" else logits.softmax(-1).mean(0)
            np.testing.assert_allclose(batched[i], want.numpy(), atol=1e-5)
    assert np.allclose(batched.sum(1), 1)


def test_centre_views_are_the_eval_transform(tiny_comp):
    """crops=1 without flip gives exactly the clips the training pipeline validates on."""
    model, table = _model(), _table(tiny_comp, 2)
    spec = model.input_spec
    dataset = TTADataset(table, spec, TTASpec(clips=3), frame_stride=2, normalize=True)
    transform = eval_transform(spec.size)
    for i, row in table.iterrows():
        views = dataset[i]["video"]
        indices = TTASpec(clips=3).clip_indices(row["n_frames"], spec.num_frames, 2, "repeat")
        for view, idx in zip(views, indices):
            frames = transform(images=read_clip(row, idx, dataset.short))["images"]
            assert torch.equal(view, to_tensor(np.asarray(frames), spec.mean, spec.std, spec.layout))


def test_three_crops_along_the_long_side():
    wide = np.tile(np.arange(70, dtype=np.uint8)[None, None, :, None], (2, 40, 1, 3))  # pixel value = column
    left, centre, right = (t(images=wide)["images"] for t in spatial_crops(32, 40, 3))
    assert left.shape == (2, 32, 32, 3)
    assert left[0, 0, 0, 0] == 0 and right[0, 0, -1, 0] == 69 and left[0, 0, -1, 0] < centre[0, 0, 0, 0] + 32
    assert np.array_equal(centre, spatial_crops(32, 40, 1)[0](images=wide)["images"])
    tall = [t(images=wide.transpose(0, 2, 1, 3))["images"] for t in spatial_crops(32, 40, 3)]
    assert tall[0][0, 0, 0, 0] == 0 and tall[2][0, -1, 0, 0] == 69


def test_flip_views_mirror_their_crop(tiny_comp):
    model, table = _model(), _table(tiny_comp, 1)
    views = TTADataset(table, model.input_spec, TTASpec(clips=1, crops=3, flip=True))[0]["video"]
    assert views.shape[0] == 6
    assert views.dtype == torch.uint8 and views.shape[-1] == 3  # (views, T, H, W, C)
    assert torch.equal(views[1], views[0].flip(-2)) and not torch.equal(views[0], views[2])


def _write_frames(folder, n, size=40):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i + 1}.jpg"), rng.integers(0, 255, (size, size + 20, 3), dtype=np.uint8))


def _row(path, n):
    return {"video_id": path.name, "path": str(path), "kind": "frames", "n_frames": n, "height": 40, "width": 60,
            "files": [f"{i + 1}.jpg" for i in range(n)], "label": None, "group": None}


@pytest.mark.parametrize("tta", [TTASpec(clips=7, crops=3, flip=True), TTASpec(offsets=(0, 10, 100), crops=3)])
def test_more_views_than_frames_never_crash(tmp_path, tta):
    for n in (1, 2, 5):
        _write_frames(tmp_path / f"v{n}", n)
    table = pd.DataFrame([_row(tmp_path / f"v{n}", n) for n in (1, 2, 5)])
    model = _model(frames=8, size=32)
    dataset = TTADataset(table, model.input_spec, tta, frame_stride=4)
    for i in range(len(table)):
        item = dataset[i]
        assert item["ok"] == 1 and item["video"].shape == (tta.n_views, 8, 32, 32, 3)
    probs = predict(model, eval_loader(Config(num_workers=0), dataset), make_accelerator(Config()), len(table))
    assert np.isfinite(probs).all()


def test_unreadable_video_is_a_nan_row_or_an_error(tmp_path):
    _write_frames(tmp_path / "good", 6)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    bad = {**_row(tmp_path / "good", 6), "video_id": "bad", "path": str(tmp_path / "bad.mp4"), "kind": "video",
           "n_frames": 10, "files": []}
    table = pd.DataFrame([_row(tmp_path / "good", 6), bad])
    model = _model()
    dataset = TTADataset(table, model.input_spec, TTASpec(clips=2), skip_errors=True)
    probs = predict(model, eval_loader(Config(num_workers=0), dataset), make_accelerator(Config()), 2)
    assert np.isfinite(probs[0]).all() and np.isnan(probs[1]).all()
    with pytest.raises(VidkitError, match="bad.mp4"):
        TTADataset(table, model.input_spec, TTASpec(clips=2))[1]


def test_protocol_names_the_views_and_fewer_cuts_flip_then_crops_then_clips():
    tta = TTASpec(clips=3, crops=3, flip=True)
    assert tta.n_views == 18 and tta.protocol(16) == "16x3x3+flip video-level"
    assert TTASpec(clips=2, reduce="logits").protocol(8) == "8x2x1 logit-mean video-level"
    steps = []
    while (nxt := tta.fewer()) is not None:
        tta, what = nxt
        steps.append((what, tta.n_views))
    assert steps == [("flip", 9), ("3 crops -> centre crop", 3), ("3 -> 2 clips", 2), ("2 -> 1 clips", 1)]
    fewer, what = TTASpec(offsets=(0, 4, 8, 12)).fewer()
    assert fewer.offsets == (0, 8, 12) or fewer.n_clips == 3


def test_tta_config_fields():
    cfg = load_config(None, {"tta_offsets": "0,4,8", "tta_crops": "3", "tta_flip": "true", "tta_reduce": "logits"})
    assert tta_spec(cfg) == TTASpec(clips=3, offsets=(0, 4, 8), crops=3, flip=True, reduce="logits")
    assert tta_spec(cfg, clips=5).offsets is None and tta_spec(cfg, clips=5).n_clips == 5
    with pytest.raises(VidkitError, match="tta_crops"):
        load_config(None, {"tta_crops": "2"})
    with pytest.raises(VidkitError, match="tta_reduce"):
        load_config(None, {"tta_reduce": "median"})
    with pytest.raises(VidkitError, match="tta_offsets"):
        tta_spec(load_config(None, {"tta_offsets": "[-1, 4]"}))
