"""`python -m vidkit <verb> [arg] key=value ...`: the verbs of the outside contract (README.md).

Each verb is declared once, as a dataclass registered with `@verb(name)`: its docstring is the one-line help,
each field is a key (type, default and help in one `key(...)` line), and `main()` does the work, importing what
it needs inside (verbs that need no model never import torch). `config.apply` fills the fields, so a wrongly
typed value (or an unknown key) is the same one-line error as a config override; `--help` is printed from the same
declaration. A verb with a `config_keys()` field (train, cv, cache) passes every other key to its training config.
A field named like a Python keyword takes a trailing `_` (`class_` is the key `class`).
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

from vidkit.choices import CHOICES, check_choice, choice_help
from vidkit.config import DEFAULT_COMP, Config, apply, load_config, parse_overrides
from vidkit.errors import VidkitError
from vidkit.rundir import GALLERY_SIZE

REQUIRED = object()  # the default of a key the user must give
VERBS: dict[str, type] = {}


def verb(name: str):
    """Register a verb class (made a dataclass here) under `name`."""
    def register(cls):
        VERBS[name] = dataclass(cls)
        return VERBS[name]
    return register


def key(default=None, help: str = "", metavar: str | None = None, positional: bool = False,
        choices: str | None = None):
    """One key of a verb: its default (`REQUIRED` for a must-give), one line of help, and how `--help` shows its
    value; `positional=True`: the verb's one bare argument (`validate SUB`) instead of `name=value`;
    `choices`: the name of its list in `vidkit.choices` (checked on parsing, shown as `a|b` in `--help`)."""
    return field(default=default, metadata={"help": help, "metavar": metavar or (choices and choice_help(choices)),
                                            "positional": positional, "choices": choices})


def config_keys():
    """A verb field that collects every other key=value as training-config overrides (checked by `load_config`)."""
    return field(default_factory=dict, metadata={"config": True})


def comp_key():
    return key(DEFAULT_COMP, "the competition yaml")


def shard_key():
    return key(None, "this machine's part k/n of the videos (k = 0..n-1; a stable hash of the video id)", "k/n")


def backend_key(default: str | None = "cv2", help: str = "raw-video decoder"):
    return key(default, help, choices="video_backend")


def workers_key(default: str = "1", what: str = "processes on this machine"):
    return key(None, f"{what} (default: {default})", "N")


def runs_key(default: str):
    return key(None, f"run folders, comma-separated (default: {default})", "A,B")


def split_runs(runs: str | None) -> list[str] | None:
    """`runs=A,B` (or space-separated, as `make RUNS="A B"` passes them) as a list; None when not given."""
    return [r for r in (runs or "").replace(" ", ",").split(",") if r] or None


# ---------------------------------------------------------------- the verbs

@verb("demo")
class Demo:
    """build the demo competition, cross-validate two small models, ensemble, submit"""
    comp: str = key(DEFAULT_COMP, "the demo competition yaml (written when missing)")
    data: str = key("data/demo", "the demo data folder")
    models: str = key("r3d18_demo,videomae_demo", "configs to cross-validate, comma-separated")
    out: str = key("submissions/submission.csv", "the submission file")
    kind: str = key("classify", "classify | spotting (events in long videos: competition/demo_spot.yaml, "
                                "data/demo_spot, configs spot_demo)")

    def main(self):
        if self.kind == "spotting":
            return self.spotting()
        if self.kind != "classify":
            raise VidkitError(f"kind: {self.kind!r} is not one of classify, spotting")
        from vidkit.config import load_competition
        from vidkit.flows.cv import run_cv
        from vidkit.demo import make_demo, test_accuracy
        from vidkit.flows.ensemble import run_ensemble
        from vidkit.rundir import RunDir
        from vidkit.flows.submit import run_submit
        start = time.time()
        comp, data = Path(self.comp), Path(self.data)
        if not (data / "sample_submission.csv").is_file() or not comp.is_file():
            make_demo(data, comp)
            print(f"wrote the demo competition: {comp} (data in {data})")
        competition = load_competition(comp)  # once, for every step below
        runs = [run_cv(load_config(name, {"comp": str(comp)}), competition) for name in self.models.split(",")]
        run_ensemble(competition, [str(r) for r in runs])  # weights/<comp>/ensemble.yaml: the blend submit uses
        out = run_submit(competition, None, self.out)  # runs from ensemble.yaml
        for r in runs:
            report = RunDir(r).report()
            print(f"{r}: CV {report['metric']} {report['score']:.4f} ({report['protocol']})")
        print(f"demo test accuracy (hidden labels): {test_accuracy(out, data):.3f}; "
              f"{time.time() - start:.0f}s in all; submission: {out}")

    def spotting(self):
        """The spotting demo: synthetic long videos, cv, ensemble, submit, the score on the hidden test events."""
        from vidkit.config import load_competition
        from vidkit.flows.cv import run_cv
        from vidkit.flows.ensemble import run_ensemble
        from vidkit.flows.submit import run_submit
        from vidkit.rundir import RunDir
        from vidkit.spot_demo import hidden_score, make_spot_demo
        start = time.time()
        comp = Path("competition/demo_spot.yaml" if self.comp == DEFAULT_COMP else self.comp)
        data = Path("data/demo_spot" if self.data == "data/demo" else self.data)
        models = "spot_demo" if self.models == "r3d18_demo,videomae_demo" else self.models
        if not (data / "sample_submission.csv").is_file() or not comp.is_file():
            make_spot_demo(data, comp)
            print(f"wrote the spotting demo competition: {comp} (data in {data})")
        competition = load_competition(comp)
        runs = [run_cv(load_config(name, {"comp": str(comp)}), competition) for name in models.split(",")]
        run_ensemble(competition, [str(r) for r in runs])
        out = run_submit(competition, None, self.out)
        for r in runs:
            report = RunDir(r).report()
            print(f"{r}: CV spotting_map {report['score']:.4f} (constant baseline {report['baseline_score']:.4f})")
        print(f"demo test spotting_map (hidden events): {hidden_score(out, data, competition.tolerances):.4f}; "
              f"{time.time() - start:.0f}s in all; submission: {out}")


@verb("init")
class Init:
    """write competition/<name>.yaml from a downloaded competition folder, a comment on each guess: init DATA_DIR"""
    data: str = key(REQUIRED, "the downloaded competition folder", "DATA_DIR", positional=True)
    name: str | None = key(None, "the competition's name (default: the folder's)", "N")
    out: str | None = key(None, "the yaml to write (default: competition/<name>.yaml)", "FILE")
    force: bool = key(False, "overwrite an existing yaml")

    def main(self):
        from vidkit.data.discover import run_init
        run_init(self.data, self.name, self.out, self.force)


@verb("folds")
class Folds:
    """draw (once) and show the competition's grouped folds"""
    comp: str = comp_key()

    def main(self):
        from vidkit.config import load_competition
        from vidkit.data import index_train
        from vidkit.data.folds import folds_path, load_or_make_folds
        comp = load_competition(self.comp)
        multilabel = comp.task == "multilabel"
        if comp.task == "spotting":  # long videos straight in train_dir, folds by group only
            from vidkit.data.events import index_videos
            table = index_videos(comp, "train")[["video_id", "group", "label"]]
        else:
            table = index_train(comp)
        folds = load_or_make_folds(folds_path(comp.path), table, comp.n_folds,
                                   label_sep=comp.label_sep if multilabel else None)
        if multilabel:  # videos carrying each label, per fold
            import pandas as pd
            from vidkit.data.labels import label_set, multi_hot
            classes = label_set(folds["label"], comp.label_sep)
            y = pd.DataFrame(multi_hot(folds["label"], classes, comp.label_sep), columns=classes)
            print(y.groupby(folds["fold"].to_numpy()).sum().astype(int).to_string())
        else:
            print(folds.groupby(["fold", "label"]).size().unstack(fill_value=0).to_string())
        print(folds_path(comp.path))


@dataclass
class TrainingVerb:
    """A verb that takes a training config: the bare CONFIG argument, and any config key=value."""
    config: str = key(REQUIRED, "a config name (configs/<name>.yaml) or yaml path", "CONFIG", positional=True)
    overrides: dict = config_keys()

    def load(self) -> Config:
        return load_config(self.config, self.overrides)


@verb("train")
class Train(TrainingVerb):
    """train one fold: train CONFIG [fold=k] key=value ... (fold=-1: all training data)"""

    def main(self):
        cfg = self.load()  # a bad key fails before the heavy imports
        from vidkit.flows.cv import run_train
        run_train(cfg)


@verb("cv")
class CV(TrainingVerb):
    """train every fold, write oof.csv, cv_report.json and plots: cv CONFIG key=value ..."""

    def main(self):
        cfg = self.load()
        from vidkit.flows.cv import run_cv
        run_cv(cfg)


@verb("pretrain")
class Pretrain(TrainingVerb):
    """masked-autoencoding (VideoMAE) pretraining on the competition's own videos, labels unused; writes
    <out>/pretrained/ for pretrained=: pretrain CONFIG comp=C [use_test=true] [mask_ratio=0.9] [out_dir=DIR]"""

    def main(self):
        cfg = self.load()
        from vidkit.flows.pretrain import run_pretrain
        run_pretrain(cfg)


@verb("tune")
class Tune(TrainingVerb):
    """Optuna study over a search space (TPE, median pruning) on the competition's fixed folds, resumed from its
    database; writes configs/<config>_tuned.yaml: tune CONFIG trials=N key=value ..."""
    trials: int = key(REQUIRED, "the study's total number of trials (running again continues up to it)", "N")
    space: str | None = key(None, "the search space yaml (default: tune.yaml next to the config)", "FILE")
    folds: str = key("0", "folds trained per trial, comma-separated", "0,1")
    storage: str | None = key(None, "an SQLAlchemy URL (default: sqlite:///weights/<comp>/tune/<config>.db)", "URL")
    out: str | None = key(None, "the tuned config (default: <config>_tuned.yaml next to the config)", "FILE")

    def main(self):
        cfg = self.load()
        from vidkit.config import config_path
        from vidkit.flows.tune import run_tune
        run_tune(cfg, config_path(self.config), self.trials, Path(self.space) if self.space else None,
                 [int(f) for f in self.folds.split(",") if f.strip()], self.storage,
                 Path(self.out) if self.out else None)


@verb("cache")
class Cache(TrainingVerb):
    """decode every video once into the frame cache that `cache=true` reads: cache [CONFIG] comp=..."""
    config: str | None = key(None, "a config (its image_size, else its model's, sets the short side)", "CONFIG",
                             positional=True)
    shard: str | None = shard_key()
    workers: int | None = workers_key("num_workers=, else one per core")

    def main(self):
        cfg = self.load()
        from vidkit.config import load_competition
        from vidkit.data import short_side
        from vidkit.data.cache import cache_competition
        from vidkit.engine.runtime import build_model
        size = cfg.image_size or build_model(cfg, 2).input_spec.size
        root, n, size_bytes = cache_competition(load_competition(cfg.comp), short_side(size, cfg.resize_short),
                                                cfg.cache_dir, self.workers or (cfg.num_workers if cfg.num_workers > 0
                                                                                else None), self.shard,
                                                cfg.video_backend)
        print(f"frame cache: {n} videos, {size_bytes / 2**30:.2f} GiB "
              f"({size_bytes / max(n, 1) * 1000 / 2**30:.2f} GiB per 1000 videos) in {root}")


@verb("embed")
class Embed(TrainingVerb):
    """frozen-backbone features of every training and test video, stored once for heads: embed CONFIG comp=...
    [run=RUN] (fold-aligned: each fold checkpoint of a cross-validated run) [out=DIR]"""
    run: str | None = key(None, "a cross-validated run: its fold checkpoints embed (fold-aligned) instead of "
                                "the config's pretrained weights", "RUN")
    out: str | None = key(None, "the store folder (default: features/<comp>/<config or run name>)", "DIR")
    shard: str | None = shard_key()
    workers: int | None = workers_key("the config's num_workers", "decoding processes")
    dtype: str = key("float16", "stored values: float16|float32", "TYPE")

    def main(self):
        cfg = self.load()
        from vidkit.flows.embed import run_embed
        run_embed(cfg, cfg.comp, self.run, self.out, self.shard, self.workers, self.dtype)


@verb("submit")
class Submit:
    """ensemble + TTA over the test set, write and validate the submission"""
    comp: str = comp_key()
    runs: str | None = runs_key("ensemble.yaml's, else every finished run")
    out: str = key("submissions/submission.csv", "the submission file")
    tta_clips: int | None = key(None, "clips per video (default: each run's config)", "N")
    budget: str | None = key(None, "time limit: drop flips, crops, clips, members until the estimate fits", "9h")
    scale: float = key(1.0, "the hidden test set is this many times the local one (for budget=)")
    video_backend: str | None = backend_key(None, "raw-video decoder (default: each run's config)")
    ensemble: str | None = key(None, "the blend file (default: weights/<comp>/ensemble.yaml)", "YAML")

    def main(self):
        from vidkit.flows.submit import run_submit
        run_submit(self.comp, split_runs(self.runs), self.out, self.tta_clips, self.budget, self.scale,
                   ensemble_yaml=self.ensemble, backend=self.video_backend)


@dataclass
class RunsVerb:
    """A verb that serves trained runs: run=/runs= folders, or a competition's ensemble.yaml blend."""
    run: str | None = key(None, "run folder(s), comma-separated", "RUN[,RUN2]")
    runs: str | None = key(None, "the same as run=", "RUN[,RUN2]")
    comp: str | None = key(None, "without run=: this competition's ensemble.yaml blend, as submit uses it", "YAML")

    def served(self) -> tuple[list[str], object]:
        """(run folders, the loaded competition or None)."""
        from vidkit.config import load_competition
        return split_runs(self.run or self.runs) or [], load_competition(self.comp) if self.comp else None


@verb("predict")
class Predict(RunsVerb):
    """top classes of one video file or frame folder (spotting runs: its event list): predict run=RUN video=PATH"""
    video: str = key(REQUIRED, "a video file or a folder of frames", "VIDEO_FILE_OR_FRAME_DIR")
    topk: int = key(5, "how many classes to print")
    tta_clips: int | None = key(None, "clips per video (default: the run's config)", "N")
    out: str | None = key(None, "spotting runs: also write the event list here", "CSV")

    def main(self):
        from vidkit.flows.predict import run_predict
        runs, comp = self.served()
        run_predict(runs, self.video, self.topk, self.tta_clips, comp, self.out)


@verb("export")
class Export:
    """write a run's model as TorchScript or ONNX, checked against PyTorch"""
    run: str = key(REQUIRED, "the run folder", "RUN_DIR")
    format: str = key(CHOICES["export_format"][0], "the export format", choices="export_format")
    fold: int | None = key(None, "which fold's checkpoint (default: the first)", "K")
    out: str | None = key(None, "output folder (default: <run>/export)", "DIR")
    atol: float = key(1e-4, "largest allowed |difference| from PyTorch")

    def main(self):
        from vidkit.flows.export import run_export
        run_export(self.run, self.format, self.atol, self.fold, self.out)


@verb("gallery")
class Gallery:
    """errors.png + errors.html: the most confidently wrong out-of-fold videos of a run"""
    run: str = key(REQUIRED, "a cross-validated run folder", "RUN_DIR")
    n: int = key(GALLERY_SIZE, "how many videos")

    def main(self):
        from vidkit.analysis.gallery import run_gallery
        run_gallery(self.run, self.n)


@verb("explain")
class Explain:
    """saliency over the sampled frames of one video: attention rollout (transformers), Grad-CAM (CNNs); a PNG"""
    run: str = key(REQUIRED, "a cross-validated run folder", "RUN_DIR")
    video: str = key(REQUIRED, "a video file or a folder of frames", "PATH")
    class_: str | None = key(None, "the class to explain (default: the predicted one; multi-label: each)", "NAME")
    fold: int = key(0, "which fold's checkpoint")
    out: str | None = key(None, "the PNG (default: <run>/explain/<video id>.png)", "PNG")
    frame: int | None = key(None, "spotting runs: the frame to explain (default: the highest score)", "N")
    time: float | None = key(None, "spotting runs: the same, in seconds", "S")

    def main(self):
        from vidkit.analysis.explain import explain_video
        path, _, method, _ = explain_video(self.run, self.video, self.class_, self.fold, self.out,
                                           frame=self.frame, time=self.time)
        print(f"{method}: {path}")


@verb("app")
class App(RunsVerb):
    """a local web demo (Gradio): upload or pick a video, see top classes, frames, saliency; endpoint /predict"""
    port: int = key(7860, "the port to serve on")
    host: str = key("127.0.0.1", "the address to serve on (0.0.0.0: every interface)")
    topk: int = key(5, "how many classes to show")

    def main(self):
        from vidkit.app import run_app
        runs, comp = self.served()
        run_app(runs, self.port, self.host, self.topk, comp)


@verb("validate")
class Validate:
    """check a submission against the sample: validate SUB sample=SAMPLE"""
    submission: str = key(REQUIRED, "the submission csv", "SUB", positional=True)
    sample: str = key(REQUIRED, "the sample submission csv", "SAMPLE_SUBMISSION")
    id_column: str = key("id", "the id column")

    def main(self):
        from vidkit.flows.submit import validate_file
        validate_file(self.submission, self.sample, self.id_column)
        print(f"{self.submission}: valid")


@verb("frames")
class Frames:
    """extract frame folders from raw videos (the folder structure is kept)"""
    videos: str = key(REQUIRED, "folder of videos", "DIR")
    out: str = key(REQUIRED, "folder of frame folders to write", "DIR")
    fps: float | None = key(None, "frames per second to keep (default: all)", "F")
    size: int | None = key(None, "short side of the written frames (default: as decoded)", "S")
    shard: str | None = shard_key()
    workers: int | None = workers_key()
    video_backend: str = backend_key()

    def main(self):
        from vidkit.data.frames import extract_tree
        n = extract_tree(self.videos, self.out, self.fps, self.size, self.shard, self.workers, self.video_backend)
        print(f"extracted {n} videos into {self.out}")


@verb("crop")
class Crop:
    """region crops (one face or player per frame) of every train and test video as frame folders, plus boxes.csv"""
    comp: str = comp_key()
    detector: str | None = key(None, "region detector: dlib_hog|haar (default: the yaml's crop_detector)", "NAME")
    boxes: str | None = key(None, "an external detector's boxes instead: video_id,frame,x1,y1,x2,y2[,score]", "CSV")
    margin: float | None = key(None, "each side grows by this fraction of the box (default: the yaml's, 0.3)", "M")
    size: int | None = key(None, "crops are S x S pixels (default: the yaml's crop_size, 224)", "S")
    select: str | None = key(None, "which track: stable (seen longest) | largest (default: the yaml's)", "HOW")
    every: int | None = key(None, "detect on every n-th frame, interpolate between (default: 1)", "N")
    out: str | None = key(None, "output folder (default: the yaml's crops_dir)", "DIR")
    shard: str | None = shard_key()
    workers: int | None = workers_key()
    video_backend: str = backend_key()

    def main(self):
        from vidkit.config import load_competition
        from vidkit.data.crop import run_crop, settings_of
        comp = load_competition(self.comp)
        settings = settings_of(comp, detector=self.detector, margin=self.margin, size=self.size, select=self.select,
                               every=self.every, backend=self.video_backend)
        path = run_crop(comp, settings, self.out, self.boxes, self.shard, self.workers)
        print(f"wrote crops beside {path}")


@verb("check")
class Check:
    """scan train and test media for corrupt, empty, short, odd-sized or mislabelled items; exit 1 when any"""
    comp: str = comp_key()
    config: str | None = key(None, "a config whose clip length sets what is too short", "CONFIG")
    num_frames: int | None = key(None, "the clip length (default: config=, else 16)", "N")
    exclude_out: str | None = key(None, "write the unusable training videos here (for exclude= in training)",
                                  "FILE")
    shard: str | None = shard_key()
    workers: int | None = workers_key("a thread pool")
    video_backend: str = backend_key()

    def main(self):
        from vidkit.config import load_competition
        from vidkit.data.check import run_check
        return run_check(load_competition(self.comp), self.num_frames or self.config_frames() or 16, self.exclude_out,
                         self.workers, self.shard, self.video_backend)

    def config_frames(self) -> int | None:
        if not self.config:
            return None
        cfg = load_config(self.config)
        if cfg.num_frames is not None:
            return cfg.num_frames
        from vidkit.engine.runtime import build_model  # what the model declares
        return build_model(cfg, 2).input_spec.num_frames


@verb("report")
class Report:
    """table of a competition's cross-validated runs, best first (runs.md, runs.csv)"""
    comp: str = comp_key()
    runs: str | None = runs_key("every finished run")
    out: str | None = key(None, "folder for runs.md and runs.csv (default: weights/<comp>)", "DIR")

    def main(self):
        from vidkit.analysis.report import run_report
        run_report(self.comp, split_runs(self.runs), self.out)


@verb("ensemble")
class Ensemble:
    """search blend weights + calibration on OOF predictions, write ensemble.yaml"""
    comp: str | None = key(None, "the competition yaml (default: the one runs= were trained on, else "
                           f"{DEFAULT_COMP})", "YAML")
    runs: str | None = runs_key("every finished run")
    method: str = key(CHOICES["method"][0], "how members blend", choices="method")
    search: str = key(CHOICES["search"][0], "weight search: greedy hill climbing or Nelder-Mead", choices="search")
    temperature: bool | None = key(None, "fit a temperature (default: for logloss only)")
    out: str | None = key(None, "the ensemble file (default: weights/<comp>/ensemble.yaml)", "FILE")

    def main(self):
        from vidkit.flows.ensemble import run_ensemble
        run_ensemble(self.comp, split_runs(self.runs), self.method, self.out, self.search, self.temperature)


@verb("kernel")
class Kernel:
    """build an offline Kaggle kernel (bundle dataset + notebook) under kernels/; dry_run=true runs it locally
    on a fake /kaggle, push=true uploads it"""
    comp: str = comp_key()
    runs: str | None = runs_key("those `submit` would use")
    dry_run: bool = key(False, "run the kernel's code here on a fake /kaggle tree and validate its submission")
    push: bool = key(False, "upload with the kaggle CLI (or print the commands)")
    user: str | None = key(None, "Kaggle username (default: the yaml's kaggle_user)", "NAME")
    competition: str | None = key(None, "Kaggle competition slug (default: the yaml's kaggle_competition)", "SLUG")
    slug: str | None = key(None, "the kernel's slug", "SLUG")
    title: str | None = key(None, "the kernel's title", "TITLE")
    gpu: bool | None = key(None, "GPU on the kernel (default: the yaml's kernel_gpu, else on)")
    private: bool = key(True, "keep the dataset and the kernel private")
    out: str | None = key(None, "output folder (default: kernels)", "DIR")
    tta_clips: int | None = key(None, "clips per video (default: each run's config)", "N")
    budget: str | None = key(None, "the kernel's time limit (as submit budget=)", "9h")
    kernel_type: str | None = key(None, "notebook (default) or script", choices="kernel_type")
    wheels: str | None = key(None, "folder of wheels to bundle, installed with pip --no-index", "DIR")
    license: str | None = key(None, "the bundle dataset's licence", "CC0-1.0")
    layout: str | None = key(None, "where the kernel finds its inputs: new or old /kaggle/input",
                             choices="input_layout")
    mode: str = key("infer", "infer: the offline inference kernel; train: a training kernel", choices="kernel_mode")
    runs_from: str = key("bundle", "infer: the runs from a bundle dataset, or from the output of the training "
                         "kernel <slug>-train", choices="runs_from")
    configs: str | None = key(None, "train: the configs to cross-validate on Kaggle, comma-separated", "A,B")
    weights: str | None = key(None, "train: pretrained weight inputs (a dataset, or a Kaggle Model)",
                              "OWNER/DATASET,model:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION")
    time_budget: str = key("11h", "train: training stops here (resumable) so the version saves its output", "11h")
    processes: int | None = key(None, "train: processes per config (default: one per GPU)", "N")
    resume: bool = key(False, "train: continue from the notebook's previous output (added as an input)")
    pretrain: str | None = key(None, "train: a videomae config to pretrain on the competition's videos first "
                               "(`pretrain`); the configs of its model fine-tune from it", "CONFIG")
    overrides: dict = config_keys()  # train: config keys (epochs=...) for every config

    def main(self):
        names = ("user", "slug", "competition", "title", "out", "budget", "kernel_type", "wheels", "license", "layout")
        options = {k: getattr(self, k) for k in names if getattr(self, k)}
        if self.mode == "train":
            from vidkit.kaggle.kernel_train import run_train_kernel
            return run_train_kernel(self.comp, self.configs, self.overrides, self.dry_run, self.push, self.weights,
                                    self.time_budget, self.processes, self.resume, self.private, self.gpu,
                                    pretrain=self.pretrain, **options)
        if self.overrides:
            raise VidkitError(f"kernel: unknown key {next(iter(self.overrides))!r} (config keys go with mode=train)")
        if self.runs_from != "bundle":
            from vidkit.kaggle.kernel_train import infer_from_notebook
            return infer_from_notebook(self.comp, self.runs_from, gpu=self.gpu, private=self.private, **options)
        from vidkit.kaggle.kernel import run_kernel
        run_kernel(self.comp, split_runs(self.runs), self.dry_run, self.push, tta_clips=self.tta_clips,
                   gpu=self.gpu, private=self.private, **options)


# ---------------------------------------------------------------- parsing and help

def parse(name: str, args: list[str]):
    """The verb's dataclass filled from `args` (one bare argument at most, and key=value pairs)."""
    cls = VERBS[name]
    fields = dataclasses.fields(cls)
    obj = cls()
    positional = [a for a in args if "=" not in a]
    kv = parse_overrides([a for a in args if "=" in a])
    bare = next((f for f in fields if f.metadata.get("positional")), None)
    if bare is None and positional:
        raise VidkitError(f"{name}: takes only key=value arguments, got {positional[0]!r}")
    if bare is not None and (len(positional) > 1 or (not positional and bare.default is REQUIRED)):
        raise VidkitError(f"expected one {bare.name}, got {positional or 'none'}")
    if positional:
        setattr(obj, bare.name, positional[0])
    own = {key_name(f): f.name for f in fields if not f.metadata.get("config") and f is not bare}
    collect = next((f for f in fields if f.metadata.get("config")), None)
    if collect is not None:  # the verb's own keys here, the rest to the training config
        setattr(obj, collect.name, {k: v for k, v in kv.items() if k not in own})
    unknown = [k for k in kv if k not in own and collect is None]
    if unknown:
        raise VidkitError(f"{name}: unknown key {unknown[0]!r} (known: {', '.join(own)})")
    apply(obj, {own[k]: v for k, v in kv.items() if k in own}, where=f"{name}: ")
    for f in fields:
        if f.metadata.get("choices") and getattr(obj, f.name) is not None:
            check_choice(f.metadata["choices"], getattr(obj, f.name), where=f"{name}: ", key=key_name(f))
    missing = [f for f in fields if getattr(obj, f.name) is REQUIRED]
    if missing:
        raise VidkitError(f"{name}: {key_name(missing[0])}={missing[0].metadata['metavar']} is required")
    return obj


def key_name(f: dataclasses.Field) -> str:
    """The key a user types: the field's name, less a trailing `_` (`class_` is the key `class`)."""
    return f.name.removesuffix("_")


def verb_help(name: str) -> str:
    """`python -m vidkit <verb> --help`: usage, the one-line help, then every key with its help and default."""
    cls = VERBS[name]
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    bare = [f for f in fields if f.metadata.get("positional")]
    shown = [f.metadata["metavar"] if f.default is REQUIRED else f"[{f.metadata['metavar']}]" for f in bare]
    lines = [f"usage: python -m vidkit {' '.join([name, *shown])} key=value ...", " ".join(cls.__doc__.split()), ""]
    lines += ["argument:"] * bool(bare) + [f"  {f.metadata['metavar']:32s} {f.metadata['help']}" for f in bare]
    lines.append("keys:")
    for f in sorted(fields, key=lambda f: bool(f.metadata.get("config"))):  # the verb's own keys first
        if f.metadata.get("config"):
            lines += config_help()
        elif not f.metadata.get("positional"):
            lines.append(f"  {key_value(f, hints[f.name]):32s} {f.metadata['help']}"
                         + (f" (default {f.default})" if f.metadata["metavar"] and f.default not in (None, REQUIRED)
                            else ""))
    lines.append(f"  {'debug=true':32s} show the traceback of a user error")
    return "\n".join(lines)


def key_value(f: dataclasses.Field, tp) -> str:
    """`name=VALUE` as help shows it: the metavar, else true|false for flags, else the default."""
    if f.metadata.get("metavar"):
        value = f.metadata["metavar"]
    elif bool in (tp, *typing.get_args(tp)):
        value = "true|false"
    elif f.default is None:  # the type, e.g. STR for `str | None`
        value = next(t for t in (tp, *typing.get_args(tp)) if isinstance(t, type) and t is not type(None))
        value = value.__name__.upper()
    else:
        value = f.default
    return f"{key_name(f)}={value}"


def config_help() -> list[str]:
    """Every training config key with its default and the comment beside it in `Config` (its help)."""
    comments = dict(re.findall(r"^ +(\w+):.*?# (.*)$", inspect.getsource(Config), re.M))
    lines = ["  any training config key (configs/*.yaml; nested ones dotted, e.g. model_args.width=16):"]
    for f in dataclasses.fields(Config):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        values = f" (one of {choice_help(f.name)})" if f.name in CHOICES else ""
        lines.append(f"  {f'{f.name}={default}':32s} {comments.get(f.name, '')}{values}".rstrip())
    return lines


def usage() -> str:
    lines = ["usage: python -m vidkit <verb> [arg] key=value ...   (python -m vidkit <verb> --help: its keys)", "",
             "verbs:"]
    lines += [f"  {name:9s} {' '.join(cls.__doc__.split())}" for name, cls in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in VERBS:
        print(f"error: unknown verb {name!r}\n{usage()}", file=sys.stderr)
        return 2
    if "-h" in rest or "--help" in rest:
        print(verb_help(name))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved state file otherwise
    takes_config = any(f.metadata.get("config") for f in dataclasses.fields(VERBS[name]))
    debug_arg = next((a.split("=", 1)[1] for a in rest if a.startswith("debug=")), "false")
    debug = debug_arg.lower() in ("1", "true", "yes")
    if not takes_config:  # training configs keep `debug` as a key of their own
        rest = [a for a in rest if not a.startswith("debug=")]
    try:
        rc = parse(name, rest).main()  # a verb may return an exit code (check: 1 when it found problems)
    except VidkitError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return rc if isinstance(rc, int) else 0
