"""The frame cache: round-trips, is read instead of the source, and is rebuilt when stale."""
import os
import shutil

import cv2
import numpy as np
import pandas as pd

from vidkit.cli import main
from vidkit.config import load_competition, load_config
from vidkit.data import VideoDataset, eval_transform, index_train, make_sampler, short_side
from vidkit.data.cache import attach_cache, cache_file, cache_root, decode_all
from vidkit.data.media import read_clip
from vidkit.models import InputSpec
from vidkit.engine.train import loader


def _rows(tiny_comp, tmp_path, n=3):
    """A private copy of a few tiny-competition videos (the tests edit frames)."""
    rows = index_train(load_competition(tiny_comp)).head(n).to_dict("records")
    for r in rows:
        dst = tmp_path / "src" / r["video_id"]
        shutil.copytree(r["path"], dst)
        r["path"] = str(dst)
    return rows


def test_cache_round_trips_at_the_short_side(tiny_comp, tmp_path):
    rows = _rows(tiny_comp, tmp_path)
    cached = attach_cache(rows, 24, tmp_path / "cache", workers=1)
    for src, row in zip(rows, cached):
        stored = np.load(row["cache"], mmap_mode="r")
        assert stored.dtype == np.uint8 and stored.shape == (src["n_frames"], 24, 24, 3)  # 48 px frames -> 24
        assert (stored == decode_all(src, 24)).all()
        idx = [0, 3, 3, src["n_frames"] - 1, src["n_frames"] + 5]  # past the end: the last frame
        assert (read_clip(row, idx, 24) == stored[[0, 3, 3, src["n_frames"] - 1, src["n_frames"] - 1]]).all()
        strided = read_clip(row, [1, 3, 5], 24)  # a strided clip is a view of the memory map, equal all the same
        assert not strided.flags.owndata and (strided == stored[[1, 3, 5]]).all()
        full = cv2.resize(read_clip(src, idx[:1])[0], (24, 24), interpolation=cv2.INTER_AREA)
        assert np.abs(stored[0].astype(int) - full.astype(int)).mean() < 3  # DCT vs area downscale, 48 px texture


def test_clips_from_cache_equal_clips_from_source(tiny_comp, tmp_path):
    # short side 24 of 48 px frames: both decode at libjpeg's 1/2 scale (at other sizes the loader's bilinear
    # warp and the cache's area resize differ on these 48 px textures, as they do for video files)
    rows = _rows(tiny_comp, tmp_path)
    spec = InputSpec(4, 20, (0.5,) * 3, (0.25,) * 3, "CTHW")
    plain = VideoDataset(pd.DataFrame(rows), make_sampler("multi", 4, 2), eval_transform(20, 24), spec, 24,
                         normalize=False)
    cached = VideoDataset(pd.DataFrame(rows), make_sampler("multi", 4, 2), eval_transform(20, 24), spec, 24,
                          normalize=False)
    cached.rows = attach_cache(cached.rows, 24, tmp_path / "cache", workers=1)
    for i in range(len(rows)):
        a, b = plain[i]["video"].numpy().astype(int), cached[i]["video"].numpy().astype(int)
        assert np.abs(a - b).mean() < 2


def test_stale_cache_is_rebuilt(tiny_comp, tmp_path):
    rows = _rows(tiny_comp, tmp_path, 1)
    root = tmp_path / "cache"
    first = attach_cache(rows, 24, root, workers=1)[0]["cache"]
    built = os.stat(first).st_mtime_ns
    assert attach_cache(rows, 24, root, workers=1)[0]["cache"] == first and os.stat(first).st_mtime_ns == built
    # a changed source frame: new fingerprint, rebuilt with the new pixels, the stale file removed
    frame = rows[0]["files"][0]
    cv2.imwrite(os.path.join(rows[0]["path"], frame), np.full((48, 48, 3), 255, np.uint8))
    second = attach_cache(rows, 24, root, workers=1)[0]["cache"]
    assert second != first and not os.path.exists(first)
    assert np.load(second)[0].min() >= 250
    # another short side: another file (the other size's cache is a different folder in practice)
    assert cache_file(root, rows[0], 16) != cache_file(root, rows[0], 24)
    assert np.load(attach_cache(rows, 16, root, workers=1)[0]["cache"]).shape[1:3] == (16, 16)


def test_cache_verb_and_cache_true_in_training(tiny_comp, tmp_path, capsys):
    args = ["cache", f"comp={tiny_comp}", "image_size=32", "num_workers=1", f"cache_dir={tmp_path}"]
    assert main(args) == 0
    root = cache_root("tiny", short_side(32), str(tmp_path))
    n_files = len(list(root.glob("*.npy")))
    assert n_files == 24 + 6  # train and test videos
    assert "GiB per 1000 videos" in capsys.readouterr().out
    cfg = load_config(None, {"comp": str(tiny_comp), "cache": "true", "cache_dir": str(tmp_path), "image_size": "32",
                             "num_workers": "0"})
    table = index_train(load_competition(tiny_comp))
    spec = InputSpec(4, 32, (0.5,) * 3, (0.25,) * 3, "CTHW")
    ds = VideoDataset(table, make_sampler("multi", 4, 2), eval_transform(32), spec, 36)
    batch = next(iter(loader(cfg, ds, train=False, comp=load_competition(tiny_comp))))
    assert all(str(r["cache"]).startswith(str(root)) for r in ds.rows)
    assert batch["video"].shape[1:] == (3, 4, 32, 32) and len(list(root.glob("*.npy"))) == n_files
