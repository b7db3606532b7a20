"""Per-frame 2D backbones from timm: TSN (average consensus) and CNN-RNN (BiLSTM + temporal attention)."""
from __future__ import annotations

import timm
import torch
from torch import nn

from vidkit.errors import VidkitError
from vidkit.models.registry import InputSpec, register_model
from vidkit.models.weights import load_matching, read_state_dict, require_path


class GridPooled(nn.Module):
    """A timm trunk whose feature map is average-pooled to a g x g grid and flattened: unlike global pooling,
    it keeps where things are in the frame, which motion direction needs."""

    def __init__(self, trunk: nn.Module, grid: int):
        super().__init__()
        self.trunk, self.pool = trunk, nn.AdaptiveAvgPool2d(grid)
        self.num_features = trunk.num_features * grid * grid
        self.pretrained_cfg = trunk.pretrained_cfg

    def forward(self, x):
        return self.pool(self.trunk.forward_features(x)).flatten(1)


def timm_backbone(name: str, pretrained: str | None, model_name: str, drop_path_rate: float = 0.0,
                  pool_grid: int = 1) -> nn.Module:
    """A timm model without its classifier (forward gives pooled features); local weights only."""
    try:
        backbone = timm.create_model(name, pretrained=False, num_classes=0, drop_path_rate=drop_path_rate)
    except RuntimeError as e:
        raise VidkitError(f"model_args: backbone {name!r}: {e}") from None
    if pretrained:
        path = require_path(pretrained, model_name, f"a timm {name} checkpoint (.safetensors or .pth)")
        load_matching(backbone, read_state_dict(path), str(path))
    return GridPooled(backbone, pool_grid) if pool_grid > 1 else backbone


def _spec(backbone: nn.Module, num_frames, image_size, default_frames, default_size) -> InputSpec:
    cfg = backbone.pretrained_cfg
    return InputSpec(num_frames or default_frames, image_size or default_size, tuple(cfg["mean"]), tuple(cfg["std"]),
                     "TCHW")


class TSN(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float):
        super().__init__()
        self.backbone, self.drop = backbone, nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.num_features, num_classes)

    def forward(self, x):  # (B, T, C, H, W)
        b, t = x.shape[:2]
        features = self.backbone(x.flatten(0, 1)).view(b, t, -1)
        return self.fc(self.drop(features)).mean(1)  # average consensus of per-frame logits


@register_model
def tsn(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
        image_size: int | None = None, backbone: str = "resnet18", dropout: float = 0.5, drop_path_rate: float = 0.0):
    """TSN: a timm 2D backbone on each sampled frame, logits averaged; `pretrained`: the timm backbone's weights."""
    net = timm_backbone(backbone, pretrained, "tsn", drop_path_rate)
    model = TSN(net, num_classes, dropout)
    model.input_spec = _spec(net, num_frames, image_size, 8, 224)
    model.classifier_name = "fc"
    return model


class CnnRnn(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.rnn = nn.LSTM(backbone.num_features, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                           dropout=dropout if layers > 1 else 0.0)
        self.attention = nn.Linear(2 * hidden, 1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, x):  # (B, T, C, H, W)
        b, t = x.shape[:2]
        features = self.backbone(x.flatten(0, 1)).view(b, t, -1)
        states, _ = self.rnn(features)                         # (B, T, 2H)
        weights = torch.softmax(self.attention(states), dim=1)  # temporal attention over frames
        return self.fc(self.drop((weights * states).sum(1)))


@register_model
def cnn_rnn(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
            image_size: int | None = None, backbone: str = "resnet18", hidden: int = 256, rnn_layers: int = 1,
            dropout: float = 0.3, drop_path_rate: float = 0.0, pool_grid: int = 1):
    """CNN-RNN: a timm 2D backbone per frame, a bidirectional LSTM, temporal attention pooling, a classifier
    (16 frames at 144 px by default); `pretrained`: the timm backbone's weights. `pool_grid=g` keeps a g x g
    grid of features per frame instead of one global average (position-aware, for motion-direction tasks)."""
    net = timm_backbone(backbone, pretrained, "cnn_rnn", drop_path_rate, pool_grid)
    model = CnnRnn(net, num_classes, hidden, rnn_layers, dropout)
    model.input_spec = _spec(net, num_frames, image_size, 16, 144)
    model.classifier_name = "fc"
    return model
