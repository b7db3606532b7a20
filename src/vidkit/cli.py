"""`python -m vidkit <verb> [config] key=value ...`: the verbs of CONTRACT.md."""
from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path

from vidkit.config import Config, load_config, parse_overrides
from vidkit.errors import VidkitError

log = logging.getLogger("vidkit")
CONFIG_KEYS = ", ".join(f.name for f in dataclasses.fields(Config))


def cmd_train(positional, kv):
    from vidkit.cv import run_train
    run_train(load_config(_one(positional, "config"), kv))


def cmd_cv(positional, kv):
    from vidkit.cv import run_cv
    run_cv(load_config(_one(positional, "config"), kv))


def cmd_folds(positional, kv):
    from vidkit.config import load_competition
    from vidkit.data import index_train
    from vidkit.folds import folds_path, load_or_make_folds
    comp = load_competition(kv.get("comp", "competition/demo.yaml"))
    folds = load_or_make_folds(folds_path(comp.path), index_train(comp), comp.n_folds)
    print(folds.groupby(["fold", "label"]).size().unstack(fill_value=0).to_string())
    print(folds_path(comp.path))


def cmd_submit(positional, kv):
    from vidkit.submit import run_submit
    runs = [r for r in kv.get("runs", "").replace(" ", ",").split(",") if r] or None
    tta = int(kv["tta_clips"]) if kv.get("tta_clips") else None
    run_submit(kv.get("comp", "competition/demo.yaml"), runs, kv.get("out", "submissions/submission.csv"), tta)


def cmd_validate(positional, kv):
    from vidkit.submit import validate_file
    path = _one(positional, "submission path")
    if "sample" not in kv:
        raise VidkitError("validate: sample=SAMPLE_SUBMISSION is required")
    validate_file(path, kv["sample"], kv.get("id_column", "id"))
    print(f"{path}: valid")


def cmd_frames(positional, kv):
    from vidkit.data.frames import extract_tree
    for key in ("videos", "out"):
        if key not in kv:
            raise VidkitError(f"frames: {key}=DIR is required")
    n = extract_tree(kv["videos"], kv["out"], float(kv["fps"]) if kv.get("fps") else None,
                     int(kv["size"]) if kv.get("size") else None)
    print(f"extracted {n} videos into {kv['out']}")


def cmd_demo(positional, kv):
    from vidkit.cv import run_cv
    from vidkit.demo import make_demo, test_accuracy
    from vidkit.submit import run_submit
    start = time.time()
    comp, data = Path(kv.get("comp", "competition/demo.yaml")), Path(kv.get("data", "data/demo"))
    if not (data / "sample_submission.csv").is_file() or not comp.is_file():
        make_demo(data, comp)
        print(f"wrote the demo competition: {comp} (data in {data})")
    runs = []
    for name in kv.get("models", "r3d18_demo,videomae_demo").split(","):
        runs.append(run_cv(load_config(name, {"comp": str(comp)})))
    out = run_submit(str(comp), [str(r) for r in runs], kv.get("out", "submissions/submission.csv"))
    for r in runs:
        print(f"{r}: {(r / 'cv_report.json').read_text().splitlines()[1:3]}")
    print(f"demo test accuracy (hidden labels): {test_accuracy(out, data):.3f}; "
          f"{time.time() - start:.0f}s in all; submission: {out}")


VERBS = {
    "demo": (cmd_demo, "build the demo competition, cross-validate two small models, submit",
             "comp=competition/demo.yaml data=data/demo models=r3d18_demo,videomae_demo out=..."),
    "folds": (cmd_folds, "draw (once) and show the competition's grouped folds", "comp=..."),
    "train": (cmd_train, "train one fold: train CONFIG [fold=k] key=value ...", CONFIG_KEYS),
    "cv": (cmd_cv, "train every fold, write oof.csv, cv_report.json and plots: cv CONFIG key=value ...", CONFIG_KEYS),
    "submit": (cmd_submit, "ensemble + TTA over the test set, write and validate the submission",
               "comp=... runs=A,B out=submissions/submission.csv tta_clips=N"),
    "validate": (cmd_validate, "check a submission against the sample: validate SUB sample=SAMPLE", "sample=... id_column=id"),
    "frames": (cmd_frames, "extract frame folders from raw videos", "videos=DIR out=DIR [fps=F] [size=S]"),
}
NOT_YET = ("report", "ensemble", "predict", "export", "kernel", "cache", "check")


def _one(positional: list[str], what: str) -> str:
    if len(positional) != 1:
        raise VidkitError(f"expected one {what}, got {positional or 'none'}")
    return positional[0]


def usage() -> str:
    lines = ["usage: python -m vidkit <verb> [args] key=value ...", "", "verbs:"]
    lines += [f"  {v:9s} {d}" for v, (_, d, _) in VERBS.items()]
    lines += [f"  {v:9s} (not yet implemented)" for v in NOT_YET]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb in NOT_YET:
        print(f"error: {verb}: not yet implemented", file=sys.stderr)
        return 2
    if verb not in VERBS:
        print(f"error: unknown verb {verb!r}\n{usage()}", file=sys.stderr)
        return 2
    fn, doc, keys = VERBS[verb]
    if "-h" in rest or "--help" in rest:
        print(f"python -m vidkit {verb}: {doc}\nkeys: {keys}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    positional = [a for a in rest if "=" not in a]
    kv = parse_overrides([a for a in rest if "=" in a])
    debug = kv.get("debug", "false").lower() in ("1", "true", "yes")
    if verb not in ("train", "cv"):
        kv.pop("debug", None)
    try:
        fn(positional, kv)
    except VidkitError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
