"""`vidkit crop`: one region per frame (a face, a player), cut out of every video as a frame folder.

Per video: regions come from a detector (`DETECTORS`: shipped inside a registry package, offline, CPU) or from a
boxes CSV of any external detector (`video_id,frame,x1,y1,x2,y2[,score]`, frames numbered from 0 in decoded
order). Boxes are linked over time into tracks (IoU with the track's last box); one track is kept (`stable`: the
one seen in the most frames, `largest`: the largest mean box), interpolated over the frames it misses, smoothed
over time (a centred moving average of its centre and size), made square, grown by `margin` of its size on
each side and shifted inside the frame. Each frame's crop is written at size x size as
`<out>/<split>/<video id>/00001.jpg ...` (the frame-folder layout; `crops_dir` in the competition yaml reads the
training crops, and `submit` crops the test videos the same way), and every box goes to `boxes.csv`.
A video where nothing is found is logged and cropped to its full frame.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from vidkit.config import Competition
from vidkit.data.layouts import crop_name, walk
from vidkit.data.media import list_frames
from vidkit.data.shard import in_shard, parse_shard, pool_map
from vidkit.data.video_backends import stream
from vidkit.errors import VidkitError

from vidkit.files import read_csv, write_csv

log = logging.getLogger(__name__)
BOX_COLUMNS = ["video_id", "frame", "x1", "y1", "x2", "y2"]


def dlib_hog():
    """dlib's HOG + linear SVM frontal face detector (its model is compiled into the dlib package: Kaggle's
    image has dlib; elsewhere `pip install dlib-bin`)."""
    try:
        import dlib
    except ImportError:
        raise VidkitError("detector=dlib_hog needs dlib (`pip install dlib-bin`; Kaggle's image has dlib)") from None
    detector = dlib.get_frontal_face_detector()

    def find(rgb: np.ndarray) -> list[tuple]:
        upsample = 1 if min(rgb.shape[:2]) < 160 else 0  # small frames: faces under 80 px need one upsampling
        rects, scores, _ = detector.run(rgb, upsample, -0.2)
        return [(r.left(), r.top(), r.right(), r.bottom(), s) for r, s in zip(rects, scores)]
    return find


def haar():
    """OpenCV's Haar cascade for frontal faces, from the xml files opencv-python 4.x ships in cv2.data."""
    path = Path(getattr(cv2, "data", None).haarcascades if hasattr(cv2, "data") else "") \
        / "haarcascade_frontalface_default.xml"
    if not path.is_file():
        raise VidkitError(f"{path}: detector=haar needs the cascade files of opencv-python 4.x (this cv2 "
                          f"{cv2.__version__} has none); use detector=dlib_hog")
    cascade = cv2.CascadeClassifier(str(path))

    def find(rgb: np.ndarray) -> list[tuple]:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = cascade.detectMultiScale3(gray, 1.1, 5, outputRejectLevels=True)
        return [(x, y, x + w, y + h, float(s)) for (x, y, w, h), s in zip(boxes, np.ravel(weights))]
    return find


DETECTORS = {"dlib_hog": dlib_hog, "haar": haar}  # name -> factory of find(rgb) -> [(x1, y1, x2, y2, score)]
SELECT = ("stable", "largest")


@dataclass(frozen=True)
class CropSettings:
    detector: str | None = None   # a DETECTORS name; None: boxes come from a CSV
    margin: float = 0.3           # each side grows by this fraction of the box size
    size: int = 224               # written crops are size x size
    select: str = "stable"        # which track: stable (most frames) | largest (largest mean box)
    every: int = 1                # detect on every n-th frame (the others interpolated)
    smooth: int = 5               # frames in the moving average of the box centre and size
    backend: str = "cv2"          # raw-video decoder


def settings_of(comp: Competition, **overrides) -> CropSettings:
    """The competition yaml's crop settings, then the verb's keys (None keeps the yaml's)."""
    base = CropSettings(comp.crop_detector, comp.crop_margin, comp.crop_size, comp.crop_select, comp.crop_every)
    settings = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if settings.detector is not None and settings.detector not in DETECTORS:
        raise VidkitError(f"detector: {settings.detector!r} is not one of {', '.join(DETECTORS)}")
    if settings.select not in SELECT:
        raise VidkitError(f"crop_select: {settings.select!r} is not one of {', '.join(SELECT)}")
    if settings.margin < 0 or settings.size < 8 or settings.every < 1 or settings.smooth < 1:
        raise VidkitError("crop: margin >= 0, size >= 8, every >= 1 and smooth >= 1 expected")
    return settings


# ---------------------------------------------------------------- boxes over time

def iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def link_tracks(found: dict[int, list[tuple]], min_iou: float = 0.2) -> list[dict[int, tuple]]:
    """Boxes per frame -> tracks (frame -> box): each box joins the track whose last box it overlaps most."""
    tracks: list[dict[int, tuple]] = []
    for f in sorted(found):
        taken: set[int] = set()
        for box in sorted(found[f], key=area, reverse=True):
            scores = [(iou(t[max(t)], box), k) for k, t in enumerate(tracks) if k not in taken]
            best = max(scores, default=(0.0, -1))
            if best[0] > min_iou:
                tracks[best[1]][f] = box
                taken.add(best[1])
            else:
                tracks.append({f: box})
                taken.add(len(tracks) - 1)
    return tracks


def pick_track(tracks: list[dict[int, tuple]], select: str) -> dict[int, tuple] | None:
    if not tracks:
        return None
    mean_area = lambda t: float(np.mean([area(b) for b in t.values()]))  # noqa: E731
    if select == "largest":
        return max(tracks, key=mean_area)
    return max(tracks, key=lambda t: (len(t), mean_area(t)))


def smooth_boxes(track: dict[int, tuple], n_frames: int, window: int) -> np.ndarray:
    """(n_frames, 4) centre x, centre y, width, height: interpolated between the track's frames (held at its
    ends) and averaged over `window` frames centred on each."""
    frames = np.array(sorted(track))
    boxes = np.array([track[f][:4] for f in frames], dtype=float)
    cxcywh = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                       boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    full = np.stack([np.interp(np.arange(n_frames), frames, cxcywh[:, j]) for j in range(4)], 1)
    if window > 1 and n_frames > 1:
        pad = window // 2
        padded = np.pad(full, ((pad, window - 1 - pad), (0, 0)), mode="edge")
        full = np.stack([np.convolve(padded[:, j], np.ones(window) / window, "valid") for j in range(4)], 1)
    return full


def square_box(cx: float, cy: float, w: float, h: float, margin: float, width: int, height: int) -> tuple:
    """A square around (cx, cy) of side max(w, h) x (1 + 2 margin), no larger than the frame, shifted inside it."""
    side = min(max(w, h) * (1 + 2 * margin), width, height)
    x1 = min(max(cx - side / 2, 0), width - side)
    y1 = min(max(cy - side / 2, 0), height - side)
    return int(round(x1)), int(round(y1)), int(round(x1 + side)), int(round(y1 + side))


def check_boxes(boxes: list[tuple], width: int, height: int, where: str) -> list[tuple]:
    """Given boxes clipped to the frame; one lying outside it (or empty) is a one-line error naming `where`."""
    out = []
    for frame, box in boxes:
        x1, y1, x2, y2 = box[:4]
        if not (x2 > x1 and y2 > y1 and x1 < width and y1 < height and x2 > 0 and y2 > 0):
            raise VidkitError(f"{where}: frame {frame}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the "
                              f"{width}x{height} frame (or is empty)")
        out.append((frame, (max(x1, 0), max(y1, 0), min(x2, width), min(y2, height), *box[4:])))
    return out


# ---------------------------------------------------------------- one video

def frames_of(path: Path, backend: str = "cv2"):
    """(index, RGB frame) of a video file or a frame folder, one at a time."""
    if not path.is_dir():
        yield from stream(path, backend)[1]
        return
    for i, name in enumerate(list_frames(path)):
        image = cv2.imread(str(path / name))
        if image is not None:
            yield i, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


FINDERS: dict = {}  # detector name -> find, built once per process


def detect(path: Path, settings: CropSettings) -> tuple[dict[int, list], int, int, int]:
    """Every `every`-th frame's boxes (in full-frame pixels; frames over 960 px are searched at half size),
    the frame count and the frame height and width."""
    if settings.detector not in FINDERS:
        FINDERS[settings.detector] = DETECTORS[settings.detector]()
    find, found, n, h, w = FINDERS[settings.detector], {}, 0, 0, 0
    for i, rgb in frames_of(path, settings.backend):
        n, (h, w) = i + 1, rgb.shape[:2]
        if i % settings.every:
            continue
        scale = 2 if max(h, w) > 960 else 1
        small = cv2.resize(rgb, (w // scale, h // scale), interpolation=cv2.INTER_AREA) if scale > 1 else rgb
        found[i] = [(*(v * scale for v in box[:4]), box[4]) for box in find(small)]
    return found, n, h, w


def frame_size(path: Path, backend: str) -> tuple[int, int, int]:
    """Frame count (from the header or the folder), height and width of a video's first frame."""
    from vidkit.data.media import probe
    n, h, w = probe(path)
    if n < 1:
        raise VidkitError(f"{path}: no readable frames")
    return n, h, w


def write_crops(path: Path, dest: Path, boxes: np.ndarray | None, size: int, backend: str) -> list[tuple]:
    """Each frame's box cut out at size x size into dest/00001.jpg ... (written beside, then moved in place);
    `boxes` None: the full frame. Returns (frame, x1, y1, x2, y2) per written frame."""
    part = dest.with_name(dest.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    used = []
    for i, rgb in frames_of(path, backend):
        h, w = rgb.shape[:2]
        x1, y1, x2, y2 = (0, 0, w, h) if boxes is None else (int(v) for v in boxes[min(i, len(boxes) - 1)])
        crop = cv2.resize(rgb[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(part / f"{len(used) + 1:05d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        used.append((i, x1, y1, x2, y2))
    if not used:
        shutil.rmtree(part, ignore_errors=True)
        raise VidkitError(f"{path}: no frames could be decoded")
    shutil.rmtree(dest, ignore_errors=True)
    part.rename(dest)
    return used


def crop_video(job) -> list[dict]:
    """One video's crops and boxes.csv rows. job: (video_id, media path, destination folder, the boxes CSV's
    [(frame, box)] for it or None to detect, CropSettings, where the boxes came from). A video that cannot be
    decoded is logged and skipped (its id gets no crop); a bad given box is a one-line error."""
    video_id, path, dest, given, settings, source = job
    try:
        found, n, h, w = detect(path, settings) if given is None else ({}, *frame_size(path, settings.backend))
    except Exception as e:  # noqa: BLE001 - any decoder failure: this video is skipped, the others go on
        return skipped(path, e)
    for f, box in check_boxes(given or [], w, h, f"{source}: video {video_id}"):
        found.setdefault(int(f), []).append(box)
    track = pick_track(link_tracks(found), settings.select)
    boxes = None
    if track is None:
        log.warning("%s: no region found (%s); the full frame is used", path, settings.detector or source)
    else:
        boxes = np.array([square_box(*b, settings.margin, w, h)
                          for b in smooth_boxes(track, max(n, max(track) + 1), settings.smooth)])
    try:
        used = write_crops(path, dest, boxes, settings.size, settings.backend)
    except Exception as e:  # noqa: BLE001
        return skipped(path, e)
    kind = "full" if track is None else None
    return [{"video_id": video_id, "frame": f, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
             "score": track[f][4] if track and f in track and len(track[f]) > 4 else math.nan,
             "source": kind or ("detected" if f in track else "interpolated")} for f, x1, y1, x2, y2 in used]


def skipped(path: Path, error: Exception) -> list:
    log.warning("%s: cannot be cropped (%s); skipped", path, (str(error) or type(error).__name__).splitlines()[0])
    return []


# ---------------------------------------------------------------- a competition

def read_boxes(path: str | Path) -> dict[str, list[tuple]]:
    """An external detector's boxes: video_id,frame,x1,y1,x2,y2[,score] -> {video id: [(frame, box)]}; ids
    match with or without their video extension."""
    path = Path(path)
    df = read_csv(path, what="boxes file")
    missing = [c for c in BOX_COLUMNS if c not in df.columns]
    if missing:
        raise VidkitError(f"{path}: missing column {missing[0]!r} (expected {','.join(BOX_COLUMNS)}[,score])")
    numbers = df[BOX_COLUMNS[1:]].apply(pd.to_numeric, errors="coerce")
    if numbers.isna().any().any():
        raise VidkitError(f"{path}: non-numeric frame or box value in row {int(numbers.isna().any(axis=1).idxmax()) + 2}")
    score = pd.to_numeric(df["score"], errors="coerce").fillna(1.0) if "score" in df.columns else pd.Series(1.0, df.index)
    out: dict[str, list[tuple]] = {}
    for vid, f, x1, y1, x2, y2, s in zip(df["video_id"].astype(str), *(numbers[c] for c in BOX_COLUMNS[1:]), score):
        out.setdefault(Path(vid).stem, []).append((int(f), (x1, y1, x2, y2, s)))
    return out


def crop_media(media: list[tuple[str, Path]], out_split: Path, settings: CropSettings, boxes: str | None = None,
               workers: int | None = None) -> pd.DataFrame:
    """Crop (video_id, path) pairs into out_split/<id>/; the boxes.csv rows of all of them."""
    given = read_boxes(boxes) if boxes else None
    if given is None and settings.detector is None:
        raise VidkitError("crop: give detector=NAME (" + ", ".join(DETECTORS) + ") or boxes=CSV")
    jobs = [(vid, Path(path), out_split / Path(crop_name(vid)),
             given.get(Path(vid).stem, []) if given is not None else None, settings, boxes) for vid, path in media]
    rows = [r for video_rows in pool_map(crop_video, jobs, workers, f"crop {out_split.name}") for r in video_rows]
    return pd.DataFrame(rows, columns=[*BOX_COLUMNS, "score", "source"])


def run_crop(comp: Competition, settings: CropSettings, out: str | None = None, boxes: str | None = None,
             shard: str | None = None, workers: int | None = None, splits=("train", "test")) -> Path:
    """`crop`: the competition's train and test videos (of shard k/n) as region crops under `out` (default the
    yaml's crops_dir): <out>/<split>/<video id>/, plus <out>/boxes.csv (boxes.<k>-of-<n>.csv for a shard)."""
    root = Path(out) if out else comp.resolve(comp.crops_dir)
    if root is None:
        raise VidkitError(f"{comp.path}: crop needs out=DIR or crops_dir in the competition yaml")
    part = parse_shard(shard)
    raw = dataclasses.replace(comp, crops_dir=None)  # the media themselves, not their crops
    tables = []
    for split in splits:
        if split == "test" and not comp.test_dir:
            continue
        media = [(e.video_id, e.path) for e in walk(raw, split) if e.path is not None and in_shard(e.video_id, part)]
        tables.append(crop_media(media, root / split, settings, boxes, workers).assign(split=split))
    table = pd.concat(tables, ignore_index=True)
    name = "boxes.csv" if part[1] == 1 else f"boxes.{part[0]}-of-{part[1]}.csv"
    root.mkdir(parents=True, exist_ok=True)
    write_csv(table, root / name, index=False)
    return root / name


def crop_test(comp: Competition, test: pd.DataFrame, out_root: Path, reuse: bool = False) -> pd.DataFrame:
    """`submit` for a competition with crop_detector: the test videos' crops (the yaml's settings) under
    out_root/test/, returned as index rows; an id without media or whose video cannot be cropped keeps no path.
    `reuse`: keep crops already there (the other processes of a several-GPU submit, after the main one)."""
    from vidkit.data.index import COLUMNS, entry_row
    from vidkit.data.layouts import Entry
    settings = settings_of(comp)
    have = test[test["path"].notna()]
    if reuse:
        have = have[[not (out_root / "test" / crop_name(v)).is_dir() for v in have["video_id"]]]
    crop_media(list(zip(have["video_id"], have["path"])), out_root / "test", settings)
    rows = []
    for vid in test["video_id"]:
        folder = out_root / "test" / crop_name(vid)
        rows.append(entry_row(Entry(vid, folder if folder.is_dir() else None, "test")))
    return pd.DataFrame(rows, columns=COLUMNS)
