"""Each choice list of vidkit.choices matches the code that implements it, and a value off the list is the same
one-line error wherever it is checked (config, competition, verb key)."""
import pytest

from vidkit.choices import CHOICES, check_choice, choice_help
from vidkit.errors import VidkitError


def implemented() -> dict[str, set]:
    """Choice list name -> the names its implementation knows."""
    from vidkit import formats, metrics
    from vidkit.data import sampling, transforms, video_backends
    from vidkit.engine import optim, reduce, tta
    from vidkit.flows import export
    from vidkit.models import inflate
    return {
        "train_sampler": {k for k, s in sampling.SAMPLERS.items() if s.train},
        "pad_mode": set(sampling.PAD_MODES),
        "resize_mode": set(transforms.RESIZE_MODES),
        "video_backend": {"auto", *video_backends.BACKENDS},
        "class_weights": set(optim.CLASS_WEIGHTS),
        "scheduler": set(optim.SCHEDULERS),
        "tta_reduce": set(tta.REDUCTIONS),
        "video_reduce": {None, *reduce.VIEW_MEANS, *reduce.SCALAR},
        "submission": set(formats.FORMATS),
        "metric": set(metrics.METRICS) | set(metrics.EVENT_METRICS),
        "export_format": set(export.FORMATS),
        "inflate": set(inflate.INFLATE_MODES),
    }


def test_every_implementation_matches_its_choice_list():
    differ = {name: (sorted(have), sorted(CHOICES[name])) for name, have in implemented().items()
              if have != set(CHOICES[name])}
    assert differ == {}


def test_off_the_list_is_one_error_everywhere(tiny_comp, tmp_path):
    from vidkit.cli import parse
    from vidkit.config import load_competition, load_config
    with pytest.raises(VidkitError, match=r"^scheduler: 'cosin' is not one of cosine, linear, step, plateau, constant$"):
        load_config(None, {"scheduler": "cosin"})
    with pytest.raises(VidkitError, match=r"^export: format: 'tflite' is not one of torchscript, onnx$"):
        parse("export", ["run=x", "format=tflite"])
    bad = tmp_path / "c.yaml"
    bad.write_text(open(tiny_comp).read() + "\nmetric: acc\n")
    with pytest.raises(VidkitError, match=rf"^{bad}: metric: 'acc' is not one of accuracy, "):
        load_competition(bad)


def test_helper_and_help_read_the_list():
    assert check_choice("method", "rank") == "rank"
    with pytest.raises(VidkitError, match="^x: method: 'median' is not one of mean, logit, rank$"):
        check_choice("method", "median", where="x: ")
    assert choice_help("log_with") == "tensorboard"
    from vidkit.cli import verb_help
    assert "method=mean|logit|rank" in verb_help("ensemble")
    assert "scheduler=cosine" in verb_help("cv") and "one of cosine|linear|step|plateau|constant" in verb_help("cv")
