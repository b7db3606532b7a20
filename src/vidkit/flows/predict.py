"""`predict`: the top classes of one raw video file or frame folder, from one run (or several, averaged)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.data.index import media_row
from vidkit.errors import VidkitError
from vidkit.flows.infer import ensemble, load_member


def predict_video(runs: list[str | Path], video: str | Path, tta_clips: int | None = None,
                  comp=None) -> pd.Series:
    """Class probabilities for one video, highest first: the mean over the runs' checkpoints and TTA views, or,
    with `comp` (a loaded competition) and no runs, its ensemble.yaml blend and calibration as `submit` uses them."""
    spec = {}
    if runs:
        members = [load_member(Path(r), 1.0, tta_clips) for r in runs]
    elif comp is not None:
        from vidkit.flows.infer import resolve_members
        members, spec = resolve_members(comp, None, tta_clips)
    else:
        raise VidkitError("predict: run=RUN_DIR (or comp= for the competition's ensemble) is required")
    classes = members[0].classes
    probs = ensemble(members, pd.DataFrame([media_row(video)]), classes, method=spec.get("method", "mean"))[0]
    if spec and np.isfinite(probs).all():
        from vidkit.flows.ensemble import calibrate
        probs = calibrate(probs[None], spec, members[0].multilabel, classes)[0]
    if not np.isfinite(probs).all():
        raise VidkitError(f"{video}: could not be decoded")
    return pd.Series(probs, index=classes).sort_values(ascending=False, kind="stable")


def is_spotting(runs: list[str | Path], comp=None) -> bool:
    """Whether `predict` serves spotting runs (the first run's run.json, else the competition's task)."""
    from vidkit.rundir import RunDir
    if runs:
        return RunDir(Path(runs[0])).meta().get("task") == "spotting"
    return comp is not None and comp.task == "spotting"


def run_predict(runs: list[str | Path], video: str | Path, topk: int, tta_clips: int | None = None,
                comp=None, out: str | Path | None = None):
    """The `predict` verb (its keys' defaults: cli.Predict): print and return the `topk` classes; on spotting
    runs, the video's event list (vidkit.flows.spotting), also written to `out` when given."""
    if is_spotting(runs, comp):
        from vidkit.flows.spotting import run_predict_events
        return run_predict_events(runs, video, comp, out)
    top = predict_video(runs, video, tta_clips, comp).head(topk)
    width = max(len(str(c)) for c in top.index)
    for cls, p in top.items():
        print(f"{str(cls):{width}s}  {p:.4f}")
    return top
