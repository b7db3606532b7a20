"""Every transformers video classifier (the AutoModelForVideoClassification mapping: VideoMAE, TimeSformer,
ViViT, V-JEPA 2, VideoPrism, ...) through one builder, from a local `save_pretrained` folder or a config."""
from __future__ import annotations

import logging
from pathlib import Path

from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForVideoClassification
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES
from transformers.models.timesformer.modeling_timesformer import TimesformerSelfAttention

from vidkit.errors import VidkitError
from vidkit.files import read_json, safetensors_shapes
from vidkit.models.registry import IMAGENET_MEAN, IMAGENET_STD, InputSpec, register_model
from vidkit.models.weights import require_path

log = logging.getLogger(__name__)

# registered name -> transformers model_type; `hf_video` takes any folder whose model_type is in the mapping
FAMILIES = {"videomae": "videomae", "timesformer": "timesformer", "vivit": "vivit", "vjepa2": "vjepa2",
            "videoprism": "videoprism_vision_model"}
# without a preprocessor file: (mean, std, rescale_factor, offset) of each family's released checkpoints
PREPROCESS = {"vivit": ((0.5,) * 3, (0.5,) * 3, 1 / 127.5, 1.0),  # [-1, 1], then transformers' 0.5/0.5 normalise
              "videoprism_vision_model": ((0.0,) * 3, (1.0,) * 3, 1 / 255, 0.0)}  # [0, 1], no normalise
# how a checkpoint runs at another frame count / size: rebuilt sinusoids, RoPE read from the config, or the
# model's own interpolation in forward; anything else keeps the checkpoint's input (a clear error otherwise)
RESIZE = {"videomae": "sinusoid", "vjepa2": "config", "timesformer": "native", "videoprism_vision_model": "interpolate"}
UNUSED = {"vjepa2": "vjepa2.predictor"}  # the JEPA predictor: pretraining only (classification skips it)


class VideoClassifier(nn.Module):
    """A transformers classifier as forward(clips) -> logits; the model's input name (`pixel_values` or
    `pixel_values_videos`) and forward switches stay inside."""

    def __init__(self, hf_model: nn.Module, **forward_kwargs):
        super().__init__()
        self.hf, self.input_name, self.forward_kwargs = hf_model, hf_model.main_input_name, forward_kwargs

    def forward(self, clips):
        logits = self.hf(**{self.input_name: clips}, **self.forward_kwargs).logits
        return logits.flatten(1)  # VideoPrism returns (B, 1, classes)


LogitsOnly = VideoClassifier  # the old name


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


def _keys(config) -> tuple[str, str]:
    """The config's names for frames and size (V-JEPA 2: frames_per_clip, crop_size)."""
    return ("frames_per_clip" if hasattr(config, "frames_per_clip") else "num_frames",
            "crop_size" if hasattr(config, "crop_size") else "image_size")


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def _fresh_config(name: str, model_type: str | None, num_classes: int, num_frames, image_size, config_args: dict):
    if model_type not in MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES:
        raise VidkitError(f"model_args: {name} needs model_type= one of "
                          f"{', '.join(MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES)} (or a pretrained folder)")
    config_cls = CONFIG_MAPPING[model_type]
    known = set(config_cls().to_dict())
    unknown = sorted(k for k in config_args if k not in known)
    if unknown:
        raise VidkitError(f"model_args: {name} ({config_cls.__name__}) does not take {', '.join(unknown)}")
    frames_key, size_key = _keys(config_cls())
    sizes = {key: value for key, value in ((frames_key, num_frames), (size_key, image_size)) if value}
    return _set_args(config_cls, num_classes, {**config_args, **sizes})


def _folder_config(name: str, path: Path, num_classes: int, num_frames, image_size, config_args: dict):
    if not (path / "config.json").exists():
        raise VidkitError(f"pretrained: {path} has no config.json; save the model with save_pretrained()")
    read_json(path / "config.json", "model config (save_pretrained's config.json)", keys={"model_type": str})
    _check_weights(path)
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    # sizes the folder already has are no conflict (a config's model_args fine-tuning its own pretraining)
    config_args = {k: v for k, v in config_args.items() if getattr(config, k, None) != v}
    if config.model_type not in MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES:
        raise VidkitError(f"pretrained: {path}/config.json: model_type {config.model_type!r} is not a transformers "
                          f"video classifier ({', '.join(MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES)})")
    if config_args:
        raise VidkitError(f"model_args: {', '.join(config_args)}: the size of {name} comes from {path}/config.json")
    config.num_labels = num_classes
    frames_key, size_key = _keys(config)
    if RESIZE.get(config.model_type) == "config":  # RoPE: no learned table, the grid comes from the config
        for key, value in ((frames_key, num_frames), (size_key, image_size)):
            setattr(config, key, value or getattr(config, key))
    return config


def _check_weights(path: Path) -> None:
    """A save_pretrained folder's weights are there and model.safetensors is whole (its header read alone), so a
    cut-short or overwritten file is one line naming it, not a transformers traceback."""
    weights = path / "model.safetensors"
    if weights.exists():
        safetensors_shapes(weights, "pretrained weights")
    elif not any((path / name).exists() for name in ("model.safetensors.index.json", "pytorch_model.bin",
                                                     "pytorch_model.bin.index.json")):
        raise VidkitError(f"{weights}: not found; {path} has a config.json but no weights")


def _normalisation(path: Path | None, model_type: str) -> tuple[tuple, tuple]:
    """mean/std on [0, 1] pixels equal to the checkpoint's preprocessing (rescale, offset, normalise)."""
    mean, std, rescale, offset = PREPROCESS.get(model_type, (IMAGENET_MEAN, IMAGENET_STD, 1 / 255, 0.0))
    for file in ("video_preprocessor_config.json", "preprocessor_config.json"):
        if path and (path / file).is_file():
            pre = read_json(path / file, "preprocessor config")
            normalise = pre.get("do_normalize", True)
            mean = tuple(pre.get("image_mean", mean)) if normalise else (0.0,) * 3
            std = tuple(pre.get("image_std", std)) if normalise else (1.0,) * 3
            rescale = pre.get("rescale_factor", 1 / 255) if pre.get("do_rescale", True) else 1.0
            vivit = str(pre.get("video_processor_type", pre.get("image_processor_type"))).startswith("Vivit")
            offset = 1.0 if pre.get("offset", vivit) else 0.0  # ViViT's video processor always offsets
            break
    scale = 255 * rescale  # pixel/255 * scale - offset, then (. - m) / s  ==  (pixel/255 - M) / S
    return tuple((offset + m) / scale for m in mean), tuple(s / scale for s in std)


def _set_args(config_cls, num_classes: int, args: dict):
    """The config with `args`; a float where the config declares an int (TimeSformer's drop_path_rate) is set
    past its strict validator."""
    floats = {k: float(v) for k, v in args.items() if isinstance(v, float)}
    try:
        return config_cls(num_labels=num_classes, **args)
    except (TypeError, ValueError):
        config = config_cls(num_labels=num_classes, **{k: v for k, v in args.items() if k not in floats})
    for key, value in floats.items():
        object.__setattr__(config, key, value)
    return config


def _attention(model_type: str, requested: str) -> str:
    import transformers
    model_cls = getattr(transformers, MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES[model_type])
    if requested == "sdpa" and not model_cls._supports_sdpa:
        if model_type != "timesformer":  # TimeSformer gets vidkit's own SDPA attention below
            log.info("%s: transformers offers no SDPA attention for it (VideoPrism: logit soft-capping); "
                     "eager attention", model_cls.__name__)
        return "eager"
    return requested


def _resize(model: VideoClassifier, path, model_type: str, num_frames, image_size) -> tuple[int, int]:
    """The frames and size the model runs at; a checkpoint follows `num_frames`/`image_size` where its
    position encoding allows (see RESIZE), else a clear error."""
    config = model.hf.config
    frames_key, size_key = _keys(config)
    native = (int(getattr(config, frames_key)), int(_first(getattr(config, size_key))))
    wanted = (num_frames or native[0], image_size or native[1])
    how = RESIZE.get(model_type)
    if not path or wanted == native or how in ("config", "native"):
        return wanted
    if how == "sinusoid":
        _resized_videomae(model, *wanted)
    elif how == "interpolate":
        model.forward_kwargs["interpolate_pos_encoding"] = True
    else:
        raise VidkitError(f"pretrained: {path} is a {model_type} for {native[0]} frames x {native[1]} px; its "
                          f"learned position table does not follow num_frames={wanted[0]}, image_size={wanted[1]}")
    return wanted


def _resized_videomae(model: VideoClassifier, num_frames: int, image_size: int) -> None:
    """Rebuild the sinusoid table for another token count (VideoMAE keeps it as a plain tensor)."""
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table
    embeddings = model.hf.videomae.embeddings
    cfg = model.hf.config
    cfg.num_frames, cfg.image_size = num_frames, image_size
    n = (cfg.num_frames // cfg.tubelet_size) * (cfg.image_size // cfg.patch_size) ** 2
    embeddings.patch_embeddings.num_frames, embeddings.patch_embeddings.image_size = cfg.num_frames, (cfg.image_size,) * 2
    embeddings.patch_embeddings.num_patches = embeddings.num_patches = n
    embeddings.position_embeddings = get_sinusoid_encoding_table(n, cfg.hidden_size)


def _load(name: str, pretrained: str | None, model_type: str | None, num_classes: int, num_frames, image_size,
          config_args: dict):
    """(config, checkpoint folder or None)."""
    if not pretrained:
        return _fresh_config(name, model_type, num_classes, num_frames, image_size, config_args), None
    path = Path(require_path(pretrained, name, "a transformers save_pretrained folder (config.json, "
                             "model.safetensors)", folder=True))
    training_args = {k: v for k, v in config_args.items() if "drop" in k}  # dropout / drop-path rates
    config = _folder_config(name, path, num_classes, num_frames, image_size,
                            {k: v for k, v in config_args.items() if k not in training_args})
    if model_type and config.model_type != model_type:
        raise VidkitError(f"pretrained: {path}/config.json holds a {config.model_type}, not a {model_type} ({name})")
    for key, value in training_args.items():  # set past strict validators (TimeSformer declares an int)
        if not hasattr(config, key):
            raise VidkitError(f"model_args: {name} ({type(config).__name__}) does not take {key}")
        object.__setattr__(config, key, value)
    return config, path


def build_hf(name: str, num_classes: int, pretrained: str | None, num_frames, image_size, model_type: str | None,
             attn_implementation: str = "sdpa", **config_args) -> VideoClassifier:
    config, path = _load(name, pretrained, model_type, num_classes, num_frames, image_size, config_args)
    attn = _attention(config.model_type, attn_implementation)
    try:
        if path:
            hf = AutoModelForVideoClassification.from_pretrained(
                str(path), config=config, ignore_mismatched_sizes=True, local_files_only=True, attn_implementation=attn)
        else:
            hf = AutoModelForVideoClassification.from_config(config, attn_implementation=attn)
    except (ValueError, ImportError) as e:
        raise VidkitError(f"model_args: {name}: {str(e).splitlines()[0]}") from None
    if config.model_type in UNUSED:
        parent, _, child = UNUSED[config.model_type].rpartition(".")
        delattr(hf.get_submodule(parent), child)
    model = VideoClassifier(hf)
    frames, size = _resize(model, path, config.model_type, num_frames, image_size)
    if config.model_type == "timesformer" and attn_implementation == "sdpa":
        _timesformer_sdpa(hf)
    model.input_spec = InputSpec(frames, size, *_normalisation(path, config.model_type), "TCHW")
    model.classifier_name = "hf.classifier"
    return model


def _family(name: str, model_type: str | None, doc: str):
    def builder(num_classes: int, pretrained: str | None = None, num_frames: int | None = None,
                image_size: int | None = None, attn_implementation: str = "sdpa", **config_args):
        kind = config_args.pop("model_type", None) if model_type is None else model_type
        return build_hf(name, num_classes, pretrained, num_frames, image_size, kind, attn_implementation,
                        **config_args)
    builder.__name__, builder.__qualname__, builder.__doc__ = name, name, doc
    return register_model(builder)


_SIZES = ("Sizes through model_args (the config's own keys, e.g. hidden_size, num_hidden_layers); the head is "
          "resized to num_classes; frames, size and mean/std come from the checkpoint.")
_family("videomae", "videomae", "VideoMAE; `pretrained`: a save_pretrained folder, e.g. of "
        "MCG-NJU/videomae-base-finetuned-kinetics (CC-BY-NC 4.0). Fixed sinusoids: frames/size may change. " + _SIZES)
_family("timesformer", "timesformer", "TimeSformer (divided space-time attention, SDPA by vidkit); `pretrained`: "
        "e.g. facebook/timesformer-base-finetuned-k400 (CC-BY-NC 4.0), 8 x 224. " + _SIZES)
_family("vivit", "vivit", "ViViT (factorised encoder); `pretrained`: e.g. google/vivit-b-16x2-kinetics400, "
        "32 x 224; its learned position table keeps the checkpoint's frames and size. " + _SIZES)
_family("vjepa2", "vjepa2", "V-JEPA 2 (3D RoPE, attentive pooler; the JEPA predictor is dropped); `pretrained`: "
        "e.g. facebook/vjepa2-vitl-fpc16-256-ssv2 (MIT), any frame count and size. " + _SIZES)
_family("videoprism", "videoprism_vision_model", "VideoPrism (spatial then temporal layers, eager attention: "
        "transformers has no SDPA for its logit soft-capping); `pretrained`: a VideoPrismForVideoClassification "
        "folder; position tables interpolated to other frames/sizes. " + _SIZES)
_family("hf_video", None, "Any transformers video classifier: `pretrained`: its save_pretrained folder "
        "(model_type from config.json), or model_args.model_type=<" + "|".join(MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES)
        + "> and sizes for a fresh one.")
