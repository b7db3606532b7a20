"""`python -m vidkit <verb> [config] key=value ...`: the verbs of CONTRACT.md."""
from __future__ import annotations

import dataclasses
import json
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
    _only("submit", positional, kv, ("comp", "runs", "out", "tta_clips", "budget", "scale"))
    run_submit(kv.get("comp", "competition/demo.yaml"), _runs(kv), kv.get("out", "submissions/submission.csv"),
               _number(kv, "tta_clips", int), kv.get("budget"), _number(kv, "scale", float) or 1.0)


def cmd_predict(positional, kv):
    _only("predict", positional, kv, ("run", "runs", "video", "topk", "tta_clips"))
    if "video" not in kv:
        raise VidkitError("predict: video=VIDEO_FILE_OR_FRAME_DIR is required")
    from vidkit.predict import run_predict
    runs = [r for r in kv.get("run", kv.get("runs", "")).split(",") if r]
    run_predict(runs, kv["video"], _number(kv, "topk", int) or 5, _number(kv, "tta_clips", int))


def cmd_export(positional, kv):
    _only("export", positional, kv, ("run", "format", "fold", "out", "atol"))
    if "run" not in kv:
        raise VidkitError("export: run=RUN_DIR is required")
    from vidkit.export import run_export
    run_export(kv["run"], kv.get("format", "torchscript"), _number(kv, "fold", int), kv.get("out"),
               _number(kv, "atol", float) or 1e-4)


def cmd_gallery(positional, kv):
    _only("gallery", positional, kv, ("run", "n"))
    if "run" not in kv:
        raise VidkitError("gallery: run=RUN_DIR is required")
    from vidkit.gallery import run_gallery
    run_gallery(kv["run"], _number(kv, "n", int) or 24)


def cmd_explain(positional, kv):
    _only("explain", positional, kv, ("run", "video", "class", "fold", "out"))
    for key in ("run", "video"):
        if key not in kv:
            raise VidkitError(f"explain: {key}= is required")
    from vidkit.explain import explain_video
    path, _, method, _ = explain_video(kv["run"], kv["video"], kv.get("class"), _number(kv, "fold", int) or 0,
                                    kv.get("out"))
    print(f"{method}: {path}")


def cmd_app(positional, kv):
    _only("app", positional, kv, ("run", "runs", "port", "host", "topk"))
    from vidkit.app import run_app
    runs = [r for r in kv.get("run", kv.get("runs", "")).split(",") if r]
    run_app(runs, _number(kv, "port", int) or 7860, kv.get("host") or "127.0.0.1", _number(kv, "topk", int) or 5)


def _number(kv, key: str, tp):
    from vidkit.config import _coerce
    return _coerce(tp, kv[key], key) if kv.get(key) else None


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


def _runs(kv) -> list[str] | None:
    return [r for r in kv.get("runs", "").replace(" ", ",").split(",") if r] or None


def _only(verb: str, positional, kv, keys: tuple[str, ...]) -> None:
    unknown = [k for k in kv if k not in keys]
    if unknown or positional:
        raise VidkitError(f"{verb}: unknown key {unknown[0]!r} (known: {', '.join(keys)})" if unknown
                          else f"{verb}: takes only key=value arguments, got {positional[0]!r}")


def cmd_cache(positional, kv):
    from vidkit.config import load_competition
    from vidkit.data import short_side
    from vidkit.data.cache import cache_competition
    from vidkit.runtime import build_model
    cfg = load_config(positional[0] if positional else None, kv)
    size = cfg.image_size or build_model(cfg, 2).input_spec.size
    root, n, size_bytes = cache_competition(load_competition(cfg.comp), short_side(size, cfg.resize_short),
                                            cfg.cache_dir, cfg.num_workers if cfg.num_workers > 0 else None)
    print(f"frame cache: {n} videos, {size_bytes / 2**30:.2f} GiB "
          f"({size_bytes / max(n, 1) * 1000 / 2**30:.2f} GiB per 1000 videos) in {root}")


def cmd_check(positional, kv):
    from vidkit.config import load_competition
    from vidkit.data.check import run_check
    _only("check", positional, kv, ("comp", "config", "num_frames", "exclude_out"))
    clip_len = _number(kv, "num_frames", int)
    if clip_len is None and kv.get("config"):
        cfg = load_config(kv["config"])
        clip_len = cfg.num_frames
        if clip_len is None:  # what the model declares
            from vidkit.runtime import build_model
            clip_len = build_model(cfg, 2).input_spec.num_frames
    return run_check(load_competition(kv.get("comp", "competition/demo.yaml")), clip_len or 16, kv.get("exclude_out"))


def cmd_report(positional, kv):
    from vidkit.report import run_report
    _only("report", positional, kv, ("comp", "runs", "out"))
    run_report(kv.get("comp", "competition/demo.yaml"), _runs(kv), kv.get("out"))


def cmd_ensemble(positional, kv):
    from vidkit.config import _coerce
    from vidkit.ensemble import run_ensemble
    _only("ensemble", positional, kv, ("comp", "runs", "method", "search", "temperature", "out"))
    temperature = _coerce(bool, kv["temperature"], "temperature") if "temperature" in kv else None
    run_ensemble(kv.get("comp", "competition/demo.yaml"), _runs(kv), kv.get("method", "mean"), kv.get("out"),
                 kv.get("search", "hill"), temperature)


def cmd_kernel(positional, kv):
    from vidkit.config import _coerce
    from vidkit.kernel import run_kernel
    _only("kernel", positional, kv, KERNEL_KEYS)
    flag = lambda key: _coerce(bool, kv[key], key) if kv.get(key) else None  # noqa: E731
    options = {k: kv[k] for k in ("user", "slug", "competition", "title", "out", "budget", "kernel_type",
                                  "wheels", "license", "layout") if kv.get(k)}
    run_kernel(kv.get("comp", "competition/demo.yaml"), _runs(kv), bool(flag("dry_run")), bool(flag("push")),
               tta_clips=_number(kv, "tta_clips", int), gpu=flag("gpu"),
               private=flag("private") is not False, **options)


KERNEL_KEYS = ("comp", "runs", "dry_run", "push", "user", "slug", "competition", "title", "gpu", "private", "out",
               "tta_clips", "budget", "kernel_type", "wheels", "license", "layout")


def cmd_demo(positional, kv):
    from vidkit.cv import run_cv
    from vidkit.demo import make_demo, test_accuracy
    from vidkit.ensemble import run_ensemble
    from vidkit.submit import run_submit
    start = time.time()
    comp, data = Path(kv.get("comp", "competition/demo.yaml")), Path(kv.get("data", "data/demo"))
    if not (data / "sample_submission.csv").is_file() or not comp.is_file():
        make_demo(data, comp)
        print(f"wrote the demo competition: {comp} (data in {data})")
    runs = []
    for name in kv.get("models", "r3d18_demo,videomae_demo").split(","):
        runs.append(run_cv(load_config(name, {"comp": str(comp)})))
    run_ensemble(str(comp), [str(r) for r in runs])  # weights/<comp>/ensemble.yaml: the blend submit uses
    out = run_submit(str(comp), None, kv.get("out", "submissions/submission.csv"))  # runs from ensemble.yaml
    for r in runs:
        report = json.loads((r / "cv_report.json").read_text())
        print(f"{r}: CV {report['metric']} {report['score']:.4f} ({report['protocol']})")
    print(f"demo test accuracy (hidden labels): {test_accuracy(out, data):.3f}; "
          f"{time.time() - start:.0f}s in all; submission: {out}")


VERBS = {
    "demo": (cmd_demo, "build the demo competition, cross-validate two small models, submit",
             "comp=competition/demo.yaml data=data/demo models=r3d18_demo,videomae_demo out=..."),
    "folds": (cmd_folds, "draw (once) and show the competition's grouped folds", "comp=..."),
    "train": (cmd_train, "train one fold: train CONFIG [fold=k] key=value ...", CONFIG_KEYS),
    "cv": (cmd_cv, "train every fold, write oof.csv, cv_report.json and plots: cv CONFIG key=value ...", CONFIG_KEYS),
    "submit": (cmd_submit, "ensemble + TTA over the test set, write and validate the submission",
               "comp=... runs=A,B out=submissions/submission.csv tta_clips=N budget=9h scale=1.0"),
    "predict": (cmd_predict, "top classes of one video file or frame folder: predict run=RUN video=PATH",
                "run=RUN[,RUN2] video=PATH topk=5 tta_clips=N"),
    "export": (cmd_export, "write a run's model as TorchScript or ONNX, checked against PyTorch",
               "run=RUN format=torchscript|onnx fold=0 out=DIR atol=1e-4"),
    "gallery": (cmd_gallery, "errors.png + errors.html: the most confidently wrong out-of-fold videos of a run",
                "run=RUN n=24"),
    "explain": (cmd_explain, "saliency over the sampled frames of one video: attention rollout (transformers), "
                "Grad-CAM (CNNs); a PNG", "run=RUN video=PATH class=NAME fold=0 out=<run>/explain/<id>.png"),
    "app": (cmd_app, "a local web demo (Gradio): upload or pick a video, see top classes, frames, saliency; "
            "endpoint /predict", "run=RUN[,RUN2] port=7860 host=127.0.0.1 topk=5"),
    "validate": (cmd_validate, "check a submission against the sample: validate SUB sample=SAMPLE", "sample=... id_column=id"),
    "frames": (cmd_frames, "extract frame folders from raw videos", "videos=DIR out=DIR [fps=F] [size=S]"),
    "cache": (cmd_cache, "decode every video once into the frame cache that `cache=true` reads: cache [CONFIG] comp=...",
              CONFIG_KEYS),
    "check": (cmd_check, "scan train and test media for corrupt, empty, short, odd-sized or mislabelled items; "
              "exit 1 when any", "comp=... config=CONFIG num_frames=16 exclude_out=FILE"),
    "report": (cmd_report, "table of a competition's cross-validated runs, best first (runs.md, runs.csv)",
               "comp=competition/demo.yaml runs=A,B out=DIR"),
    "kernel": (cmd_kernel, "build an offline Kaggle kernel (bundle dataset + notebook) under kernels/; "
               "dry_run=true runs it locally on a fake /kaggle, push=true uploads it",
               "comp=... runs=A,B dry_run=true push=true user=NAME competition=SLUG slug=... title=... "
               "gpu=true|false private=true out=kernels tta_clips=N budget=9h kernel_type=notebook|script "
               "wheels=DIR license=CC0-1.0 layout=new|old"),
    "ensemble": (cmd_ensemble, "search blend weights + calibration on OOF predictions, write ensemble.yaml",
                 "comp=... runs=A,B method=mean|logit|rank search=hill|scipy temperature=true|false "
                 "out=weights/<comp>/ensemble.yaml"),
}
NOT_YET = ()


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
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved state file otherwise
    positional = [a for a in rest if "=" not in a]
    kv = parse_overrides([a for a in rest if "=" in a])
    debug = kv.get("debug", "false").lower() in ("1", "true", "yes")
    if verb not in ("train", "cv"):
        kv.pop("debug", None)
    try:
        rc = fn(positional, kv)  # a verb may return an exit code (check: 1 when it found problems)
    except VidkitError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return rc if isinstance(rc, int) else 0
