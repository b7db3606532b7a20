"""Dense per-frame models for spotting: a timm 2D backbone on each frame (or a 2.5D stack of neighbouring frames
as channels), then a temporal head over the window (1D convolutions, a bidirectional GRU or a transformer) that
gives logits for every frame: (B, T, C, H, W) -> (B, T, K). The same heads run on per-frame feature tensors
(B, T, D) (`spot_head`: a feature store's output)."""
from __future__ import annotations

import torch
from torch import nn

from vidkit.errors import VidkitError
from vidkit.models.frame2d import GridPooled, timm_architecture
from vidkit.models.registry import IMAGENET_MEAN, IMAGENET_STD, InputSpec, register_model
from vidkit.models.weights import load_matching, read_state_dict, require_path

HEADS = ("conv", "gru", "transformer", "none")


class TemporalHead(nn.Module):
    """(B, T, D) features -> (B, T, K) logits, every frame seeing its neighbours (`none`: each frame alone)."""

    def __init__(self, in_dim: int, num_outputs: int, kind: str = "gru", hidden: int = 128, layers: int = 1,
                 kernel: int = 5, dropout: float = 0.1):
        super().__init__()
        if kind not in HEADS:
            raise VidkitError(f"model_args: head {kind!r} is not one of {', '.join(HEADS)}")
        self.kind = kind
        self.proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        if kind == "conv":
            self.body = nn.Sequential(*[m for _ in range(layers) for m in (
                nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2), nn.GELU())])
        elif kind == "gru":
            self.body = nn.GRU(hidden, hidden // 2, num_layers=layers, batch_first=True, bidirectional=True)
        elif kind == "transformer":
            layer = nn.TransformerEncoderLayer(hidden, max(1, hidden // 32), 2 * hidden, dropout, batch_first=True)
            self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.position = nn.Parameter(torch.zeros(1, 1024, hidden))
        self.out = nn.Linear(hidden, num_outputs)
        nn.init.constant_(self.out.bias, -3.0)  # events are rare: start near a 5% score, not 50%

    def forward(self, x):  # (B, T, D)
        h = self.proj(x)
        if self.kind == "conv":
            h = h + self.body(h.transpose(1, 2)).transpose(1, 2)
        elif self.kind == "gru":
            h = h + self.body(h)[0]
        elif self.kind == "transformer":
            h = self.body(h + self.position[:, :h.shape[1]])
        return self.out(h)


def stack_neighbours(x: torch.Tensor, stack: int) -> torch.Tensor:
    """2.5D: each frame with its stack // 2 neighbours on either side as channels (edges repeated):
    (B, T, C, H, W) -> (B, T, stack * C, H, W)."""
    if stack == 1:
        return x
    half = stack // 2
    padded = torch.cat([x[:, :1].expand(-1, half, -1, -1, -1), x, x[:, -1:].expand(-1, half, -1, -1, -1)], 1)
    return torch.cat([padded[:, i:i + x.shape[1]] for i in range(stack)], 2)


class DenseSpotter(nn.Module):
    def __init__(self, backbone: nn.Module, head: TemporalHead, stack: int):
        super().__init__()
        self.backbone, self.head, self.stack = backbone, head, stack

    def forward(self, x):  # (B, T, C, H, W)
        b, t = x.shape[:2]
        features = self.backbone(stack_neighbours(x, self.stack).flatten(0, 1)).view(b, t, -1)
        return self.head(features)


@register_model
def spot_dense(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
               image_size: int | None = None, backbone: str = "resnet18", head: str = "gru", hidden: int = 128,
               layers: int = 1, stack: int = 1, pool_grid: int = 1, dropout: float = 0.1):
    """Spotting: a timm 2D backbone per frame (`stack=3`: 2.5D, each frame with its neighbours as channels) and
    a temporal head (`head=conv|gru|transformer|none`) giving per-frame logits over windows of `num_frames`
    frames (64 at 224 px by default); `pretrained`: the timm backbone's weights."""
    trunk = timm_architecture(backbone, num_classes=0, in_chans=3 * stack)
    if pretrained:
        path = require_path(pretrained, "spot_dense", f"a timm {backbone} checkpoint (.safetensors or .pth)")
        load_matching(trunk, read_state_dict(path), str(path))
    net = GridPooled(trunk, pool_grid) if pool_grid > 1 else trunk
    model = DenseSpotter(net, TemporalHead(net.num_features, num_classes, head, hidden, layers, dropout=dropout),
                         stack)
    cfg = trunk.pretrained_cfg
    model.input_spec = InputSpec(num_frames or 64, image_size or 224, tuple(cfg.get("mean", IMAGENET_MEAN)),
                                 tuple(cfg.get("std", IMAGENET_STD)), "TCHW")
    model.classifier_name = "head.out"
    model.per_frame = True  # logits (B, T, K): one row per frame, not per clip
    return model


@register_model
def spot_head(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
              image_size: int | None = None, in_dim: int = 512, head: str = "gru", hidden: int = 128,
              layers: int = 1, dropout: float = 0.1, positions: int = 1):
    """Spotting on cached per-frame features (B, T, ...), flattened to (B, T, in_dim * positions): the temporal
    head alone (with `features=STORE`, in_dim and positions come from the store); `pretrained`: a checkpoint of
    this head."""
    model = FeatureHead(TemporalHead(in_dim * positions, num_classes, head, hidden, layers, dropout=dropout))
    if pretrained:
        path = require_path(pretrained, "spot_head", "a spot_head checkpoint (.safetensors or .pth)")
        load_matching(model, read_state_dict(path), str(path))
    model.input_spec = InputSpec(num_frames or 64, image_size or 0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "features")
    model.classifier_name = "head.out"
    model.per_frame = True
    return model


class FeatureHead(nn.Module):
    """Stored features come at any scale (a frozen random-init backbone's: ~1e-3): each frame's vector is
    layer-normalised before the temporal head."""

    def __init__(self, head: TemporalHead):
        super().__init__()
        self.norm, self.head = nn.LayerNorm(head.proj[0].in_features), head

    def forward(self, x):  # (B, T, D) features, or any (B, T, ...) flattened per frame
        return self.head(self.norm(x.flatten(2)))
