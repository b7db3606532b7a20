"""The 2.5D design of the DFL (2022) and SoccerNet (2023) winners: a timm 2D backbone over stacks of k
neighbouring frames folded into channels, shared over time, then 3D convolutions over the per-stack feature maps,
GeM pooling and a classifier."""
from __future__ import annotations

import torch
from timm.models import adapt_input_conv
from torch import nn

from vidkit.errors import VidkitError
from vidkit.models.frame2d import timm_architecture
from vidkit.models.registry import InputSpec, register_model
from vidkit.models.weights import load_matching, read_state_dict, require_path

LUMA = (0.299, 0.587, 0.114)


class GeM(nn.Module):
    """Generalised mean pooling over (T, H, W) with a learned exponent (Radenovic et al., 2018)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p, self.eps = nn.Parameter(torch.tensor(float(p))), eps

    def forward(self, x):  # (B, C, T, H, W)
        return x.clamp(min=self.eps).pow(self.p).mean((2, 3, 4)).pow(1.0 / self.p)


def conv3d_block(channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm3d(channels),
                         nn.ReLU(inplace=True))


class Stack2D3D(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, stack: int, grayscale: bool, head_channels: int,
                 head_blocks: int, dropout: float):
        super().__init__()
        self.backbone, self.stack, self.grayscale = backbone, stack, grayscale
        self.reduce = nn.Sequential(nn.Conv3d(backbone.num_features, head_channels, 1, bias=False),
                                    nn.BatchNorm3d(head_channels), nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList(conv3d_block(head_channels) for _ in range(head_blocks))
        self.pool, self.drop = GeM(), nn.Dropout(dropout)
        self.fc = nn.Linear(head_channels, num_classes)

    def forward(self, x):  # (B, T, C, H, W)
        b, t, c, h, w = x.shape
        if t % self.stack:
            raise VidkitError(f"stack2d3d: {t} frames do not split into stacks of {self.stack}")
        if self.grayscale:  # a linear map of the normalised channels, so it commutes with normalisation
            x = (x * x.new_tensor(LUMA).view(1, 1, 3, 1, 1)).sum(2, keepdim=True)
        stacks = x.reshape(b * t // self.stack, self.stack * x.shape[2], h, w)  # k neighbouring frames -> channels
        features = self.backbone.forward_features(stacks)  # (B * T/k, F, h', w')
        features = features.view(b, t // self.stack, *features.shape[1:]).transpose(1, 2)  # (B, F, T/k, h', w')
        x = self.reduce(features)
        for block in self.blocks:
            x = x + block(x)
        return self.fc(self.drop(self.pool(x)))


def load_stacked(backbone: nn.Module, path, in_chans: int) -> None:
    """2D ImageNet weights into a backbone whose first conv takes k * C channels (timm's adapt_input_conv)."""
    state = read_state_dict(path)
    first = backbone.pretrained_cfg.get("first_conv", "conv1") + ".weight"
    if first in state and state[first].shape[1] != in_chans:
        state[first] = adapt_input_conv(in_chans, state[first])
    load_matching(backbone, state, str(path))


@register_model
def stack2d3d(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
              image_size: int | None = None, backbone: str = "resnet18", stack: int = 3, grayscale: bool = False,
              head_channels: int = 256, head_blocks: int = 2, dropout: float = 0.3, drop_path_rate: float = 0.0):
    """2.5D: a timm `backbone` on stacks of `stack` neighbouring frames (grayscale: k channels, else k*3), shared
    over time; `head_blocks` residual 3x3x3 conv blocks over the stacks' feature maps; GeM; a classifier
    (15 frames at 224 px by default). `pretrained`: the 2D backbone's timm weights (first conv adapted)."""
    frames = num_frames or 15
    if frames % stack:
        raise VidkitError(f"model_args: num_frames={frames} is not a multiple of stack={stack}")
    in_chans = stack * (1 if grayscale else 3)
    net = timm_architecture(backbone, num_classes=0, global_pool="", in_chans=in_chans, drop_path_rate=drop_path_rate)
    if pretrained:
        load_stacked(net, require_path(pretrained, "stack2d3d", f"a timm {backbone} checkpoint"), in_chans)
    model = Stack2D3D(net, num_classes, stack, grayscale, head_channels, head_blocks, dropout)
    cfg = net.pretrained_cfg
    model.input_spec = InputSpec(frames, image_size or 224, tuple(cfg["mean"]), tuple(cfg["std"]), "TCHW")
    model.classifier_name = "fc"
    return model
