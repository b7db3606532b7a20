"""I3D (Carreira & Zisserman, 2017): a 2D ImageNet CNN inflated to 3D. The module: every Conv2d / BatchNorm2d /
pool becomes its 3D counterpart (time kernels chosen per conv, no temporal stride). The weights: one function on
state dicts that repeats each 2D kernel over time (`mean`, I3D's choice) or puts it at the centre (`center`)."""
from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn

from vidkit.choices import check_choice
from vidkit.models.frame2d import timm_architecture
from vidkit.models.registry import InputSpec, register_model
from vidkit.models.weights import load_matching, read_state_dict, require_path

INFLATE_MODES = ("mean", "center")  # model_args.inflate (its choice list: vidkit.choices)


def inflate_state_dict(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                       mode: str = "mean") -> dict[str, torch.Tensor]:
    """`state` with each 2D conv kernel (O, I, kh, kw) that `target` holds as (O, I, kt, kh, kw) inflated over
    time: `mean` repeats it kt times divided by kt (a clip of identical frames gives the 2D activations away from
    the clip's ends), `center` puts it at the middle step with zeros elsewhere (identical frames give exactly the
    2D activations). Every other tensor passes unchanged, so an already-3D checkpoint loads as it is."""
    check_choice("inflate", mode, INFLATE_MODES, where="model_args: ")
    out = {}
    for key, value in state.items():
        want = target.get(key)
        if want is not None and value.ndim == 4 and want.ndim == 5 and want.shape[:2] + want.shape[3:] == value.shape:
            steps = want.shape[2]
            if mode == "mean":
                value = value.unsqueeze(2).repeat(1, 1, steps, 1, 1) / steps
            else:
                value = torch.zeros(want.shape, dtype=value.dtype).index_copy_(
                    2, torch.tensor([steps // 2]), value.unsqueeze(2))
        out[key] = value
    return out


def _conv3d(conv: nn.Conv2d, steps: int) -> nn.Conv3d:
    return nn.Conv3d(conv.in_channels, conv.out_channels, (steps, *conv.kernel_size), (1, *conv.stride),
                     (steps // 2, *conv.padding), (1, *conv.dilation), conv.groups, conv.bias is not None)


def _pool3d(pool: nn.Module) -> nn.Module:
    if isinstance(pool, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d(1 if pool.output_size in (1, (1, 1)) else (None, *pool.output_size))
    if isinstance(pool, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool3d(1 if pool.output_size in (1, (1, 1)) else (None, *pool.output_size))
    pair = nn.modules.utils._pair
    kernel, stride, padding = (1, *pair(pool.kernel_size)), (1, *pair(pool.stride)), (0, *pair(pool.padding))
    if isinstance(pool, nn.MaxPool2d):
        return nn.MaxPool3d(kernel, stride, padding, (1, *pair(pool.dilation)), ceil_mode=pool.ceil_mode)
    return nn.AvgPool3d(kernel, stride, padding, pool.ceil_mode, pool.count_include_pad)


POOLS_2D = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def inflate_module(module: nn.Module, time_kernel: Callable[[str], int], prefix: str = "") -> nn.Module:
    """`module` with its 2D layers replaced in place by 3D ones; `time_kernel(name)` is each conv's kernel over
    time (odd; padded to keep the frame count). For CNNs of conv / norm / pool layers (ResNets, VGG, ...)."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, nn.Conv2d):
            new = _conv3d(child, time_kernel(path))
        elif isinstance(child, nn.BatchNorm2d):
            new = nn.BatchNorm3d(child.num_features, child.eps, child.momentum, child.affine,
                                 child.track_running_stats)
        elif isinstance(child, POOLS_2D):
            new = _pool3d(child)
        else:
            inflate_module(child, time_kernel, path + ".")
            continue
        setattr(module, name, new)
    return module


def i3d_time_kernels(stem: int) -> Callable[[str], int]:
    """I3D ResNet (Wang et al., 2018): the stem's first conv spans `stem` frames; the first conv of every other
    residual block spans 3; all other convs are 2D in time."""
    first = []

    def kernel(name: str) -> int:
        if not first:
            first.append(name)
        block = re.search(r"\.(\d+)\.conv1$", name)
        return stem if name == first[0] else 3 if block and int(block.group(1)) % 2 == 0 else 1
    return kernel


@register_model
def i3d_r50(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
            image_size: int | None = None, backbone: str = "resnet50", inflate: str = "mean", stem_time_kernel: int = 5,
            dropout: float = 0.0, drop_path_rate: float = 0.0):
    """I3D ResNet-50: a timm 2D `backbone` inflated to 3D (8 frames at 224 px); `pretrained`: a torchvision or
    timm resnet50 state_dict (2D ImageNet weights, inflated by `inflate: mean|center`; a 3D one loads as is)."""
    check_choice("inflate", inflate, INFLATE_MODES, where="model_args: ")
    net = timm_architecture(backbone, num_classes=num_classes, drop_rate=dropout, drop_path_rate=drop_path_rate)
    cfg = net.pretrained_cfg
    model = inflate_module(net, i3d_time_kernels(stem_time_kernel))
    if pretrained:
        path = require_path(pretrained, "i3d_r50", f"a torchvision or timm {backbone} state_dict (2D or inflated)")
        load_matching(model, inflate_state_dict(read_state_dict(path), model.state_dict(), inflate), str(path))
    model.input_spec = InputSpec(num_frames or 8, image_size or 224, tuple(cfg["mean"]), tuple(cfg["std"]), "CTHW")
    model.classifier_name = net.default_cfg.get("classifier", "fc")
    return model
