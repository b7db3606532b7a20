"""Every choice list of a key, in one place: a training config's, a competition yaml's, ensemble.yaml's and a
verb's. The config and the competition check their fields named here (`check_fields`), a verb's `key(...,
choices=NAME)` checks its value and shows `a|b|c` in `--help`, and `tests/test_choices.py` checks that each list
matches the code that implements it (the dict of samplers, schedulers, formats, metrics, ... named beside it).

Add a choice list: one line in `CHOICES`. A config or competition field of the same name is then checked on load;
a verb key takes `choices="name"`. Add a choice to a list: here, and in the implementing dict (the test says
which one when they differ).
"""
from __future__ import annotations

from vidkit.errors import VidkitError

CHOICES: dict[str, tuple] = {  # name: the allowed values, first the default where there is one
    # training config (config.Config)
    "train_sampler": ("random", "uniform"),             # data/sampling.py SAMPLERS (train=True)
    "pad_mode": ("repeat", "loop"),                     # data/sampling.py PAD_MODES
    "resize_mode": ("short", "letterbox", "squash"),    # data/transforms.py RESIZE_MODES
    "video_backend": ("cv2", "auto", "torchcodec", "pyav"),  # data/video_backends.py BACKENDS, and auto
    "class_weights": ("none", "inverse", "sqrt"),       # engine/optim.py CLASS_WEIGHTS
    "scheduler": ("cosine", "linear", "step", "plateau", "constant"),  # engine/optim.py SCHEDULERS
    "mixed_precision": ("no", "auto", "fp16", "bf16"),  # engine/precision.py
    "log_with": (None, "tensorboard"),                  # an accelerate tracker
    "tta_reduce": ("mean", "logits"),                   # engine/tta.py REDUCTIONS
    "spot_target": ("heat", "class"),                   # flows/spotting.py: Gaussian heat | softmax with background
    "video_reduce": (None, "mean", "logits", "max", "topk_mean", "confident"),  # engine/reduce.py VIEW_MEANS, SCALAR
    # competition yaml (config.Competition)
    "task": ("single_label", "multilabel", "spotting"),  # the kind of competition
    "submission": ("label", "probability", "probabilities", "topk", "labels", "pairs"),  # formats.py FORMATS
    "metric": ("accuracy", "top5", "f1_macro", "logloss", "auc", "mcc",  # metrics.py METRICS (gap@K: gap, top K)
               "map", "gap", "f1_micro", "f1_samples", "spotting_map"),
    # ensemble.yaml and the `ensemble` verb
    "method": ("mean", "logit", "rank"),                # flows/ensemble.py SPACES
    "search": ("hill", "scipy"),                        # flows/ensemble.py search_weights
    # verbs
    "export_format": ("torchscript", "onnx"),           # flows/export.py FORMATS
    "kernel_mode": ("infer", "train"),                  # cli.py Kernel
    "runs_from": ("bundle", "notebook"),                # kaggle/kernel_train.py
    "kernel_type": ("notebook", "script"),              # kaggle/kernel.py
    "input_layout": ("new", "old"),                     # kaggle/sim.py: the /kaggle/input layout
    "inflate": ("mean", "center"),                      # models/inflate.py INFLATE_MODES
}


def check_choice(name: str, value, allowed=None, where: str = "", key: str | None = None):
    """`value` when it is one of `allowed` (default: the list `CHOICES[name]`), else the one-line error
    `<where><key>: <value> is not one of A, B` (`key` defaults to `name`)."""
    allowed = CHOICES[name] if allowed is None else allowed
    if value not in allowed:
        raise VidkitError(f"{where}{key or name}: {value!r} is not one of {', '.join(map(str, allowed))}")
    return value


def check_fields(obj, where: str = "") -> None:
    """Every field of a config dataclass that names a choice list holds one of its values."""
    for name, allowed in CHOICES.items():
        if hasattr(obj, name):
            value = getattr(obj, name)
            check_choice(name, metric_base(value) if name == "metric" else value, allowed, where, name)


def metric_base(name):
    """A metric's name without its `@K` (gap@5 is gap over each video's top 5)."""
    return name.partition("@")[0] if isinstance(name, str) else name


def choice_help(name: str) -> str:
    """`a|b|c`, as `--help` shows a key's values."""
    return "|".join(str(c) for c in CHOICES[name] if c is not None)
