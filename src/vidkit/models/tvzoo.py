"""torchvision's video zoo (S3D, MViT v1/v2, Video Swin) through `torchvision.models.get_model`: one builder,
the input spec from the weights enum's own metadata (nothing downloaded), local state_dict weights."""
from __future__ import annotations

import re

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights
from torchvision.models.video.mvit import MSBlockConfig

from vidkit.errors import VidkitError
from vidkit.models.registry import InputSpec, register_model
from vidkit.models.weights import load_matching, read_state_dict, require_path

HEADS = {"s3d": "classifier", "mvit_v1_b": "head", "mvit_v2_s": "head", "swin3d_t": "head", "swin3d_s": "head",
         "swin3d_b": "head"}


def weights_spec(name: str) -> tuple[int, int, tuple, tuple]:
    """(frames, size, mean, std) of torchvision's default weights for `name`: the clip length its accuracy was
    measured with, the crop and normalisation of its transforms (the enum is read, nothing is downloaded)."""
    weights = get_model_weights(name).DEFAULT
    transforms = weights.transforms()
    frames = re.search(r"clip_len=(\d+)", weights.meta["_docs"])
    return (int(frames.group(1)) if frames else weights.meta["min_temporal_size"], int(transforms.crop_size[0]),
            tuple(transforms.mean), tuple(transforms.std))


def _architecture(name: str, num_classes: int, arch: dict | None, num_frames, image_size, kwargs: dict) -> nn.Module:
    """The named model, or (`arch`: constructor arguments, e.g. a tiny test variant) its class at another size."""
    try:
        if not arch:
            return get_model(name, weights=None, num_classes=num_classes, **kwargs)
        with torch.device("meta"):
            cls = type(get_model(name, weights=None))
        arch = dict(arch)
        if "block_setting" in arch:  # MViT: one MSBlockConfig per block
            arch["block_setting"] = [MSBlockConfig(**block) for block in arch["block_setting"]]
            arch.setdefault("spatial_size", (image_size,) * 2)
            arch.setdefault("temporal_size", num_frames)
        return cls(num_classes=num_classes, **arch, **kwargs)
    except TypeError as e:
        raise VidkitError(f"model_args: {name}: {e}") from None


def _fixed_input(model: nn.Module, frames: int, size: int, name: str) -> tuple[int, int]:
    """MViT's position tables fix its clip; other sizes are a clear error, not a crash inside forward."""
    pos = getattr(model, "pos_encoding", None)
    if pos is None:
        return frames, size
    stride = model.conv_proj.stride  # the tables count patches
    fixed = (pos.temporal_size * stride[0], pos.spatial_size[0] * stride[1])
    if (frames, size) != fixed and (frames, size) != weights_spec(name)[:2]:
        raise VidkitError(f"model_args: {name} runs at {fixed[0]} frames x {fixed[1]} px only "
                          f"(asked for num_frames={frames}, image_size={size})")
    return fixed


def torchvision_video(name: str, num_classes: int, pretrained: str | None, num_frames, image_size,
                      arch: dict | None = None, **kwargs) -> nn.Module:
    default_frames, default_size, mean, std = weights_spec(name)
    frames, size = num_frames or default_frames, image_size or default_size
    model = _architecture(name, num_classes, arch, frames, size, kwargs)
    if name == "s3d":  # its fixed (2, 7, 7) average pool needs >= 14 frames at 224 px; global average: any clip
        model.avgpool = nn.AdaptiveAvgPool3d(1)
    if pretrained:
        path = require_path(pretrained, name, f"a torchvision {name} state_dict (.pth or .safetensors)")
        load_matching(model, read_state_dict(path), str(path))
    model.input_spec = InputSpec(*_fixed_input(model, frames, size, name), mean, std, "CTHW")
    model.classifier_name = HEADS[name]
    return model


def _register(name: str):
    frames, size, _, _ = weights_spec(name)

    def builder(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
                image_size: int | None = None, arch: dict | None = None, **kwargs):
        return torchvision_video(name, num_classes, pretrained, num_frames, image_size, arch, **kwargs)
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (f"torchvision {name} ({frames} x {size} px by its weights' metadata); `pretrained`: its "
                       f"torchvision state_dict. model_args go to the torchvision constructor (dropout, "
                       f"stochastic_depth_prob, ...); `arch` builds the same class at another size.")
    register_model(builder)


for _name in HEADS:
    _register(_name)
