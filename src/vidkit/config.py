"""Typed configs: a training `Config` (configs/*.yaml) and a `Competition` spec (competition/*.yaml).

Both are plain dataclasses filled from YAML, then from `key=value` overrides; an unknown key or a value
of the wrong type is a `VidkitError` naming the key.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vidkit.choices import CHOICES, check_choice, check_fields, metric_base
from vidkit.errors import VidkitError

DEFAULT_COMP = "competition/demo.yaml"  # the competition of every verb that is not given comp=
TASKS = CHOICES["task"]  # competition yaml `task:`


@dataclass
class Config:
    name: str = ""                          # config name (the yaml file's stem)
    model: str = "r3d_18"                   # a name from vidkit.models.list_models()
    model_args: dict = field(default_factory=dict)  # extra builder kwargs (size variants)
    pretrained: str | None = None           # local weights: file or from_pretrained folder
    pretrained_license: str | None = None   # their licence where the checkpoint does not say (run.json, kernel)
    comp: str = DEFAULT_COMP
    out_dir: str | None = None              # default: weights/<competition>/<config name>
    fold: int = 0                           # -1: train on all training data
    # clip sampling; None means "what the model declares"
    num_frames: int | None = None
    image_size: int | None = None
    resize_short: int | None = None         # short side before cropping; default image_size * 8/7
    frame_stride: int = 2                   # stride of the `random`/`multi` samplers
    train_sampler: str = "random"           # which frames make a training clip (data/sampling.py)
    pad_mode: str = "repeat"                # videos shorter than a clip: repeat the last frame, or loop
    # augmentation (train only)
    crop_scale: float = 0.4                 # RandomResizedCrop min area fraction
    hflip: float = 0.5                      # set 0 for direction-sensitive classes
    color_jitter: float = 0.8               # probability of a colour jitter draw
    rotate: float = 0.0                     # random rotation, +-degrees, one draw per clip (albumentations Affine)
    resize_mode: str = "short"              # short side then crop; letterbox: pad to square; squash: to square
    # optimisation
    epochs: int = 10
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"               # the lr schedule (transformers' get_scheduler where it has it)
    lr_factor: float = 0.1                  # step / plateau: lr multiplier at each drop
    plateau_patience: int = 1               # plateau: epochs without improvement of the val metric before a drop
    label_smoothing: float = 0.1
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"             # auto: Ampere+ bf16, T4/P100 fp16, CPU no
    compile: bool = False                   # torch.compile the model for training (accelerate's dynamo plugin)
    compile_backend: str = "inductor"       # a torch.compile backend (inductor; aot_eager to debug)
    compile_mode: str | None = None         # e.g. max-autotune, reduce-overhead
    channels_last: bool = True              # 3D CNNs in channels_last_3d memory on a GPU (faster cuDNN kernels)
    patience: int = 5                       # epochs without improvement before stopping
    max_steps: int | None = None            # stop after this many optimiser steps; the schedule still spans `epochs`
    max_time: str | None = None             # stop cleanly (state saved) once training ran this long: 11h, 90m, 600s
    num_workers: int = -1                   # DataLoader workers; -1: one per core (per process), fewer for tiny sets
    cache: bool = False                     # read clips from the frame cache (built on first use; `vidkit cache`)
    cache_dir: str | None = None            # frame cache root; default data/cache (then <competition>/<short side>/)
    video_backend: str = "cv2"              # raw-video decoder (data/video_backends.py; auto: the best importable)
    seed: int | list = 42                   # a list (seed=1,2,3) trains a seed ensemble: one run folder per seed
    # training features (all off by default)
    layer_decay: float = 1.0                # layer-wise lr decay for transformer backbones (e.g. 0.75)
    head_lr_scale: float = 1.0              # classifier lr = lr * head_lr_scale
    ema: bool = False                       # evaluate and save an EMA of the weights (timm ModelEmaV3)
    ema_decay: float = 0.999
    mixup: float = 0.0                      # mixup alpha (timm Mixup on clips, soft-target loss)
    cutmix: float = 0.0                     # cutmix alpha
    mixup_prob: float = 1.0
    freeze_epochs: int = 0                  # backbone frozen (only the classifier trains) for the first N epochs
    unfreeze: list | None = None            # then unfreeze only these modules (e.g. [layer3, layer4]); None: all
    class_weights: str = "none"             # inverse-frequency class weights in the loss (sqrt: their square root)
    balanced_sampler: bool = False          # sample training videos with probability 1 / class frequency
    resume: bool = False                    # continue each fold from its last saved state (mid-epoch included)
    save_every: int = 0                     # also save the resumable state every N optimiser steps (0: epoch ends)
    log_with: str | None = None             # an accelerate tracker next to metrics.jsonl
    max_bad_steps: int = 5                  # NaN/inf losses in a row (each step skipped) before a fold stops
    trust_pickle: bool = False              # allow pickled (non-tensor) .pth checkpoints: only for files you trust
    exclude: str | None = None              # file of training video ids to leave out (`vidkit check exclude_out=`)
    # extra training signal (`vidkit.engine.distill`): pseudo-labels and a teacher ensemble
    pseudo: str | None = None               # test probabilities (submit's <out>_probs.csv, or a probabilities CSV)
    threshold: float = 0.9                  # pseudo-label the test videos whose top class is at least this likely
    pseudo_weight: float = 0.5              # their loss weight (a labelled video weighs 1)
    pseudo_soft: bool = False               # train on their probabilities instead of the top class
    pseudo_thresholds: str | None = None    # multi-label: an ensemble.yaml; hard labels at its per-class thresholds
    teacher: str | list | None = None       # teacher run folders (A,B): their out-of-fold probabilities as soft targets
    teacher_test: str | None = None         # also the teachers' test probabilities (a _probs.csv) as unlabelled videos
    alpha: float = 0.5                      # distillation weight: (1 - alpha) * CE(label) + alpha * KL at temperature
    temperature: float = 2.0
    # self-supervised pretraining (`vidkit pretrain`: VideoMAE masked autoencoding, vidkit.engine.pretrain)
    mask_ratio: float = 0.9                 # pretrain: fraction of each clip's patches hidden (tube masking)
    use_test: bool = False                  # pretrain: the test videos too (labels unused; check the rules)
    norm_pix_loss: bool = True              # pretrain: targets standardised per patch (VideoMAE); false: raw pixels
    # evaluation / TTA
    val_clips: int = 1                      # clips per video for the per-epoch validation
    tta_clips: int = 3                      # clips per video for OOF and test predictions
    tta_offsets: list | None = None         # clip start frames, e.g. [0, 4, 8] (instead of tta_clips)
    tta_crops: int = 1                      # 1: centre crop | 3: three crops along the long side
    tta_flip: bool = False                  # also each view flipped (not for direction-sensitive classes)
    tta_reduce: str = "mean"                # views averaged as probabilities (mean), or as logits
    video_reduce: str | None = None         # views (clips, or a frame-level model's frames) to one video score:
    #                                         mean | logits | max | topk_mean | confident (vidkit.engine.reduce); default tta_reduce
    video_reduce_args: dict = field(default_factory=dict)  # topk_mean: k; confident: fake, real, min_fakes, fake_share, real_share
    reduce_positive: str | None = None      # the class max/topk_mean/confident score (cv sets the competition's positive_class)
    eval_batch_size: int | None = None      # default: 2 * batch_size
    debug: bool = False                     # show tracebacks for user errors
    features: str | None = None             # heads: the feature store (`vidkit embed`) or a features_dir to read
    # spotting (competition task `spotting`; vidkit.flows.spotting): num_frames is the window length
    spot_target: str = "heat"               # heat (Gaussian around each event, sigmoid) | class (softmax with background)
    spot_sigma: float = 2.0                 # frames: the heat's width; `class` labels the frames within it as the event
    spot_windows: int = 32                  # training windows per video per epoch: half around events, half at random
    spot_stride: int | None = None          # inference window step (default: num_frames // 2)
    spot_smooth: int = 1                    # moving-average width (frames) of the per-frame scores before peak picking
    spot_min_distance: int = 4              # frames between two detections of one class
    spot_pos_weight: float = 5.0            # heat: loss weight of event frames (most frames have no event)
    spot_hard_negatives: float = 0.0        # share of the random windows cut around spot_hard_from's OOF false positives
    spot_hard_from: str | None = None       # a finished spotting cv run (its oof.csv) for spot_hard_negatives


@dataclass
class Competition:
    name: str = "competition"
    train_dir: str | None = None
    train_csv: str | None = None
    test_dir: str | None = None
    sample_submission: str | None = None
    id_column: str = "id"
    target_column: str = "label"
    submission: str = "label"               # how probabilities fill the sample (vidkit.formats)
    positive_class: str | None = None
    metric: str = "accuracy"
    classes: list | None = None
    group_regex: str | None = None
    n_folds: int = 5
    kaggle_user: str | None = None          # `kernel`: owner of the bundle dataset and the kernel (or user=)
    kaggle_competition: str | None = None   # `kernel`: the competition's Kaggle slug (or competition=)
    kernel_gpu: bool | None = None          # `kernel`: GPU on the kernel (or gpu=); default on
    allowed_licenses: list | None = None    # `kernel`: members' pretrained weights must carry one of these
    features_dir: str | None = None         # precomputed features: one file per video id (.npy .npz .pt .safetensors)
    # train_csv column mapping (vidkit.data.layouts.csv_rows)
    train_id_column: str = "video_id"
    train_label_column: str = "label"
    train_group_column: str = "group"
    train_path_column: str | None = None    # media path relative to train_dir per row (sub-folders allowed)
    task: str = "single_label"              # single_label | multilabel | spotting (TASKS)
    label_sep: str = " "                    # multilabel: the separator of several labels in one train_csv cell
    allow_empty_labels: bool = False        # multilabel: a training video may carry no label at all
    gap_k: int = 20                         # metric gap: each video's top k predictions
    # DFDC-style binary competitions (vidkit.data.layouts.json_entries, vidkit.data.crop)
    train_json: str | None = None           # DFDC metadata.json (a path or a glob of part folders' files); groups from `original`
    crops_dir: str | None = None            # `crop`'s output: training media read from crops_dir/train/..., submit crops the test
    crop_detector: str | None = None        # the region detector of `crop` and `submit` (vidkit.data.crop.DETECTORS)
    crop_margin: float = 0.3                # each side of a box grows by this fraction of its size
    crop_size: int = 224                    # crops are written as crop_size x crop_size frames
    crop_select: str = "stable"             # stable (the longest track) | largest (the largest mean box)
    crop_every: int = 1                     # detect on every n-th frame (boxes interpolated between)
    events_csv: str | None = None           # spotting: video_id,frame|time,event rows (vidkit.data.events)
    tolerances: list | None = None          # spotting: metric tolerances, in the events' unit (frames or seconds)
    fps: float | None = None                # spotting: frame rate of frame-folder videos (video files know theirs)
    path: str | None = None                 # the yaml file itself (set on load)

    def resolve(self, value: str | None) -> Path | None:
        """A path from the yaml, relative to the yaml's folder."""
        if value is None:
            return None
        base = Path(self.path).parent if self.path else Path(".")
        return (base / value).resolve()




def _coerce(tp, value, key: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except VidkitError as e:
                errors.append(str(e))
        raise VidkitError(errors[0] if errors else f"{key}: bad value {value!r}")
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if tp in (dict, list) or origin in (dict, list):
            want = origin or tp
            if isinstance(value, str):
                value = yaml.safe_load(value) if want is dict else _parse_list(value)
            if not isinstance(value, want):
                raise ValueError
            return value
    except (ValueError, TypeError, yaml.YAMLError):
        pass
    name = getattr(tp, "__name__", str(tp))
    raise VidkitError(f"{key}: expected {name}, got {value!r}")


def _parse_list(text: str) -> list:
    parsed = yaml.safe_load(text)
    if isinstance(parsed, list):
        return parsed
    return [yaml.safe_load(t) for t in text.split(",") if t.strip()]


def apply(obj, values: dict, where: str = ""):
    """Set dataclass fields from a mapping; dotted keys reach into dict fields (`model_args.depth=2`)."""
    hints = typing.get_type_hints(type(obj))
    for key, value in values.items():
        top, _, rest = key.partition(".")
        if top not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(obj))
            raise VidkitError(f"{where}unknown key {top!r} (known: {known})")
        if rest:
            current = getattr(obj, top)
            if not isinstance(current, dict):
                raise VidkitError(f"{where}{top} is not a nested field; cannot set {key}")
            current = dict(current)
            current[rest] = yaml.safe_load(value) if isinstance(value, str) else value
            setattr(obj, top, current)
        else:
            setattr(obj, top, _coerce(hints[top], value, f"{where}{key}"))
    return obj


def parse_overrides(args: list[str]) -> dict:
    out = {}
    for arg in args:
        if "=" not in arg:
            raise VidkitError(f"expected key=value, got {arg!r}")
        key, value = arg.split("=", 1)
        out[key.strip()] = value
    return out


def read_yaml(path: str | Path) -> dict:
    """A yaml mapping (configs, competitions, ensemble.yaml); a broken file is one line (vidkit.files)."""
    from vidkit.files import read_yaml_file
    return read_yaml_file(path)


def config_path(name_or_path: str) -> Path:
    """`r3d18`, `configs/r3d18.yaml` and `/abs/x.yaml` all name a config; so does a registered model's own name
    (`r3d_18`, `configs/r3d_18.yaml`: the config whose `model:` it is, a non-`_demo` one when there is a choice)."""
    p = Path(name_or_path)
    path = p if p.suffix in (".yaml", ".yml") else Path("configs") / f"{name_or_path}.yaml"
    if path.exists() or not path.parent.is_dir():  # a folder there: read_yaml says so
        return path
    return config_of_model(path.parent, path.stem)


def _model_of(path: Path) -> str | None:
    """The `model:` a config file sets, through its `_base_` chain (None for a yaml that is not a config)."""
    for _ in range(10):
        try:
            data = read_yaml(path)
        except VidkitError:
            return None
        if "model" in data or not data.get("_base_"):
            return data.get("model")  # a yaml without one (e.g. a tuning space) is no model's config
        path = path.parent / data["_base_"]
    return None


def config_of_model(folder: Path, name: str) -> Path:
    """The config in `folder` for model `name`; a one-line error naming the candidates when none or several."""
    by_model: dict[str, list[Path]] = {}
    for f in sorted(folder.glob("*.yaml")):
        by_model.setdefault(_model_of(f), []).append(f)
    found = by_model.get(name, [])
    found = [f for f in found if not f.stem.endswith("_demo")] or found
    if len(found) > 1:  # r3d_18: r3d18.yaml rather than another config built on the same model
        found = [f for f in found if f.stem == name.replace("_", "")] or found
    if len(found) == 1:
        return found[0]
    if found:
        raise VidkitError(f"config {name!r}: several configs in {folder} are for model {name!r} "
                          f"({', '.join(f.stem for f in found)}); name one")
    configs = ", ".join(f.stem for model, files in by_model.items() if model for f in files)
    models = ", ".join(sorted(m for m in by_model if m))
    raise VidkitError(f"{folder / (name + '.yaml')}: file not found, and no config in {folder} is for model "
                      f"{name!r} (configs: {configs}; models: {models})")


def load_config(name_or_path: str | None, overrides: dict | None = None) -> Config:
    """Load a config yaml (`_base_: other.yaml` inherits from a sibling file), then apply overrides."""
    cfg = Config()
    if name_or_path:
        path = config_path(name_or_path)
        chain = []
        while path is not None:
            data = read_yaml(path)
            chain.append((path, data))
            base = data.pop("_base_", None)
            path = path.parent / base if base else None
        for p, data in reversed(chain):
            apply(cfg, data, where=f"{p}: ")
        cfg.name = config_path(name_or_path).stem
    apply(cfg, overrides or {})
    _check_choices(cfg)
    return cfg


def _check_choices(cfg: Config):
    check_fields(cfg)  # every field with a list in vidkit.choices
    for key in ("epochs", "batch_size", "grad_accum", "tta_clips", "val_clips"):
        if getattr(cfg, key) < 1:
            raise VidkitError(f"{key}: must be >= 1, got {getattr(cfg, key)}")
    parse_duration(cfg.max_time, "max_time")
    if cfg.tta_crops not in (1, 3):
        raise VidkitError(f"tta_crops: must be 1 (centre) or 3 (along the long side), got {cfg.tta_crops}")


def parse_duration(text: str | float | None, key: str = "budget") -> float | None:
    """`9h`, `90m`, `45s`, `1.5h` or plain seconds -> seconds."""
    if text is None or text == "":
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([hms]?)\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise VidkitError(f"{key}: expected a duration such as 9h, 90m or 600s, got {text!r}")
    return float(m.group(1)) * {"h": 3600, "m": 60, "s": 1, "": 1}[m.group(2)]


def load_competition(path: str | Path) -> Competition:
    data = read_yaml(path)
    comp = apply(Competition(), data, where=f"{path}: ")
    comp.path = str(Path(path).resolve())
    check_fields(comp, where=f"{path}: ")  # submission, metric, task
    if not comp.train_dir and not comp.train_csv and not comp.train_json:
        raise VidkitError(f"{path}: train_dir is required")
    if comp.n_folds < 2:
        raise VidkitError(f"{path}: n_folds must be >= 2, got {comp.n_folds}")
    check_task(comp, path)
    try:
        re.compile(comp.group_regex or "")
    except re.error as e:
        raise VidkitError(f"{path}: group_regex: {comp.group_regex!r} is not a valid regular expression ({e})") from None
    return comp


def check_task(comp: Competition, path) -> None:
    """`task:` is one of TASKS, and a multi-label competition has a multi-label metric (and the reverse)."""
    if comp.task not in TASKS:
        raise VidkitError(f"{path}: task: {comp.task!r} is not one of {', '.join(TASKS)}")
    from vidkit.metrics import MULTILABEL_METRICS
    if comp.task == "multilabel" and comp.metric not in MULTILABEL_METRICS:
        raise VidkitError(f"{path}: metric: {comp.metric!r} is not a multi-label metric "
                          f"({', '.join(MULTILABEL_METRICS)})")
    from vidkit.metrics import MULTILABEL_ONLY
    if comp.task == "single_label" and comp.metric in MULTILABEL_ONLY:
        raise VidkitError(f"{path}: metric: {comp.metric!r} is for task: multilabel")
    if comp.gap_k < 1:
        raise VidkitError(f"{path}: gap_k must be >= 1, got {comp.gap_k}")
    if comp.metric == "gap" and comp.gap_k != 20:
        comp.metric = f"gap@{comp.gap_k}"  # the metric every score of this competition computes
    if comp.task != "spotting":
        return
    if not comp.events_csv:
        raise VidkitError(f"{path}: task: spotting needs events_csv: (video_id,frame|time,event rows)")
    if not comp.tolerances or any(not isinstance(t, (int, float)) or t < 0 for t in comp.tolerances):
        raise VidkitError(f"{path}: tolerances: expected a list of numbers >= 0, got {comp.tolerances!r}")
    if comp.metric == "accuracy":  # the default of a classification yaml
        comp.metric = "spotting_map"
    if comp.metric != "spotting_map":
        raise VidkitError(f"{path}: metric: task spotting is scored by spotting_map, not {comp.metric!r}")


def as_competition(comp: Competition | str | Path) -> Competition:
    """A verb's competition: loaded once at the top (from its yaml), then passed down as the object."""
    return comp if isinstance(comp, Competition) else load_competition(comp)


def save_config(obj, path: str | Path):
    from vidkit.files import write_yaml
    write_yaml(path, dataclasses.asdict(obj))


# ---------------------------------------------------------------- ensemble.yaml

@dataclass
class EnsembleMember:
    run: str = ""                           # a run folder (relative: from the yaml's folder or the working one)
    weight: float = 0.0                     # >= 0; the weights are normalised to sum to 1 on load
    score: float | None = None              # its OOF score (informative)


@dataclass
class Ensemble:
    """ensemble.yaml: written by `vidkit ensemble`, read by submit, predict, app, report and kernel."""
    metric: str | None = None               # the competition's metric, which the blend was searched on
    method: str = "mean"                    # how members blend (vidkit.choices)
    members: list = field(default_factory=list)  # [{run, weight, score}] (EnsembleMember)
    score: float | None = None              # the blend's OOF score, calibration included
    temperature: float | None = 1.0         # > 0: softmax(log p / T)
    threshold: float | None = None          # binary: P(positive) >= threshold is the positive class; in (0, 1)
    clip: float | None = None               # probabilities clipped to [clip, 1 - clip]; in [0, 0.5)
    competition: str | None = None          # informative from here on
    positive_class: str | None = None
    n_videos: int | None = None
    nested_score: float | None = None
    search: str | None = None
    thresholds: dict | None = None          # multi-label: per-class thresholds fitted on OOF (format `labels`)
    task: str | None = None                 # the competition's task (informative)
    member_scores: dict | None = None       # spotting: each member's OOF score
    spot_min_distance: int | None = None    # spotting: the peak picking the thresholds were fitted with
    spot_smooth: int | None = None
    per_class_weights: dict | None = None   # multi-label: class -> a weight per member (`members` order)
    per_class_temperature: dict | None = None  # multi-label: class -> its temperature (sigmoid(logit p / T))

    def check(self, where: str) -> None:
        """What a type cannot say: the choices, a non-empty member list with weights summing above 0, ranges."""
        for key in ("metric", "method", "search"):
            if key != "search" or self.search is not None:
                value = getattr(self, key)
                check_choice(key, metric_base(value) if key == "metric" else value, where=where, key=key)
        if not self.members:
            raise VidkitError(f"{where}members: expected a non-empty list of {{run: DIR, weight: W}}")
        if not sum(m["weight"] for m in self.members) > 0:
            raise VidkitError(f"{where}members: the weights sum to 0; at least one must be > 0")
        ranges = {"temperature": lambda v: v > 0, "threshold": lambda v: 0 < v < 1, "clip": lambda v: 0 <= v < 0.5}
        for key, ok in ranges.items():
            value = getattr(self, key)
            if value is not None and not ok(value):
                raise VidkitError(f"{where}{key}: {value!r} is out of range")
        self.check_per_class(where)

    def check_per_class(self, where: str) -> None:
        """per_class_weights: a list of len(members) non-negative numbers per class, summing above 0 (normalised
        to 1 here); per_class_temperature: a number > 0 per class."""
        for cls, ws in (self.per_class_weights or {}).items():
            if (not isinstance(ws, list) or len(ws) != len(self.members)
                    or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in ws)
                    or not sum(ws) > 0):
                raise VidkitError(f"{where}per_class_weights: {cls}: expected {len(self.members)} weights >= 0 "
                                  f"(one per member) summing above 0, got {ws!r}")
            self.per_class_weights[cls] = [w / sum(ws) for w in ws]
        for cls, t in (self.per_class_temperature or {}).items():
            if not isinstance(t, (int, float)) or isinstance(t, bool) or not t > 0:
                raise VidkitError(f"{where}per_class_temperature: {cls}: {t!r} is not a number > 0")


def ensemble_member(entry, where: str) -> dict:
    """One `members:` entry, typed and checked (weight a finite number >= 0)."""
    if not isinstance(entry, dict):
        raise VidkitError(f"{where}expected {{run: DIR, weight: W}}, got {entry!r}")
    member = apply(EnsembleMember(), entry, where)
    if not member.run or not 0 <= member.weight < math.inf:
        raise VidkitError(f"{where}weight: expected a number >= 0 and a run, got {entry!r}")
    return dataclasses.asdict(member)


def load_ensemble(path: str | Path) -> dict:
    """Read and check an ensemble.yaml (the `Ensemble` fields, through `apply`); member weights come back
    normalised to sum to 1. A dict, as `vidkit ensemble` makes it and `calibrate`/`blend` read it."""
    where = f"{path}: "
    spec = apply(Ensemble(), read_yaml(path), where)
    if not isinstance(spec.members, list):
        raise VidkitError(f"{where}members: expected a non-empty list of {{run: DIR, weight: W}}")
    spec.members = [ensemble_member(m, f"{where}members[{i}]: ") for i, m in enumerate(spec.members)]
    spec.temperature = 1.0 if spec.temperature is None else spec.temperature
    spec.check(where)
    total = sum(m["weight"] for m in spec.members)
    spec.members = [{**m, "weight": m["weight"] / total} for m in spec.members]
    return dataclasses.asdict(spec)
