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


def timm_architecture(name: str, **kwargs) -> nn.Module:
    """A timm model, randomly initialised (weights are always local files)."""
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except (RuntimeError, TypeError) as e:
        raise VidkitError(f"model_args: backbone {name!r}: {e}") from None


def timm_backbone(name: str, pretrained: str | None, model_name: str, drop_path_rate: float = 0.0,
                  pool_grid: int = 1) -> nn.Module:
    """A timm model without its classifier (forward gives pooled features); local weights only."""
    backbone = timm_architecture(name, num_classes=0, drop_path_rate=drop_path_rate)
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


def temporal_shift(x: torch.Tensor, segments: int, fold_div: int) -> torch.Tensor:
    """TSM (Lin et al., 2019): of (B*T, C, H, W) features, 1/fold_div of the channels move one frame back in
    time, 1/fold_div one frame forward (zeros at the ends), the rest stay."""
    bt, c, h, w = x.shape
    x = x.view(bt // segments, segments, c, h, w)
    fold = c // fold_div
    zeros = x.new_zeros(x.shape[0], 1, fold, h, w)
    back = torch.cat([x[:, 1:, :fold], zeros], 1)             # frame t sees t + 1
    forward = torch.cat([zeros, x[:, :-1, fold:2 * fold]], 1)  # frame t sees t - 1
    return torch.cat([back, forward, x[:, :, 2 * fold:]], 2).view(bt, c, h, w)


class ShiftedConv2d(nn.Conv2d):
    """A residual block's first conv with a temporal shift before it (TSM's residual shift); same parameters and
    state_dict keys as the Conv2d it replaces, so 2D checkpoints load unchanged."""
    segments, fold_div = 8, 8

    def forward(self, x):
        return super().forward(temporal_shift(x, self.segments, self.fold_div))


def insert_shifts(backbone: nn.Module, fold_div: int) -> list[ShiftedConv2d]:
    """Shift before the first conv of every residual block (timm ResNet `conv1`, ConvNeXt `conv_dw`, ...)."""
    shifted = []
    for module in backbone.modules():
        if module is backbone or not type(module).__name__.endswith(("Block", "Bottleneck")):
            continue
        conv = next((m for m in module.children() if type(m) is nn.Conv2d), None)
        if conv is not None:
            conv.__class__, conv.fold_div = ShiftedConv2d, fold_div
            shifted.append(conv)
    if not shifted:
        raise VidkitError(f"model_args: tsm found no residual blocks in {type(backbone).__name__}")
    return shifted


class TSM(TSN):
    """TSN with temporal shifts inside the backbone: per-frame logits, average consensus."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float, fold_div: int):
        super().__init__(backbone, num_classes, dropout)
        self.shifted = insert_shifts(backbone, fold_div)

    def forward(self, x):  # (B, T, C, H, W)
        for conv in self.shifted:
            conv.segments = x.shape[1]
        return super().forward(x)


@register_model
def tsm(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
        image_size: int | None = None, backbone: str = "resnet50", fold_div: int = 8, dropout: float = 0.5,
        drop_path_rate: float = 0.0):
    """TSM: a timm ResNet/ConvNeXt-style backbone per frame with 1/fold_div of the channels shifted one frame
    each way in every residual block, average consensus (8 frames at 224 px); `pretrained`: its timm weights."""
    net = timm_backbone(backbone, pretrained, "tsm", drop_path_rate)
    model = TSM(net, num_classes, dropout, fold_div)
    model.input_spec = _spec(net, num_frames, image_size, 8, 224)
    model.classifier_name = "fc"
    return model
