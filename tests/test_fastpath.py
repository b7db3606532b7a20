"""The fast data path gives what the straightforward one gives: PIL full-size decode + resize + crop."""
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from vidkit.config import load_competition
from vidkit.data import VideoDataset, eval_transform, index_train, make_sampler, normalize, to_tensor, train_transform
from vidkit.data.dataset import loader_settings
from vidkit.data.media import read_clip, read_images
from vidkit.models import InputSpec

MEAN, STD = (0.45, 0.4, 0.35), (0.25, 0.2, 0.22)


def reference_clip(paths, size: int, short: int) -> np.ndarray:
    """PIL decode at full size, resize the short side to `short` (antialiased bilinear), centre crop."""
    out = []
    for p in paths:
        img = Image.open(p).convert("RGB")
        w, h = img.size
        s = short / min(w, h)
        img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
        x, y = (img.size[0] - size) // 2, (img.size[1] - size) // 2
        out.append(np.asarray(img.crop((x, y, x + size, y + size))))
    return np.stack(out)


def ucf_rows(shared_data, tmp_path, n=3):
    root = shared_data / "ucf101_applyeyemakeup"
    (tmp_path / "ucf.yaml").write_text(f"name: ucf\ntrain_dir: {root}\n")
    return index_train(load_competition(tmp_path / "ucf.yaml")).head(n)


@pytest.mark.parametrize("size,short", [(112, 128), (224, 256), (96, 150)])
def test_eval_loader_matches_pil_reference(shared_data, tmp_path, size, short):
    table = ucf_rows(shared_data, tmp_path)
    spec = InputSpec(8, size, MEAN, STD, "TCHW")
    sampler = make_sampler("multi", 8, 2)
    ds = VideoDataset(table, sampler, eval_transform(size, short), spec, short, normalize=False)
    for i, row in enumerate(table.to_dict("records")):
        got = ds[i]["video"]
        assert got.dtype == torch.uint8 and got.shape == (8, size, size, 3)
        want = reference_clip([f"{row['path']}/{row['files'][k]}" for k in sampler(row["n_frames"])], size, short)
        diff = np.abs(got.numpy().astype(int) - want.astype(int))
        assert diff.mean() < 2.0, diff.mean()


def test_jpeg_decodes_at_reduced_size_only_when_the_short_side_allows(shared_data, tmp_path):
    row = ucf_rows(shared_data, tmp_path, 1).to_dict("records")[0]  # 340x256 frames
    assert read_clip(row, [0, 1], 0).shape == (2, 256, 340, 3)
    assert read_clip(row, [0, 1], 128).shape == (2, 128, 170, 3)   # libjpeg 1/2 scale
    assert read_clip(row, [0, 1], 200).shape[1] >= 200             # never below the short side asked for
    assert read_clip(row, [0, 1], 300).shape == (2, 256, 340, 3)   # no upscaling in the decoder


@pytest.mark.parametrize("size,short", [(112, 128), (224, 256), (56, 64), (96, 150)])
def test_cv2_fallback_gives_simplejpeg_pixels(shared_data, tmp_path, monkeypatch, size, short):
    """Kaggle's image has no simplejpeg: cv2's reduced decode must give the same eval clips (within 2 levels)
    on real UCF101 frames, at each short side the decoder scales for."""
    import vidkit.data.media as media
    table = ucf_rows(shared_data, tmp_path, 6)
    sampler = make_sampler("multi", 8, 2)
    ds = VideoDataset(table, sampler, eval_transform(size, short), InputSpec(8, size, MEAN, STD, "TCHW"), short,
                      normalize=False)
    fast = [ds[i]["video"].numpy().astype(int) for i in range(len(table))]
    monkeypatch.setattr(media, "simplejpeg", None)
    diff = np.abs(np.stack(fast) - np.stack([ds[i]["video"].numpy() for i in range(len(table))])).ravel()
    assert np.percentile(diff, 99.9) <= 1 and diff.max() <= 2, (np.percentile(diff, 99.9), diff.max())


def test_png_frames_and_mixed_sizes(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "v").mkdir()
    frames = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(3)]
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / "v" / f"{i}.png"), f[..., ::-1])
    cv2.imwrite(str(tmp_path / "v" / "3.jpg"), cv2.resize(frames[0], (30, 20))[..., ::-1])
    clip = read_images(tmp_path / "v", ["0.png", "1.png", "2.png", "3.jpg"], [2, 0, 0, 3])
    assert clip.shape == (4, 40, 60, 3)
    assert (clip[0] == frames[2]).all() and (clip[1] == frames[0]).all() and (clip[2] == frames[0]).all()


@pytest.mark.parametrize("layout,perm", [("CTHW", (3, 0, 1, 2)), ("TCHW", (0, 3, 1, 2))])
def test_to_tensor_and_device_normalize_match_the_formula(layout, perm):
    frames = np.random.default_rng(1).integers(0, 256, (4, 10, 14, 3), dtype=np.uint8)
    want = ((torch.from_numpy(frames).float() / 255 - torch.tensor(MEAN)) / torch.tensor(STD)).permute(*perm)
    assert torch.allclose(to_tensor(frames, MEAN, STD, layout), want, atol=1e-5)
    flipped = to_tensor(frames[:, 2:9, ::-1], MEAN, STD, layout)  # a cropped, flipped view
    assert torch.allclose(flipped, want[..., 2:9, :].flip(-1), atol=1e-5)
    raw = to_tensor(frames, MEAN, STD, layout, normalize=False)
    assert raw.dtype == torch.uint8 and raw.shape == frames.shape
    assert torch.allclose(normalize(torch.stack([raw, raw]), MEAN, STD, layout), torch.stack([want, want]), atol=1e-5)
    view = to_tensor(frames[:, 2:9, 1:12], MEAN, STD, layout, normalize=False)  # a crop stays a view: no copy
    assert np.shares_memory(view.numpy(), frames)
    assert torch.allclose(normalize(view[None], MEAN, STD, layout)[0], want[..., 2:9, 1:12], atol=1e-5)
    mirrored = to_tensor(frames[:, :, ::-1], MEAN, STD, layout, normalize=False)  # negative strides: copied
    assert torch.allclose(normalize(mirrored, MEAN, STD, layout), want.flip(-1), atol=1e-5)
    # the torch path (what a GPU runs; float64 takes it on the CPU) gives the same as the CPU table look-up
    batch = normalize(torch.stack([raw, raw]), MEAN, STD, layout, torch.float64)
    assert torch.allclose(batch.float(), torch.stack([want, want]), atol=1e-5)
    if layout == "CTHW":  # a 3D CNN batch comes out in channels_last_3d memory, what cuDNN's fast kernels take
        assert batch.is_contiguous(memory_format=torch.channels_last_3d)


def smooth_clip(t, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.stack([xx * 255 / w, yy * 255 / h, 128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 5.0)], -1)
    return np.stack([frame] * t).astype(np.uint8)


def test_train_crop_is_the_two_step_resize_then_crop():
    """One resize of the mapped crop region == resize to the short side, crop the box, resize, flip."""
    frames = smooth_clip(5, 64, 85)
    tf = train_transform(32, 40, crop_scale=0.3, hflip=1.0, color_jitter=0.0)
    for seed in range(3):
        tf.set_random_seed(seed)
        y, x, h, w = tf.crop_box(64, 85)
        assert 0 <= y and 0 <= x and y + h <= 40 + 1e-6 and x + w <= 40 * 85 / 64 + 1e-6
        tf.set_random_seed(seed)
        out = tf(images=frames)["images"]
        assert out.shape == (5, 32, 32, 3) and all((out[k] == out[0]).all() for k in range(5))
        small = cv2.resize(frames[0], (round(85 * 40 / 64), 40), interpolation=cv2.INTER_AREA)
        box = small[round(y):round(y + h), round(x):round(x + w)]
        want = cv2.resize(box, (32, 32), interpolation=cv2.INTER_LINEAR)[:, ::-1]
        assert np.abs(out[0].astype(int) - want.astype(int)).mean() < 4


@pytest.mark.parametrize("side", [945, 1080, 500])
def test_large_shrinks_equal_one_area_resize(side):
    """From 4x shrink on, resize_crop averages whole k x k blocks first (the fast path on 1080p video), then
    resizes the rest by >= 2x: it stays antialiased (far from a bilinear resize of the box) and about as close
    to one INTER_AREA resize of the box as that is to itself with the box one pixel smaller (the box is rounded
    to whole pixels either way)."""
    from vidkit.data.transforms import resize_crop
    noise = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    frames = np.stack([cv2.GaussianBlur(noise, (0, 0), 1.0)] * 2)
    y, x = (1080 - side) // 2, (1920 - side) // 2
    out = resize_crop(frames, y, x, side, side, 224)
    box = frames[0, y:y + side, x:x + side]
    area = cv2.resize(box, (224, 224), interpolation=cv2.INTER_AREA).astype(int)
    rounding = np.abs(cv2.resize(box[:-1, :-1], (224, 224), interpolation=cv2.INTER_AREA) - area).mean()
    aliased = np.abs(cv2.resize(box, (224, 224), interpolation=cv2.INTER_LINEAR) - area).mean()
    diff = np.abs(out[0].astype(int) - area).mean()
    # measured: 945 px 3.28 (rounding 3.21, bilinear 8.0); 1080 px 1.09 (2.70, 9.3); 500 px one resize: 0
    assert out.shape == (2, 224, 224, 3) and diff <= 1.1 * rounding and diff < aliased / 2, (diff, rounding, aliased)


def test_loader_settings_follow_the_machine(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr("vidkit.data.shard.cgroup_cores", lambda: None)  # no container quota
    gpu = loader_settings(100, gpu=True)
    assert gpu == {"num_workers": 8, "persistent_workers": True, "pin_memory": True, "prefetch_factor": 2}
    assert loader_settings(100, gpu=False)["num_workers"] == 2 and not loader_settings(100, gpu=False)["pin_memory"]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 processes share the 8 cores
    assert loader_settings(100, gpu=True)["num_workers"] == 2
    assert loader_settings(3, gpu=True)["num_workers"] == 2 and loader_settings(1, gpu=True)["num_workers"] == 0
    assert loader_settings(100, gpu=False, workers=3)["num_workers"] == 2  # a fixed count: clamped to the 2 cores
    assert "prefetch_factor" not in loader_settings(100, gpu=True, workers=0)
