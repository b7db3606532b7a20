"""VideoMAE (transformers) for video classification, from a local folder or from a config."""
from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import VideoMAEConfig, VideoMAEForVideoClassification

from vidkit.models.registry import IMAGENET_MEAN, IMAGENET_STD, InputSpec, register_model
from vidkit.errors import VidkitError
from vidkit.models.weights import require_path


class LogitsOnly(nn.Module):
    """Wraps a transformers classifier so forward(clips) returns the logits tensor."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(self, pixel_values):
        return self.hf(pixel_values=pixel_values).logits


@register_model
def videomae(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
             image_size: int | None = None, hidden_size: int = 768, num_hidden_layers: int = 12,
             num_attention_heads: int = 12, intermediate_size: int = 3072, patch_size: int = 16,
             tubelet_size: int = 2, initializer_range: float = 0.02, attn_implementation: str = "sdpa"):
    """VideoMAE; `pretrained`: a `from_pretrained` folder (config.json + model.safetensors), e.g. a
    saved MCG-NJU/videomae-base-finetuned-kinetics. The head is resized to `num_classes`."""
    if pretrained:
        path = require_path(pretrained, "videomae", "a transformers from_pretrained folder (config.json, model.safetensors)")
        if not (Path(path) / "config.json").is_file():
            raise VidkitError(f"pretrained: {path} has no config.json; save the model with save_pretrained()")
        # positional embeddings are fixed sinusoids, so frames and size may differ from the checkpoint's
        resize = {k: v for k, v in (("num_frames", num_frames), ("image_size", image_size)) if v}
        hf = VideoMAEForVideoClassification.from_pretrained(
            str(path), num_labels=num_classes, ignore_mismatched_sizes=True, local_files_only=True,
            attn_implementation=attn_implementation, **resize)
    else:
        config = VideoMAEConfig(
            image_size=image_size or 224, num_frames=num_frames or 16, patch_size=patch_size,
            tubelet_size=tubelet_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
            initializer_range=initializer_range, num_labels=num_classes)
        config._attn_implementation = attn_implementation
        hf = VideoMAEForVideoClassification(config)
    model = LogitsOnly(hf)
    cfg = hf.config
    model.input_spec = InputSpec(cfg.num_frames, cfg.image_size, IMAGENET_MEAN, IMAGENET_STD, "TCHW")
    return model
