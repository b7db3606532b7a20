"""torchvision 3D CNNs (Kinetics-400 layout and normalisation)."""
from __future__ import annotations

from torch import nn
from torchvision.models.video import resnet as tv

from vidkit.models.registry import KINETICS_MEAN, KINETICS_STD, InputSpec, register_model
from vidkit.models.weights import load_matching, read_state_dict, require_path


class ScaledVideoResNet(tv.VideoResNet):
    """torchvision's VideoResNet with a base width other than 64 (tiny variants for CPU and tests).

    Parameter names equal torchvision's, so width=64 checkpoints load unchanged.
    """

    def __init__(self, block, conv_makers, layers, width: int, num_classes: int):
        nn.Module.__init__(self)
        widths = [width, width * 2, width * 4, width * 8]
        self.inplanes = width
        self.stem = nn.Sequential(
            nn.Conv3d(3, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(width), nn.ReLU(inplace=True))
        self.layer1 = self._make_layer(block, conv_makers[0], widths[0], layers[0], stride=1)
        self.layer2 = self._make_layer(block, conv_makers[1], widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, conv_makers[2], widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, conv_makers[3], widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


@register_model
def r3d_18(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
           image_size: int | None = None, width: int = 64, layers: tuple = (2, 2, 2, 2), dropout: float = 0.0):
    """R3D-18; `pretrained`: a torchvision state_dict (.pth or .safetensors), e.g. r3d_18-b3b3357e.pth."""
    if width == 64:
        model = tv.VideoResNet(tv.BasicBlock, [tv.Conv3DSimple] * 4, list(layers), tv.BasicStem, num_classes)
    else:
        model = ScaledVideoResNet(tv.BasicBlock, [tv.Conv3DSimple] * 4, list(layers), width, num_classes)
    if pretrained:
        path = require_path(pretrained, "r3d_18", "a torchvision r3d_18 state_dict (.pth or .safetensors)")
        load_matching(model, read_state_dict(path), str(path))
    if dropout:
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    model.input_spec = InputSpec(num_frames or 16, image_size or 112, KINETICS_MEAN, KINETICS_STD, "CTHW")
    return model
