"""The built-in spotting competition (`demo kind=spotting`): long videos of a shape bouncing over a textured
background that, at event frames, changes colour (`colour`) or turns from a circle into a square or back (`shape`).
Bounces off the edges are not events. Each video is its own group (its background). DFL-like: events and the
submission in seconds (`video_id,time,event,score`), mAP over time tolerances."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from vidkit.demo import _background, _relpath

CLASSES = ["colour", "shape"]
PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255), (0, 0, 0)]
FPS = 25


def event_frames(rng: np.random.Generator, n_frames: int, gap: int = 20) -> list[tuple[int, str]]:
    """Events at least `gap` frames apart (and from the ends), each of a random class."""
    frames, t = [], int(rng.integers(gap // 2, 2 * gap))
    while t < n_frames - gap // 2:
        frames.append((t, CLASSES[int(rng.integers(0, len(CLASSES)))]))
        t += int(rng.integers(gap, 3 * gap))
    return frames


def render(rng: np.random.Generator, background: np.ndarray, n_frames: int, events: list[tuple[int, str]]):
    """The frames (one at a time) of a video with these events."""
    size = background.shape[0]
    radius = max(3, size // 8)
    pos = rng.uniform(radius, size - radius, 2)
    vel = rng.uniform(0.6, 1.2, 2) * rng.choice([-1, 1], 2)
    colour, square = int(rng.integers(0, len(PALETTE))), bool(rng.integers(0, 2))
    at = dict(events)
    for t in range(n_frames):
        if at.get(t) == "colour":
            colour = (colour + int(rng.integers(1, len(PALETTE)))) % len(PALETTE)
        elif at.get(t) == "shape":
            square = not square
        frame = background.copy()
        x, y = int(pos[0]), int(pos[1])
        if square:
            cv2.rectangle(frame, (x - radius, y - radius), (x + radius, y + radius), PALETTE[colour], -1)
        else:
            cv2.circle(frame, (x, y), radius, PALETTE[colour], -1)
        yield frame
        pos += vel
        for d in range(2):  # bounce
            if not radius <= pos[d] <= size - radius:
                vel[d] = -vel[d]
                pos[d] = np.clip(pos[d], radius, size - radius)


def write_video(path: Path, frames, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (size, size))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def make_spot_demo(data_dir: Path, comp_yaml: Path, n_train: int = 9, n_test: int = 3, n_frames: int = 600,
                   size: int = 32, seed: int = 0, n_folds: int = 3) -> Path:
    """Write train/{video_id}.mp4, test/{video_id}.mp4, events.csv (train), test_events.csv (hidden),
    sample_submission.csv and the competition yaml."""
    rng = np.random.default_rng(seed)
    data_dir = Path(data_dir)
    rows = {"train": [], "test": []}
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            vid = f"{split}_g{i:02d}"
            n = int(rng.integers(int(0.8 * n_frames), n_frames + 1))
            events = event_frames(rng, n)
            write_video(data_dir / split / f"{vid}.mp4", render(rng, _background(rng, size), n, events), size)
            rows[split] += [{"video_id": vid, "time": round(t / FPS, 2), "event": e} for t, e in events]
    pd.DataFrame(rows["train"]).to_csv(data_dir / "events.csv", index=False)
    pd.DataFrame(rows["test"]).to_csv(data_dir / "test_events.csv", index=False)
    pd.DataFrame([{"video_id": "test_g00", "time": 0.0, "event": CLASSES[0], "score": 0.5}]).to_csv(
        data_dir / "sample_submission.csv", index=False)
    rel = Path(_relpath(data_dir, comp_yaml.parent))
    spec = {"name": comp_yaml.stem, "task": "spotting", "train_dir": str(rel / "train"),
            "events_csv": str(rel / "events.csv"), "test_dir": str(rel / "test"),
            "sample_submission": str(rel / "sample_submission.csv"), "id_column": "video_id",
            "target_column": "event", "metric": "spotting_map", "tolerances": [0.08, 0.16, 0.32],
            "classes": CLASSES, "group_regex": "_(g\\d+)", "n_folds": n_folds}
    comp_yaml.parent.mkdir(parents=True, exist_ok=True)
    comp_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    return comp_yaml


def hidden_score(submission: Path, data_dir: Path, tolerances: list[float]) -> float:
    """The demo submission's mAP on the hidden test events."""
    from vidkit.metrics import spotting_map
    sub = pd.read_csv(submission).rename(columns={"time": "pos"})
    truth = pd.read_csv(Path(data_dir) / "test_events.csv").rename(columns={"time": "pos"})
    return spotting_map(truth, sub, tolerances, CLASSES)["score"]
