"""Training options: lr schedules (transformers' get_scheduler; plateau resumable), rotation, resize modes."""
import json

import cv2
import numpy as np
import pytest
import torch

from helpers import tiny_overrides
from vidkit.config import load_config
from vidkit.flows.cv import run_train
from vidkit.data.transforms import ClipTransform, train_transform
from vidkit.errors import VidkitError
from vidkit.models import create_model
from vidkit.engine.optim import make_scheduler
from vidkit.engine.train import train_dataset
from vidkit.engine.tta import TTASpec, eval_dataset, spatial_crops


def _lrs(name, steps=30, warmup=3, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(name, opt, warmup, steps, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


def test_schedules_have_their_shapes():
    cosine, linear, step, constant = (_lrs(n) for n in ("cosine", "linear", "step", "constant"))
    for lr in (cosine, linear, step, constant):
        assert lr[0] == 0 and lr[3] == pytest.approx(1.0)  # linear warmup, then the peak
    assert np.all(np.diff(cosine[3:]) < 0) and cosine[-1] < 0.01
    assert linear[3 + 27 // 2] == pytest.approx(0.5, abs=0.04) and np.allclose(np.diff(linear[3:]), -1 / 27)
    assert sorted(set(np.round(step[3:], 6))) == [0.01, 0.1, 1.0] and np.all(np.diff(step[3:]) <= 0)
    assert np.all(constant[3:] == 1.0)
    with pytest.raises(VidkitError, match="scheduler"):
        load_config("r3d18_demo", {"scheduler": "exponential"})


def test_plateau_drops_lr_after_patience_epochs_without_improvement():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler("plateau", opt, 0, 10, factor=0.5, patience=1, mode="max")
    lrs = []
    for score in (0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7):
        sched.step(score)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def _cfg(tiny_comp, out, **kw):
    overrides = {**tiny_overrides(), "comp": str(tiny_comp), "out_dir": str(out), "fold": "0"}
    return load_config("r3d18_demo", {**overrides, **{k: str(v) for k, v in kw.items()}})


def test_plateau_state_is_saved_and_resumed(tiny_comp, tmp_path):
    opts = dict(epochs=3, scheduler="plateau", plateau_patience=0, lr_factor=0.5, lr=0.01)
    run_train(_cfg(tiny_comp, tmp_path / "a", **opts))
    run_train(_cfg(tiny_comp, tmp_path / "b", max_steps=3, **opts))  # stops in the middle of epoch 1
    saved = torch.load(tmp_path / "b" / "fold0" / "state" / "plateau.pt", weights_only=True)
    first = json.loads((tmp_path / "b" / "fold0" / "metrics.jsonl").read_text().splitlines()[0])
    assert saved["best"] == pytest.approx(first["val_score"]) and saved["mode"] == "max"
    run_train(_cfg(tiny_comp, tmp_path / "b", resume=True, **opts))
    records = [[json.loads(line) for line in (tmp_path / r / "fold0" / "metrics.jsonl").read_text().splitlines()]
               for r in ("a", "b")]
    assert [r["lr"] for r in records[0]] == [r["lr"] for r in records[1]]
    assert [r["val_score"] for r in records[0]] == pytest.approx([r["val_score"] for r in records[1]], abs=1e-6)
    # the lr each epoch trained with follows the plateau rule on the epochs before it
    best, lr = -1.0, 0.01
    for r in records[0]:
        assert r["lr"] == pytest.approx(lr)
        lr, best = (lr, r["val_score"]) if r["val_score"] > best * (1 + 1e-4) else (lr * 0.5, best)


def test_rotation_is_one_draw_per_clip():
    frame = np.zeros((40, 40, 3), np.uint8)
    frame[5:15, 18:22] = 255  # a bar off-centre: a rotation moves it
    clip = np.stack([frame] * 4)
    outs = []
    for seed in (0, 1):
        t = train_transform(32, 40, crop_scale=1.0, hflip=0.0, color_jitter=0.0, rotate=15)
        t.set_random_seed(seed)
        outs.append(t(images=clip)["images"])
    plain = train_transform(32, 40, crop_scale=1.0, hflip=0.0, color_jitter=0.0)
    plain.set_random_seed(0)
    still = plain(images=clip)["images"]
    for out in outs:
        assert all(np.array_equal(out[0], f) for f in out[1:])  # every frame turned by the same angle
        assert not np.array_equal(out[0], still[0])
    assert not np.array_equal(outs[0], outs[1])


def _wide():
    """64 x 128 frames: the left and right quarters red and blue, the middle white."""
    frame = np.full((64, 128, 3), 255, np.uint8)
    frame[:, :32] = (255, 0, 0)
    frame[:, 96:] = (0, 0, 255)
    return np.stack([frame] * 2)


def test_resize_modes_letterbox_squash_short():
    clip = _wide()
    short = ClipTransform(32, 32)(images=clip)["images"]
    letter = ClipTransform(32, 32, mode="letterbox")(images=clip)["images"]
    squash = ClipTransform(32, 32, mode="squash")(images=clip)["images"]
    assert (short[0, :, 0] == 255).all()  # the centre crop of the short side: only the white middle
    assert (letter[0, :7] == 0).all() and (letter[0, -7:] == 0).all()  # black bands above and below
    assert tuple(letter[0, 16, 1]) == (255, 0, 0) and tuple(letter[0, 16, -2]) == (0, 0, 255)  # whole width
    expected = cv2.resize(clip[0], (32, 32), interpolation=cv2.INTER_AREA)
    assert np.abs(squash[0].astype(int) - expected).max() <= 2  # the whole frame, stretched
    with pytest.raises(VidkitError, match="resize_mode"):
        load_config("r3d18_demo", {"resize_mode": "crop"})


def test_tta_crops_and_training_follow_resize_mode(tiny_comp, tmp_path):
    crops = spatial_crops(32, 36, 3, "letterbox")
    views = [c(images=_wide())["images"] for c in crops]
    assert all((v[0, :5] == 0).all() for v in views)  # each of the three crops is of the letterboxed frame
    assert not np.array_equal(views[0], views[2])
    cfg = _cfg(tiny_comp, tmp_path, resize_mode="squash", rotate=10)
    model = create_model("r3d_18", num_classes=4, num_frames=4, image_size=32, width=8)
    table = __import__("pandas").DataFrame({"video_id": ["a"], "path": ["x"], "n_frames": [4]})
    train = train_dataset(cfg, model.input_spec, table, np.zeros(1, int))
    assert train.transform.mode == "squash" and train.transform.affine is not None
    evals = eval_dataset(cfg, model.input_spec, table, tta=TTASpec(crops=3))
    assert [c.mode for c in evals.crops] == ["squash"] * 3
