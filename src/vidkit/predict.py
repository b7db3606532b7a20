"""`predict`: the top classes of one raw video file or frame folder, from one run (or several, averaged)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.data.media import is_video, list_frames, probe
from vidkit.errors import VidkitError
from vidkit.infer import ensemble, load_member


def media_row(path: str | Path) -> dict:
    """An index row (as vidkit.data.index writes them) for one video file or frame folder."""
    path = Path(path)
    if not (path.is_dir() or (path.is_file() and is_video(path))):
        raise VidkitError(f"{path}: not a video file (.mp4 .avi .mkv .webm .mov) or a folder of frames")
    n, h, w = probe(path)
    if n < 1:
        raise VidkitError(f"{path}: no readable frames")
    kind = "frames" if path.is_dir() else "video"
    return {"video_id": path.stem if kind == "video" else path.name, "path": str(path), "kind": kind, "n_frames": n,
            "height": h, "width": w, "files": list_frames(path) if kind == "frames" else [], "label": None,
            "group": None}


def predict_video(runs: list[str | Path], video: str | Path, tta_clips: int | None = None) -> pd.Series:
    """Class probabilities for one video, highest first (mean over the runs' checkpoints and TTA views)."""
    if not runs:
        raise VidkitError("predict: run=RUN_DIR is required")
    members = [load_member(Path(r), 1.0, tta_clips) for r in runs]
    classes = members[0].classes
    probs = ensemble(members, pd.DataFrame([media_row(video)]), classes)[0]
    if not np.isfinite(probs).all():
        raise VidkitError(f"{video}: could not be decoded")
    return pd.Series(probs, index=classes).sort_values(ascending=False, kind="stable")


def run_predict(runs: list[str | Path], video: str | Path, topk: int = 5, tta_clips: int | None = None) -> pd.Series:
    top = predict_video(runs, video, tta_clips).head(topk)
    width = max(len(str(c)) for c in top.index)
    for cls, p in top.items():
        print(f"{str(cls):{width}s}  {p:.4f}")
    return top
