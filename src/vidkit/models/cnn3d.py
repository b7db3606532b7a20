"""torchvision 3D CNNs (Kinetics-400 layout and normalisation): R3D, MC3, R(2+1)D, and R3D variants."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.video import resnet as tv

from vidkit.errors import VidkitError
from vidkit.models.registry import KINETICS_MEAN, KINETICS_STD, InputSpec, register_model
from vidkit.models.weights import load_matching, read_state_dict, require_path

ARCHS = {  # conv builders per stage, stem
    "r3d_18": ([tv.Conv3DSimple] * 4, "basic"),
    "mc3_18": ([tv.Conv3DSimple] + [tv.Conv3DNoTemporal] * 3, "basic"),
    "r2plus1d_18": ([tv.Conv2Plus1D] * 4, "r2plus1d"),
}


def _stem(kind: str, width: int) -> nn.Module:
    if kind == "r2plus1d":  # (2+1)D factorised stem; torchvision uses 45 mid channels at width 64
        mid = max(1, 45 * width // 64)
        return nn.Sequential(
            nn.Conv3d(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
            nn.Conv3d(mid, width, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False), nn.BatchNorm3d(width),
            nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv3d(3, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                         nn.BatchNorm3d(width), nn.ReLU(inplace=True))


class ScaledVideoResNet(tv.VideoResNet):
    """torchvision's VideoResNet with any base width (tiny variants for CPU and tests).

    Parameter names equal torchvision's, so checkpoints of the same width load unchanged.
    """

    def __init__(self, conv_makers, layers, stem: nn.Module, width: int, num_classes: int):
        nn.Module.__init__(self)
        widths = [width, width * 2, width * 4, width * 8]
        self.inplanes = width
        self.stem = stem
        self.layer1 = self._make_layer(tv.BasicBlock, conv_makers[0], widths[0], layers[0], stride=1)
        self.layer2 = self._make_layer(tv.BasicBlock, conv_makers[1], widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(tv.BasicBlock, conv_makers[2], widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(tv.BasicBlock, conv_makers[3], widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


def video_resnet(arch: str, num_classes: int, pretrained: str | None, width: int, layers,
                 name: str | None = None) -> tv.VideoResNet:
    conv_makers, stem = ARCHS[arch]
    model = ScaledVideoResNet(conv_makers, list(layers), _stem(stem, width), width, num_classes)
    if pretrained:
        path = require_path(pretrained, name or arch, f"a torchvision {arch} state_dict (.pth or .safetensors)")
        load_matching(model, read_state_dict(path), str(path))
    return model


def _finish(model: nn.Module, num_frames, image_size, default_frames=16, classifier="fc") -> nn.Module:
    model.input_spec = InputSpec(num_frames or default_frames, image_size or 112, KINETICS_MEAN, KINETICS_STD, "CTHW")
    model.classifier_name = classifier
    return model


def _with_dropout(model: tv.VideoResNet, dropout: float) -> tv.VideoResNet:
    if dropout:
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    return model


@register_model
def r3d_18(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
           image_size: int | None = None, width: int = 64, layers: tuple = (2, 2, 2, 2), dropout: float = 0.0):
    """R3D-18; `pretrained`: torchvision's r3d_18 state_dict (.pth/.safetensors), e.g. r3d_18-b3b3357e.pth."""
    model = video_resnet("r3d_18", num_classes, pretrained, width, layers)
    return _finish(_with_dropout(model, dropout), num_frames, image_size)


@register_model
def mc3_18(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
           image_size: int | None = None, width: int = 64, layers: tuple = (2, 2, 2, 2), dropout: float = 0.0):
    """MC3-18 (3D conv stem, 2D convs after); `pretrained`: torchvision's mc3_18 state_dict."""
    model = video_resnet("mc3_18", num_classes, pretrained, width, layers)
    return _finish(_with_dropout(model, dropout), num_frames, image_size)


@register_model
def r2plus1d_18(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
                image_size: int | None = None, width: int = 64, layers: tuple = (2, 2, 2, 2), dropout: float = 0.0):
    """R(2+1)D-18 (factorised space/time convs); `pretrained`: torchvision's r2plus1d_18 state_dict."""
    model = video_resnet("r2plus1d_18", num_classes, pretrained, width, layers)
    return _finish(_with_dropout(model, dropout), num_frames, image_size)


class SegmentFusion(nn.Module):
    """Late fusion: the clip is cut into `segments` along time, each goes through the shared backbone,
    and the logits are averaged."""

    def __init__(self, backbone: nn.Module, segments: int):
        super().__init__()
        self.backbone, self.segments = backbone, segments

    def forward(self, x):  # (B, C, T, H, W)
        b, c, t, h, w = x.shape
        s = self.segments
        x = x.view(b, c, s, t // s, h, w).transpose(1, 2).reshape(b * s, c, t // s, h, w)
        return self.backbone(x).view(b, s, -1).mean(1)


@register_model
def r3d_18_late_fusion(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
                       image_size: int | None = None, segments: int = 4, width: int = 64,
                       layers: tuple = (2, 2, 2, 2), dropout: float = 0.0):
    """R3D-18 over `segments` temporal segments with averaged logits (num_frames must divide by segments);
    `pretrained`: torchvision's r3d_18 state_dict."""
    frames = num_frames or 8 * segments
    if frames % segments:
        raise VidkitError(f"model_args: num_frames={frames} is not a multiple of segments={segments}")
    backbone = _with_dropout(video_resnet("r3d_18", num_classes, pretrained, width, layers, "r3d_18_late_fusion"),
                             dropout)
    return _finish(SegmentFusion(backbone, segments), frames, image_size, classifier="backbone.fc")


class InceptionHead3D(nn.Module):
    """An Inception-style 3D head: 1x1x1, 3x3x3, double 3x3x3 and pooled branches, concatenated."""

    def __init__(self, channels: int, num_outputs: int, dropout: float = 0.3):
        super().__init__()
        b = max(8, channels // 4)

        def conv(cin, cout, k):
            return nn.Sequential(nn.Conv3d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm3d(cout),
                                 nn.ReLU(inplace=True))
        self.branch1 = conv(channels, b, 1)
        self.branch3 = nn.Sequential(conv(channels, b, 1), conv(b, b, 3))
        self.branch5 = nn.Sequential(conv(channels, b, 1), conv(b, b, 3), conv(b, b, 3))
        self.branch_pool = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), conv(channels, b, 1))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * b, num_outputs)

    def forward(self, x):
        x = torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], 1)
        return self.fc(self.drop(self.pool(x).flatten(1)))


class R3DInception(nn.Module):
    def __init__(self, trunk: tv.VideoResNet, head: InceptionHead3D, single_logit: bool):
        super().__init__()
        self.stem, self.layer1, self.layer2 = trunk.stem, trunk.layer1, trunk.layer2
        self.layer3, self.layer4 = trunk.layer3, trunk.layer4
        self.head, self.single_logit = head, single_logit

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        logits = self.head(x)
        if self.single_logit:  # [0, z]: softmax gives sigmoid(z), and cross-entropy equals BCE on z
            logits = torch.cat([torch.zeros_like(logits), logits], 1)
        return logits


@register_model
def r3d_18_inception(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
                     image_size: int | None = None, single_logit: bool = False, width: int = 64,
                     layers: tuple = (2, 2, 2, 2), dropout: float = 0.3):
    """R3D-18 trunk + Inception-style 3D head, for binary real/fake tasks: `single_logit=true` makes one
    logit trained with BCE (num_classes must be 2); `pretrained`: torchvision's r3d_18 state_dict (trunk)."""
    if single_logit and num_classes != 2:
        raise VidkitError(f"model_args: single_logit needs 2 classes, got {num_classes}")
    trunk = video_resnet("r3d_18", num_classes, pretrained, width, layers, "r3d_18_inception")
    head = InceptionHead3D(width * 8, 1 if single_logit else num_classes, dropout)
    return _finish(R3DInception(trunk, head, single_logit), num_frames, image_size, classifier="head")
