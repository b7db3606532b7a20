"""Raw-video decoders behind one call, `decode(path, indices, backend)`: uint8 RGB (T, H, W, 3).

`video_backend=cv2` (the default: its wheel carries FFmpeg, nothing else needed), `torchcodec` (needs the system
FFmpeg libraries; decodes on the GPU through NVDEC when CUDA is available), `pyav` (`pip install av`), or `auto`:
the first of torchcodec, cv2 that loads. `auto` skips a backend only when it is missing (not installed, or its
libraries do not load), never because a file failed to decode: that error is the file's.

Indices mean decoded frame order (presentation order) in every backend, also for variable-frame-rate files, where
they are not timestamps * fps. A header frame count may overstate the real count: an index past the last decodable
frame gets the last frame.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from vidkit.choices import check_choice
from vidkit.errors import VidkitError

log = logging.getLogger(__name__)
AUTO_ORDER = ("torchcodec", "cv2")
SEEK_GAP = 64  # cv2: past this many frames to the next wanted one, seek instead of grabbing forward


def _cv2(path: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    """Decode forward, skipping frames with `grab()` (no colour conversion) and seeking only across long gaps,
    so a 16-frame clip of a long video costs far less than decoding it all."""
    import cv2  # lazily: the config validates `video_backend` against CHOICES in verbs that decode nothing
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VidkitError(f"{path}: cannot open video")
    got, pos = {}, 0
    try:
        for i in wanted:
            if i - pos > SEEK_GAP:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                pos = i
            while pos < i and cap.grab():
                pos += 1
            ok, frame = cap.read()
            if not ok:
                break
            pos += 1
            # BGR -> RGB in place: a reversed-channel view would cost a 5 ms strided copy per 1080p frame later
            got[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=frame)
    finally:
        cap.release()
    return got


@lru_cache(maxsize=None)
def _torchcodec_decoder():
    from torchcodec.decoders import VideoDecoder  # raises (ImportError/RuntimeError/OSError) without FFmpeg
    from torchcodec import _core  # newer torchcodec loads its FFmpeg libraries lazily: load them now, so a
    if hasattr(_core, "get_ffmpeg_library_versions"):  # missing FFmpeg is "cannot load", not every file's error
        _core.get_ffmpeg_library_versions()
    return VideoDecoder


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0][-120:] if str(e) else type(e).__name__


def _open_torchcodec(path: Path):
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"  # CUDA: NVDEC (untested here: no GPU in CI)
    try:
        return _torchcodec_decoder()(str(path), dimension_order="NHWC", device=device, num_ffmpeg_threads=1,
                                     seek_mode="exact")
    except (RuntimeError, ValueError) as e:
        raise VidkitError(f"{path}: cannot open video ({_first_line(e)})") from e


def _open_pyav(path: Path):
    """(container, its first video stream, decoding in one thread)."""
    import av
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise VidkitError(f"{path}: cannot open video ({e})") from e
    if not container.streams.video:
        container.close()
        raise VidkitError(f"{path}: cannot open video (no video stream)")
    stream = container.streams.video[0]
    stream.thread_type, stream.thread_count = "SLICE", 1
    return container, stream


def _torchcodec(path: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    """seek_mode=exact scans the file once, so an index is the frame's place in presentation order and the
    real frame count is known (the header's is not trusted)."""
    decoder = _open_torchcodec(path)
    n = len(decoder)
    keep = [i for i in wanted if i < n]
    if not keep:
        return {}
    try:
        data = decoder.get_frames_at(keep).data.cpu().numpy()
    except RuntimeError as e:
        raise VidkitError(f"{path}: cannot decode video ({_first_line(e)})") from e
    return dict(zip(keep, data))


def _pyav(path: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    """Decode forward in one thread up to the last wanted frame; frames are counted as they come out."""
    import av
    container, stream = _open_pyav(path)
    got, todo = {}, set(wanted)
    try:
        for i, frame in enumerate(container.decode(stream)):
            if i in todo:
                got[i] = frame.to_ndarray(format="rgb24")
                if len(got) == len(todo):
                    break
    except (av.error.FFmpegError, IndexError) as e:
        if not got:  # a damaged tail after good frames behaves like a short file
            raise VidkitError(f"{path}: cannot decode video ({e})") from e
    finally:
        container.close()
    return got


def _cv2_stream(path: Path, keep) -> tuple[float, Iterator]:
    import cv2
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VidkitError(f"{path}: cannot open video")

    def frames():
        try:
            i = 0
            while cap.grab():  # frames not kept skip the colour conversion
                if keep(i):
                    _, frame = cap.retrieve()
                    yield i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=frame)
                i += 1
        finally:
            cap.release()
    return cap.get(cv2.CAP_PROP_FPS), frames()


def _torchcodec_stream(path: Path, keep, chunk: int = 16) -> tuple[float, Iterator]:
    decoder = _open_torchcodec(path)

    def frames():
        wanted = [i for i in range(len(decoder)) if keep(i)]
        for start in range(0, len(wanted), chunk):  # increasing indices: one forward decode, no seeks
            part = wanted[start:start + chunk]
            try:
                data = decoder.get_frames_at(part).data.cpu().numpy()
            except RuntimeError as e:
                if start == 0:
                    raise VidkitError(f"{path}: cannot decode video ({_first_line(e)})") from e
                log.warning("%s: decoding stopped at frame %d (%s)", path, part[0], _first_line(e))
                return
            yield from zip(part, data)
    return decoder.metadata.average_fps or 0.0, frames()


def _pyav_stream(path: Path, keep) -> tuple[float, Iterator]:
    import av
    container, stream = _open_pyav(path)

    def frames():
        decoded = 0
        try:
            for i, frame in enumerate(container.decode(stream)):
                decoded = i + 1
                if keep(i):
                    yield i, frame.to_ndarray(format="rgb24")
        except (av.error.FFmpegError, IndexError) as e:
            if not decoded:
                raise VidkitError(f"{path}: cannot decode video ({e})") from e
            log.warning("%s: decoding stopped after %d frames (%s)", path, decoded, e)
        finally:
            container.close()
    return float(stream.average_rate or 0.0), frames()


BACKENDS = {"cv2": _cv2, "torchcodec": _torchcodec, "pyav": _pyav}
STREAMS = {"cv2": _cv2_stream, "torchcodec": _torchcodec_stream, "pyav": _pyav_stream}
CHOICES = ("auto", *BACKENDS)  # the config's `video_backend` (its choice list: vidkit.choices)


@lru_cache(maxsize=None)
def available(name: str) -> str | None:
    """None when backend `name` loads here, else why not."""
    try:
        if name == "torchcodec":
            _torchcodec_decoder()
        elif name == "pyav":
            import av  # noqa: F401
    except Exception as e:  # noqa: BLE001 - torchcodec reports missing FFmpeg libraries as RuntimeError
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


@lru_cache(maxsize=None)
def resolve(name: str) -> str:
    """The backend `name` stands for: `auto` -> the first that loads; a named one that does not load is an error."""
    check_choice("video_backend", name, CHOICES)
    if name == "auto":
        return next(b for b in AUTO_ORDER if available(b) is None)
    why = available(name)
    if why:
        raise VidkitError(f"video_backend={name} cannot be loaded here ({why})")
    return name


def decode(path: str | Path, indices, backend: str = "cv2") -> np.ndarray:
    """Frames `indices` (any order, repeats allowed) of a video file as uint8 RGB (T, H, W, 3)."""
    return np.stack(decode_frames(path, indices, backend))


def decode_frames(path: str | Path, indices, backend: str = "cv2") -> list[np.ndarray]:
    """`decode`'s frames as a list, not stacked: a repeated index is the same array, and nothing is copied
    (at 1080p a stack of a few dozen frames is hundreds of MB of memory traffic)."""
    indices = [int(i) for i in indices]
    got = BACKENDS[resolve(backend)](Path(path), sorted(set(indices)))
    if not got:
        raise VidkitError(f"{path}: no frames could be decoded")
    last = got[max(got)]
    return same_size([got.get(i, last) for i in indices])


def stream(path: str | Path, backend: str = "cv2", keep=None) -> tuple[float, Iterator[tuple[int, np.ndarray]]]:
    """A video's frame rate (the container's average: 0 when unknown) and its frames in decoded order as
    (index, uint8 RGB (H, W, 3)), one at a time (frames, cache, check: whole videos, never all in memory);
    `keep(index)` False skips a frame's conversion (it is still decoded: H.264 needs it as a reference)."""
    return STREAMS[resolve(backend)](Path(path), keep or (lambda i: True))


def stack_frames(frames: list[np.ndarray]) -> np.ndarray:
    """One array of frames, any of another size than the first resized to it."""
    return np.stack(same_size(frames))


def same_size(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The frames, any of another size than the first resized to it (a stream that changes size mid-way)."""
    h, w = frames[0].shape[:2]
    if any(f.shape[:2] != (h, w) for f in frames):
        import cv2
        frames = [f if f.shape[:2] == (h, w) else cv2.resize(np.ascontiguousarray(f), (w, h)) for f in frames]
    return frames
