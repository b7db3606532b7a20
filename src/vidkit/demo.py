"""The built-in demo competition: shapes moving in one of four directions over textured backgrounds.

A single frame cannot tell the direction, so the models must use time. Each background is a group
(same "scene"), so grouped folds matter. Test labels are kept aside to score the demo submission.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from vidkit.files import write_csv, write_text

CLASSES = ["down", "left", "right", "up"]
DIRECTIONS = {"down": (0, 1), "left": (-1, 0), "right": (1, 0), "up": (0, -1)}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    low = rng.uniform(60, 190, (4, 4, 3)).astype(np.float32)
    bg = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    bg += rng.normal(0, 6, bg.shape)  # fine texture
    return np.clip(bg, 0, 255).astype(np.uint8)


def _draw(frame: np.ndarray, shape: int, center, radius: int, color) -> None:
    x, y = int(center[0]), int(center[1])
    if shape == 0:
        pts = cv2.ellipse2Poly((x, y), (radius, radius), 0, 0, 360, 20)
    elif shape == 1:
        pts = np.array([[x - radius, y - radius], [x + radius, y - radius], [x + radius, y + radius],
                        [x - radius, y + radius]], np.int32)
    else:
        pts = np.array([[x, y - radius], [x - radius, y + radius], [x + radius, y + radius]], np.int32)
    cv2.fillPoly(frame, [pts], color)
    cv2.polylines(frame, [pts], True, (255, 255, 255), 1)  # an edge that stands out on any background


def make_clip(rng: np.random.Generator, background: np.ndarray, direction: str, n_frames: int) -> list[np.ndarray]:
    size = background.shape[0]
    radius = int(rng.integers(9, 14))
    speed = rng.uniform(2.5, 3.5)
    dx, dy = DIRECTIONS[direction]
    lo, hi = radius + 2, size - radius - 2
    speed = min(speed, (hi - lo) / (n_frames - 1))
    travel = speed * (n_frames - 1)
    start = []
    for d in (dx, dy):  # start where the whole path stays inside the frame
        if d > 0:
            start.append(rng.uniform(lo, max(lo, hi - travel)))
        elif d < 0:
            start.append(rng.uniform(min(hi, lo + travel), hi))
        else:
            start.append(rng.uniform(lo, hi))
    shape, color = int(rng.integers(0, 3)), tuple(int(c) for c in rng.choice([0, 255], 3))
    frames = []
    for t in range(n_frames):
        frame = background.copy()
        _draw(frame, shape, (start[0] + dx * speed * t, start[1] + dy * speed * t), radius, color)
        frames.append(frame)
    return frames


def _write_frames(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames, 1):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), f, [cv2.IMWRITE_JPEG_QUALITY, 90])


def make_demo(data_dir: Path, comp_yaml: Path, n_groups: int = 20, per_group: int = 8, n_test: int = 40,
              size: int = 96, seed: int = 0, n_folds: int = 5) -> Path:
    """Write the demo data (train/{class}/{video_id}/, test/{video_id}/, sample_submission.csv) and yaml."""
    rng = np.random.default_rng(seed)
    data_dir = Path(data_dir)
    for g in range(n_groups):
        bg = _background(rng, size)
        for i in range(per_group):
            label = CLASSES[i % len(CLASSES)]
            clip = make_clip(rng, bg, label, int(rng.integers(16, 25)))
            _write_frames(data_dir / "train" / label / f"v_{label}_g{g:02d}_c{i:02d}", clip)
    test_rows = []
    test_backgrounds = [_background(rng, size) for _ in range(max(1, n_test // 8))]
    for i in range(n_test):
        label = CLASSES[int(rng.integers(0, len(CLASSES)))]
        clip = make_clip(rng, test_backgrounds[i % len(test_backgrounds)], label, int(rng.integers(16, 25)))
        vid = f"test_{i:04d}"
        _write_frames(data_dir / "test" / vid, clip)
        test_rows.append({"id": vid, "label": label})
    labels = pd.DataFrame(test_rows)
    write_csv(labels, data_dir / "test_labels.csv", index=False)
    labels.assign(label=CLASSES[0]).to_csv(data_dir / "sample_submission.csv", index=False)
    rel = Path(_relpath(data_dir, comp_yaml.parent))
    spec = {"name": comp_yaml.stem, "train_dir": str(rel / "train"), "train_csv": None, "test_dir": str(rel / "test"),
            "sample_submission": str(rel / "sample_submission.csv"), "id_column": "id", "target_column": "label",
            "submission": "label", "positive_class": None, "metric": "accuracy", "classes": None,
            "group_regex": "_(g\\d+)_", "n_folds": n_folds}
    comp_yaml.parent.mkdir(parents=True, exist_ok=True)
    write_text(comp_yaml, yaml.safe_dump(spec, sort_keys=False))
    return comp_yaml


def _relpath(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


def test_accuracy(submission: Path, data_dir: Path) -> float:
    sub = pd.read_csv(submission)
    truth = pd.read_csv(Path(data_dir) / "test_labels.csv")
    merged = truth.merge(sub, on="id", suffixes=("_true", "_pred"))
    return float((merged["label_true"] == merged["label_pred"]).mean())
