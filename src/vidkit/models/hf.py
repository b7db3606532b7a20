"""transformers video classifiers (VideoMAE, TimeSformer), from a local `from_pretrained` folder or a config."""
from __future__ import annotations

from pathlib import Path

from torch import nn
from torch.nn import functional as F
from transformers import (TimesformerConfig, TimesformerForVideoClassification, VideoMAEConfig,
                          VideoMAEForVideoClassification)
from transformers.models.timesformer.modeling_timesformer import TimesformerSelfAttention

from vidkit.errors import VidkitError
from vidkit.models.registry import IMAGENET_MEAN, IMAGENET_STD, InputSpec, register_model
from vidkit.models.weights import require_path


class LogitsOnly(nn.Module):
    """Wraps a transformers classifier so forward(clips) returns the logits tensor."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(self, pixel_values):
        return self.hf(pixel_values=pixel_values).logits


class TimesformerSdpaAttention(TimesformerSelfAttention):
    """transformers' TimeSformer attention computes softmax(QK^T)V by hand; the same weights through
    `scaled_dot_product_attention` (flash / memory-efficient kernels on a GPU). Attention maps, when asked
    for, come from the original."""

    def forward(self, hidden_states, output_attentions: bool = False):
        if output_attentions:
            return super().forward(hidden_states, output_attentions)
        b, n, c = hidden_states.shape
        q, k, v = self.qkv(hidden_states).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0,
                                             scale=self.scale)
        return (out.transpose(1, 2).reshape(b, n, c),)


def _timesformer_sdpa(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if type(module) is TimesformerSelfAttention:
            module.__class__ = TimesformerSdpaAttention  # same parameters and state_dict keys
    return model


def _config(name: str, config_cls, num_classes: int, pretrained: str | None, num_frames, image_size,
            config_kwargs: dict, drop_path_rate: float, default_frames: int):
    """The model's config: the checkpoint's (head resized) or a fresh one; returns (config, checkpoint folder)."""
    path = None
    if pretrained:
        path = require_path(pretrained, name, "a transformers save_pretrained folder (config.json, model.safetensors)",
                            folder=True)
        if not (Path(path) / "config.json").is_file():
            raise VidkitError(f"pretrained: {path} has no config.json; save the model with save_pretrained()")
        config = config_cls.from_pretrained(str(path), local_files_only=True)
        config.num_labels = num_classes
    else:
        config = config_cls(image_size=image_size or 224, num_frames=num_frames or default_frames,
                            num_labels=num_classes, **config_kwargs)
    if drop_path_rate:  # TimesformerConfig declares it an int: set the float past its strict validator
        object.__setattr__(config, "drop_path_rate", float(drop_path_rate))
    return config, path


def _build(name: str, config_cls, model_cls, num_classes: int, pretrained: str | None, num_frames, image_size,
           config_kwargs: dict, attn_implementation: str | None = None, drop_path_rate: float = 0.0,
           default_frames: int = 16) -> nn.Module:
    config, path = _config(name, config_cls, num_classes, pretrained, num_frames, image_size, config_kwargs,
                           drop_path_rate, default_frames)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if path:
        hf = model_cls.from_pretrained(str(path), config=config, ignore_mismatched_sizes=True, local_files_only=True,
                                       **extra)
    else:
        if attn_implementation:
            config._attn_implementation = attn_implementation
        hf = model_cls(config)
    return _wrap(hf, num_frames, image_size, pretrained, name)


def _wrap(hf: nn.Module, num_frames, image_size, pretrained, name: str) -> nn.Module:
    model = LogitsOnly(hf)
    # VideoMAE's position embeddings are fixed sinusoids computed from the config, TimeSformer interpolates its
    # learned ones in forward: either way a checkpoint also runs at other frame counts and sizes
    if pretrained and (num_frames or image_size) and name == "videomae":
        model = _resized_videomae(model, num_frames, image_size)
    frames, size = num_frames or hf.config.num_frames, image_size or hf.config.image_size
    model.input_spec = InputSpec(frames, size, IMAGENET_MEAN, IMAGENET_STD, "TCHW")
    model.classifier_name = "hf.classifier"
    return model


def _resized_videomae(model: LogitsOnly, num_frames, image_size) -> LogitsOnly:
    """Rebuild the sinusoid table for another token count (VideoMAE keeps it as a plain tensor)."""
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table
    embeddings = model.hf.videomae.embeddings
    cfg = model.hf.config
    cfg.num_frames, cfg.image_size = num_frames or cfg.num_frames, image_size or cfg.image_size
    n = (cfg.num_frames // cfg.tubelet_size) * (cfg.image_size // cfg.patch_size) ** 2
    embeddings.patch_embeddings.num_frames, embeddings.patch_embeddings.image_size = cfg.num_frames, (cfg.image_size,) * 2
    embeddings.patch_embeddings.num_patches = embeddings.num_patches = n
    embeddings.position_embeddings = get_sinusoid_encoding_table(n, cfg.hidden_size)
    return model


@register_model
def videomae(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
             image_size: int | None = None, hidden_size: int = 768, num_hidden_layers: int = 12,
             num_attention_heads: int = 12, intermediate_size: int = 3072, patch_size: int = 16,
             tubelet_size: int = 2, initializer_range: float = 0.02, drop_path_rate: float = 0.0,
             attn_implementation: str = "sdpa"):
    """VideoMAE; `pretrained`: a `save_pretrained` folder, e.g. of MCG-NJU/videomae-base-finetuned-kinetics.
    The head is resized to `num_classes`; positional embeddings are fixed sinusoids, so frames/size may change."""
    if drop_path_rate:
        raise VidkitError("model_args: drop_path_rate is not supported by transformers' VideoMAE "
                          "(use timesformer or a timm backbone)")
    config = dict(patch_size=patch_size, tubelet_size=tubelet_size, hidden_size=hidden_size,
                  num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                  intermediate_size=intermediate_size, initializer_range=initializer_range)
    return _build("videomae", VideoMAEConfig, VideoMAEForVideoClassification, num_classes, pretrained, num_frames,
                  image_size, config, attn_implementation)


@register_model
def timesformer(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
                image_size: int | None = None, hidden_size: int = 768, num_hidden_layers: int = 12,
                num_attention_heads: int = 12, intermediate_size: int = 3072, patch_size: int = 16,
                initializer_range: float = 0.02, drop_path_rate: float = 0.0,
                attention_type: str = "divided_space_time", attn_implementation: str = "sdpa"):
    """TimeSformer (divided space-time attention); `pretrained`: a `save_pretrained` folder, e.g. of
    facebook/timesformer-base-finetuned-k400 (8 frames at 224 px). The head is resized to `num_classes`.
    `attn_implementation`: sdpa (torch's fused attention) or eager (transformers' own)."""
    if attn_implementation not in ("sdpa", "eager"):
        raise VidkitError(f"model_args: attn_implementation {attn_implementation!r} is not one of sdpa, eager")
    config = dict(patch_size=patch_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                  num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                  initializer_range=initializer_range, attention_type=attention_type)
    model = _build("timesformer", TimesformerConfig, TimesformerForVideoClassification, num_classes, pretrained,
                   num_frames, image_size, config, drop_path_rate=drop_path_rate, default_frames=8)
    return _timesformer_sdpa(model) if attn_implementation == "sdpa" else model
