"""Raw-video backends (cv2, torchcodec, PyAV) and damaged video files."""
import logging
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from vidkit.data.media import probe
from vidkit.data.video_backends import available, decode, resolve
from vidkit.errors import VidkitError
from vidkit.flows.submit import run_submit


def write_avi(src, out, fourcc="MJPG", n=40):
    """The first `n` frames of `src` re-encoded into an AVI by cv2 (needs no system FFmpeg)."""
    cap = cv2.VideoCapture(str(src))
    h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*fourcc), 30, (w, h))
    for _ in range(n):
        writer.write(cap.read()[1])
    writer.release()
    cap.release()
    return out


@pytest.fixture
def real_videos(shared_data, tmp_path):
    mp4s = sorted((shared_data / "videos").glob("*.mp4"))
    return mp4s + [write_avi(mp4s[0], tmp_path / "mjpg.avi"), write_avi(mp4s[0], tmp_path / "xvid.avi", "XVID")]


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_backends_return_the_same_frames_as_cv2(backend, real_videos):
    if available(backend):
        pytest.skip(f"{backend} cannot load here: {available(backend)}")
    for path in real_videos:
        n = probe(path)[0]
        indices = [*np.linspace(0, n - 1, 16).round().astype(int), 3, 3, n - 1, n + 5]  # repeats, past the end
        ref, got = decode(path, indices, "cv2").astype(int), decode(path, indices, backend).astype(int)
        assert got.shape == ref.shape
        diff = np.abs(got - ref)
        # measured: max 0, mean 0 on every file (the same FFmpeg decoders and the same BT.601 swscale conversion);
        # another FFmpeg build may round YUV->RGB differently by a level or two, never more
        assert diff.max() <= 3 and diff.mean() <= 0.5, (path, backend, diff.max(), diff.mean())


def test_auto_falls_back_only_when_a_backend_is_missing(monkeypatch, tmp_path):
    resolve.cache_clear()
    monkeypatch.setattr("vidkit.data.video_backends.available",
                        lambda name: "ImportError: no torchcodec" if name == "torchcodec" else None)
    try:
        assert resolve("auto") == "cv2"
        with pytest.raises(VidkitError, match="video_backend=torchcodec cannot be loaded"):
            resolve("torchcodec")
    finally:
        resolve.cache_clear()
    with pytest.raises(VidkitError, match="video_backend: .* is not one of"):
        resolve("ffmpeg")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(VidkitError, match="bad.mp4: cannot open video"):  # a decode error is the file's, never a fallback
        decode(bad, [0], "auto")


def damaged_videos(src, folder):
    """Small damaged files made from a real mp4 (its moov atom is at the end) and a cv2-written AVI."""
    data = src.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[:len(data) // 2])  # the index is lost with the tail
    blank = bytearray(data)
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    blank[start:end] = bytes(end - start)  # container intact, every frame's data zeroed: nothing decodes
    (folder / "no_frames.mp4").write_bytes(bytes(blank))
    (folder / "zero_bytes.mp4").write_bytes(b"")
    writer = cv2.VideoWriter(str(folder / "empty_stream.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    writer.release()  # a header and a video stream with no frames
    avi = write_avi(src, folder / "full.avi").read_bytes()
    (folder / "short.avi").write_bytes(avi[:len(avi) // 2])  # the header still says 40 frames
    (folder / "full.avi").unlink()
    return ["truncated", "no_frames", "zero_bytes", "empty_stream"]


@pytest.mark.parametrize("backend", ["cv2", "torchcodec", "pyav"])
def test_every_backend_reports_damaged_videos_by_name(backend, shared_data, tmp_path):
    if available(backend):
        pytest.skip(f"{backend} cannot load here: {available(backend)}")
    for name in damaged_videos(next((shared_data / "videos").glob("*.mp4")), tmp_path):
        path = next(tmp_path.glob(name + ".*"))
        with pytest.raises(VidkitError, match=f"{path.name}: (cannot open|cannot decode|no frames)"):
            decode(path, [0, 5, 30], backend)
    assert probe(tmp_path / "short.avi")[0] == 40  # the header overstates: past the real end, the last frame
    clip = decode(tmp_path / "short.avi", [0, 10, 30, 39], backend)
    assert (clip[2] == clip[3]).all() and not (clip[0] == clip[3]).all()


def test_damaged_videos_get_the_prior_and_leave_the_batch_alone(tiny_comp, tiny_run, shared_data, tmp_path, caplog):
    backend = "cv2"
    spec = yaml.safe_load(tiny_comp.read_text())
    test = tmp_path / "test"
    test.mkdir()
    mp4s = sorted((shared_data / "videos").glob("*.mp4"))
    shutil.copy(mp4s[0], test / "good0.mp4")
    bad = damaged_videos(mp4s[0], test)
    ids = sorted(p.stem for p in test.iterdir())
    pd.DataFrame({"id": ids, **{c: 0.0 for c in ("down", "left", "right", "up")}}).to_csv(tmp_path / "s.csv",
                                                                                        index=False)
    spec.update(train_dir=str(tiny_comp.parent / spec["train_dir"]), test_dir=str(test),
                sample_submission=str(tmp_path / "s.csv"), submission="probabilities")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec))
    with caplog.at_level(logging.WARNING):
        sub = pd.read_csv(run_submit(str(tmp_path / "c.yaml"), [str(tiny_run)], str(tmp_path / "all.csv"),
                                     backend=backend), dtype={"id": str}).set_index("id")
    assert (sub.loc[bad].to_numpy() == 0.25).all()  # tiny_comp's classes are balanced: the prior
    for name in bad:
        assert f"{name}." in caplog.text  # each warning names its file
    good = ["good0", "short"]
    assert not np.allclose(sub.loc[good].to_numpy(), 0.25)
    for f in bad:  # the same competition with only the good files
        next(test.glob(f + ".*")).unlink()
    pd.DataFrame({"id": good, **{c: 0.0 for c in ("down", "left", "right", "up")}}).to_csv(tmp_path / "s.csv",
                                                                                         index=False)
    alone = pd.read_csv(run_submit(str(tmp_path / "c.yaml"), [str(tiny_run)], str(tmp_path / "good.csv"),
                                   backend=backend), dtype={"id": str}).set_index("id")
    assert np.allclose(sub.loc[good].to_numpy(), alone.loc[good].to_numpy(), atol=1e-6)


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_frames_cache_and_check_decode_with_every_backend(backend, real_videos, tmp_path):
    """`frames`, the frame cache and `check` take video_backend= and get cv2's frames from it."""
    if available(backend):
        pytest.skip(f"{backend} cannot load here: {available(backend)}")
    from vidkit.data.cache import decode_all
    from vidkit.data.check import _video_file
    from vidkit.data.frames import extract_frames
    from vidkit.data.index import media_row
    for path in real_videos[:2] + real_videos[-1:]:  # an mp4 of each source, and the XVID AVI
        row = media_row(path)
        ref, got = decode_all(row, 32, "cv2").astype(int), decode_all(row, 32, backend).astype(int)
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 3, path
        counts = [extract_frames(path, tmp_path / b / path.stem, fps=7, size=32, backend=b) for b in ("cv2", backend)]
        assert counts[0] == counts[1] == len(list((tmp_path / backend / path.stem).glob("*.jpg"))) > 0
        a = cv2.imread(str(tmp_path / "cv2" / path.stem / "00002.jpg")).astype(int)
        b = cv2.imread(str(tmp_path / backend / path.stem / "00002.jpg")).astype(int)
        assert np.abs(a - b).mean() <= 0.5, path  # the same source frame kept (another would differ by far more)
        assert _video_file(path, backend) == _video_file(path, "cv2") and _video_file(path, backend)[1]
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in damaged_videos(real_videos[0], damaged):  # each a one-line error naming the file
        path = next(damaged.glob(name + ".*"))
        assert _video_file(path, backend) == (0, None)
        with pytest.raises(VidkitError, match=f"{path.name}: (cannot open|cannot decode|no frames)"):
            decode_all({"kind": "video", "path": str(path)}, 32, backend)
    short = {"kind": "video", "path": str(damaged / "short.avi")}  # the header overstates: the real frames only
    assert len(decode_all(short, 32, backend)) == len(decode_all(short, 32, "cv2")) < probe(short["path"])[0]


def test_frames_keeps_the_first_frame_at_each_multiple_of_the_rate_step(shared_data, tmp_path):
    from vidkit.data.frames import extract_frames, extract_tree
    src = next((shared_data / "videos").glob("*.mp4"))
    n, fps = extract_frames(src, tmp_path / "all", size=24), cv2.VideoCapture(str(src)).get(cv2.CAP_PROP_FPS)
    kept, due = [], 0.0
    for i in range(n):  # frame i is kept when it is at or past the next multiple of the step (2.5 frames)
        if i >= due - 1e-6:
            kept.append(i)
            due += 2.5
    assert extract_frames(src, tmp_path / "f", fps=fps / 2.5, size=24) == len(kept)
    every = sorted((tmp_path / "all").glob("*.jpg"))
    for k, i in enumerate(kept[:4]):
        assert (cv2.imread(str(tmp_path / "f" / f"{k + 1:05d}.jpg")) == cv2.imread(str(every[i]))).all()
    assert extract_frames(src, tmp_path / "up", fps=fps * 2, size=24) == n  # never more than the source has
    with pytest.raises(VidkitError, match="video_backend: .* is not one of"):
        extract_tree(str(src.parent), str(tmp_path / "x"), backend="ffmpeg")
