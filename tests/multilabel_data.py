"""A synthetic multi-label competition for the tests: each clip carries any subset of four independent cues
(a red, green, blue or white square somewhere in every frame), with the Kaggle-style CSV columns mapped."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

CUES = {"red": (0, 0, 255), "green": (0, 255, 0), "blue": (255, 0, 0), "white": (255, 255, 255)}  # BGR


def make_clip(rng: np.random.Generator, labels: list[str], background: np.ndarray, n_frames: int = 8):
    size = background.shape[0]
    frames = []
    spots = {c: rng.integers(2, size - 10, 2) for c in labels}
    for _ in range(n_frames):
        frame = np.clip(background + rng.normal(0, 6, background.shape), 0, 255).astype(np.uint8)
        for c, (y, x) in spots.items():
            frame[y:y + 8, x:x + 8] = CUES[c]
        frames.append(frame)
    return frames


def write_video(folder: Path, frames) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), f, [cv2.IMWRITE_JPEG_QUALITY, 92])


def make_multilabel_comp(root: Path, n_groups: int = 12, per_group: int = 4, n_test: int = 8, size: int = 40,
                         seed: int = 0, n_folds: int = 3) -> Path:
    """data/train/clips/<scene>/<clip>/ frames, data/train.csv (clip_name, clip_path, tags, scene), data/test/,
    a `labels` sample; competition/ml.yaml with task: multilabel and metric map."""
    rng = np.random.default_rng(seed)
    data, rows, truth = root / "data", [], []
    names = list(CUES)
    for g in range(n_groups):
        background = rng.integers(40, 140, (size, size, 3)).astype(np.float64)
        for i in range(per_group):
            labels = [c for c in names if rng.random() < 0.4]
            clip = f"s{g:02d}_c{i}"
            write_video(data / "train" / "clips" / f"s{g:02d}" / clip, make_clip(rng, labels, background))
            rows.append({"clip_name": clip, "clip_path": f"clips/s{g:02d}/{clip}", "tags": " ".join(labels),
                         "scene": f"s{g:02d}"})
    pd.DataFrame(rows).to_csv(data / "train.csv", index=False)
    for t in range(n_test):
        labels = [c for c in names if rng.random() < 0.4]
        background = rng.integers(40, 140, (size, size, 3)).astype(np.float64)
        write_video(data / "test" / f"t{t:02d}", make_clip(rng, labels, background))
        truth.append({"id": f"t{t:02d}", "tags": " ".join(labels)})
    pd.DataFrame(truth).to_csv(data / "test_truth.csv", index=False)
    pd.DataFrame({"id": [r["id"] for r in truth], "tags": "red green"}).to_csv(data / "sample_submission.csv",
                                                                                 index=False)
    spec = {"name": "ml", "task": "multilabel", "train_dir": "../data/train", "train_csv": "../data/train.csv",
            "train_id_column": "clip_name", "train_path_column": "clip_path", "train_label_column": "tags",
            "train_group_column": "scene", "allow_empty_labels": True, "test_dir": "../data/test",
            "sample_submission": "../data/sample_submission.csv", "id_column": "id", "target_column": "tags",
            "submission": "labels", "metric": "map", "classes": names, "n_folds": n_folds}
    path = root / "competition" / "ml.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
