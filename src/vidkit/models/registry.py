"""One registry from model name to builder (timm's pattern). `create_model` is the only way models are made.

A builder takes (num_classes, pretrained, num_frames, image_size, **kwargs) and returns an nn.Module whose
forward maps a clip batch to logits and whose `input_spec` says what clip it wants.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from vidkit.errors import VidkitError

KINETICS_MEAN, KINETICS_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    num_frames: int
    size: int
    mean: tuple
    std: tuple
    layout: str  # "CTHW" (3D CNNs) or "TCHW" (transformers, per-frame 2D)


_builders: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _builders[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_builders)


def create_model(name: str, num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
                 image_size: int | None = None, **kwargs) -> nn.Module:
    if name not in _builders:
        raise VidkitError(f"model: unknown model {name!r} (known: {', '.join(list_models())})")
    builder = _builders[name]
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [] if takes_any else [k for k in kwargs if k not in params]
    if unknown:
        allowed = [k for k in params if k not in ("num_classes", "pretrained", "num_frames", "image_size")]
        raise VidkitError(f"model_args: {name} does not take {', '.join(unknown)} (takes: {', '.join(allowed)})")
    model = builder(num_classes=num_classes, pretrained=pretrained, num_frames=num_frames,
                    image_size=image_size, **kwargs)
    assert isinstance(getattr(model, "input_spec", None), InputSpec), f"{name} builder must set input_spec"
    return model
