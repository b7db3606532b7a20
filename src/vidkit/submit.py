"""Write a submission in the sample submission's columns and id order, and validate it."""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.config import Competition, load_competition
from vidkit.data import classes_of, index_test, index_train
from vidkit.errors import VidkitError
from vidkit.infer import default_runs, ensemble

log = logging.getLogger(__name__)


def format_submission(comp: Competition, sample: pd.DataFrame, probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """`probs` rows follow the sample's ids."""
    sub = pd.DataFrame({comp.id_column: sample[comp.id_column].to_numpy()})
    if comp.submission == "label":
        sub[comp.target_column] = [classes[i] for i in probs.argmax(1)]
    elif comp.submission == "probability":
        if comp.positive_class is None or str(comp.positive_class) not in classes:
            raise VidkitError(f"positive_class: {comp.positive_class!r} must be one of {', '.join(classes)}")
        sub[comp.target_column] = probs[:, classes.index(str(comp.positive_class))]
    elif comp.submission == "probabilities":
        columns = [c for c in sample.columns if c != comp.id_column]
        missing = [c for c in columns if c not in classes]
        if missing:
            raise VidkitError(f"sample submission columns are not class names: {', '.join(missing[:5])}")
        for c in columns:
            sub[c] = probs[:, classes.index(c)]
    else:  # topk: space-separated best labels
        k = min(5, len(classes))
        sub[comp.target_column] = [" ".join(classes[i] for i in row[::-1][:k]) for row in probs.argsort(1)]
    return sub[list(sample.columns)]


def validate(sub: pd.DataFrame, sample: pd.DataFrame, id_column: str, source: str = "submission") -> None:
    """Raise a one-line VidkitError if `sub` is not a valid submission for `sample`."""
    if list(sub.columns) != list(sample.columns):
        raise VidkitError(f"{source}: columns {list(sub.columns)} differ from the sample's {list(sample.columns)}")
    ids, want = sub[id_column].astype(str), sample[id_column].astype(str)
    if ids.duplicated().any():
        raise VidkitError(f"{source}: duplicate ids, e.g. {ids[ids.duplicated()].iloc[0]!r}")
    missing, extra = set(want) - set(ids), set(ids) - set(want)
    if missing:
        raise VidkitError(f"{source}: {len(missing)} ids missing, e.g. {sorted(missing)[0]!r}")
    if extra:
        raise VidkitError(f"{source}: {len(extra)} ids not in the sample, e.g. {sorted(extra)[0]!r}")
    if not (ids.to_numpy() == want.to_numpy()).all():
        raise VidkitError(f"{source}: ids are not in the sample's order")
    values = sub.drop(columns=[id_column])
    if values.isna().any().any():
        col = values.columns[values.isna().any()][0]
        raise VidkitError(f"{source}: empty/NaN values in column {col!r}")
    numeric = values.select_dtypes("number")
    if len(numeric.columns):
        arr = numeric.to_numpy(dtype=float)
        if not np.isfinite(arr).all():
            raise VidkitError(f"{source}: inf values")
        sample_numeric = [c for c in numeric.columns if pd.api.types.is_numeric_dtype(sample[c])]
        if sample_numeric and ((numeric[sample_numeric] < 0) | (numeric[sample_numeric] > 1)).any().any():
            raise VidkitError(f"{source}: probabilities outside [0, 1]")


def validate_file(path: str, sample_path: str, id_column: str = "id") -> None:
    for p in (path, sample_path):
        if not Path(p).is_file():
            raise VidkitError(f"{p}: file not found")
    validate(pd.read_csv(path, dtype={id_column: str}), pd.read_csv(sample_path, dtype={id_column: str}),
             id_column, source=path)


def run_submit(comp_path: str, runs: list[str] | None = None, out: str = "submissions/submission.csv",
               tta_clips: int | None = None) -> Path:
    comp = load_competition(comp_path)
    if not comp.sample_submission:
        raise VidkitError(f"{comp_path}: sample_submission is required to submit")
    sample = pd.read_csv(comp.resolve(comp.sample_submission), dtype={comp.id_column: str})
    train = index_train(comp)
    classes = classes_of(comp, train)
    test = index_test(comp)
    run_paths = [Path(r) for r in runs] if runs else default_runs(comp)
    have = test["path"].notna().to_numpy()
    prior = train["label"].value_counts(normalize=True).reindex(classes).fillna(0).to_numpy()
    probs = np.tile(prior, (len(test), 1))
    if (~have).any():
        log.warning("%d test ids have no media and get the training prior: %s", (~have).sum(),
                    ", ".join(test["video_id"][~have].head(10)))
    if have.any():
        probs[have] = ensemble(run_paths, test[have].reset_index(drop=True), classes, tta_clips)
    sub = format_submission(comp, sample, probs, classes)
    validate(sub, sample, comp.id_column)
    return write(sub, out, {"competition": comp.name, "runs": [str(r) for r in run_paths], "tta_clips": tta_clips})


def write(sub: pd.DataFrame, out: str, meta: dict) -> Path:
    """`out`, plus a timestamped copy and a JSON of what produced it in the same folder."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sub.to_csv(out, index=False)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    members = "+".join(Path(r).name for r in meta.get("runs", []))[:80] or "sub"
    archived = out.parent / f"{stamp}_{members}.csv"
    shutil.copyfile(out, archived)
    archived.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {out} ({len(sub)} rows; also {archived.name})")
    return out
