"""`predict`: the top classes of one raw video file or frame folder, from one run (or several, averaged)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.data.index import media_row
from vidkit.errors import VidkitError
from vidkit.infer import ensemble, load_member


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
