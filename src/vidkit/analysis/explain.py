"""Saliency over the sampled frames: attention rollout (Abnar & Zuidema, 2020) for transformers models, Grad-CAM
(Selvaraju et al., 2017) on the last convolutional stage for CNNs, found generically, and input-gradient saliency
for anything else. `vidkit explain run=RUN video=PATH [class=NAME] [fold=k] [out=PNG]`.

A multi-label run's probabilities are per-class sigmoids; without class=, each predicted class (p >= 0.5, else
the most probable one) gets its own heat-map row in the PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vidkit.data import normalize
from vidkit.data.labels import is_multilabel
from vidkit.choices import check_choice
from vidkit.errors import VidkitError
from vidkit.files import load_checkpoint, save_figure
from vidkit.rundir import RunDir


def _transformers_model(model: nn.Module):
    """The outermost transformers PreTrainedModel inside `model`, if any."""
    from transformers import PreTrainedModel
    return next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)


def _patch_grid(hf, size: int) -> int:
    patch = getattr(hf.config, "patch_size", None)
    patch = patch[-1] if isinstance(patch, (list, tuple)) else patch
    return (size // patch) ** 2 if patch else 0


def rollout(model: nn.Module, x: torch.Tensor, size: int) -> np.ndarray | None:
    """Attention rollout of a transformers model on one clip: (t, h, w) token relevance, or None.

    Layers whose attention has the last layer's shape are rolled out: (I + A) / 2 per layer, heads averaged,
    rows renormalised, multiplied from the first layer on. Groups (TimeSformer's per-frame spatial attention:
    one group per frame) are rolled out separately and stacked in time. Relevance: the class token's row, or
    the mean row when the model pools all tokens (VideoMAE)."""
    hf = _transformers_model(model)
    spatial = _patch_grid(hf, size) if hf is not None else 0
    if not spatial:
        return None
    attentions = _attentions(model, hf, x)
    if not attentions:
        return None
    last = attentions[-1].shape
    layers = [a.float().mean(1) for a in attentions if a.shape == last]  # (groups, N, N)
    n = last[-1]
    if n < spatial:
        return None
    eye = torch.eye(n)
    result = eye.expand(len(layers[0]), n, n)
    for a in layers:
        a = (a + eye) / 2
        result = (a / a.sum(-1, keepdim=True)) @ result
    cls = n % spatial
    relevance = result[:, 0, cls:] if cls else result.mean(1)
    side = int(round(spatial ** 0.5))
    return relevance.reshape(-1, side, side).numpy()  # groups x (N // spatial) steps, in time order


def _attentions(model: nn.Module, hf, x: torch.Tensor):
    """The attention maps of `hf` while the whole `model` runs on x (its own input handling included): eager
    attention (fused kernels return no weights) and output_attentions switched on for the call only."""
    seen = []
    previous, asked = hf.config._attn_implementation, hf.config.output_attentions
    _attention_kernel(hf, "eager")
    hf.config.output_attentions = True
    handle = hf.register_forward_hook(lambda module, _, out: seen.append(getattr(out, "attentions", None)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
        hf.config.output_attentions = asked
        _attention_kernel(hf, previous)
    return seen[-1] if seen else None


def _attention_kernel(hf, name: str | None) -> None:
    try:
        hf.set_attn_implementation(name or "eager")
    except (ValueError, ImportError, AttributeError):  # a model without the switch: the config decides
        hf.config._attn_implementation = name


def _has_conv(module: nn.Module) -> nn.Module | None:
    convs = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    return convs[-1] if convs else None


def conv_stage(model: nn.Module, x: torch.Tensor, num_frames: int) -> str | None:
    """The module that Grad-CAM looks at: of those that hold a convolution and return a feature map in a CNN
    layout, (1, C, t, h, w) or, for per-frame 2D backbones, (T, C, h, w) (C its last conv's channels, h, w > 1),
    the least nested, and of those the last to run."""
    order = []

    def record(name):
        def hook(module, _, out):
            conv = _has_conv(module)
            if conv is None or not torch.is_tensor(out) or out.shape[-1] < 2 or out.shape[-2] < 2:
                return
            batch = {5: 1, 4: num_frames}.get(out.ndim)
            if out.shape[0] == batch and out.shape[1] == conv.out_channels:
                order.append(name)
        return hook
    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    # the outermost such module, the last of those: a whole stage (layer4), not a branch inside a head
    return max(enumerate(order), key=lambda io: (-io[1].count("."), io[0]))[1] if order else None


def gradcam(model: nn.Module, x: torch.Tensor, target: int, num_frames: int) -> np.ndarray | None:
    """Grad-CAM on `conv_stage`'s output(s) for class `target`: (t, h, w), every call of the stage (late
    fusion runs its backbone once per segment) in time order."""
    name = conv_stage(model, x, num_frames)
    if name is None:
        return None
    acts = []

    def keep(module, _, out):
        out.retain_grad()
        acts.append(out)
    handle = dict(model.named_modules())[name].register_forward_hook(keep)
    try:
        _backward(model, x, target)
    finally:
        handle.remove()
    maps = []
    for a in acts:
        a5 = a if a.ndim == 5 else a.transpose(0, 1).unsqueeze(0)  # (T, C, h, w) -> (1, C, T, h, w)
        g5 = a.grad if a.ndim == 5 else a.grad.transpose(0, 1).unsqueeze(0)
        weights = g5.mean(dim=(2, 3, 4), keepdim=True)
        cam = (weights * a5).sum(1)[0]
        maps.append(F.relu(cam) if (cam > 0).any() else cam.abs())  # no positive evidence: show the negative
    return torch.cat(maps).detach().float().numpy()


def input_gradient(model: nn.Module, x: torch.Tensor, target: int, layout: str) -> np.ndarray:
    """|d logit / d input| summed over channels: (T, H, W), for models with neither attention nor convolutions."""
    x = x.clone().requires_grad_(True)
    _backward(model, x, target)
    g = x.grad.abs()[0]
    return (g.sum(0) if layout == "CTHW" else g.sum(1)).numpy()


def _backward(model: nn.Module, x: torch.Tensor, target: int) -> None:
    model.zero_grad()
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN's RNN has no backward in eval mode (cnn_rnn)
        model(x)[0, target].backward()


def saliency(model: nn.Module, clip: torch.Tensor, spec, target: int) -> tuple[np.ndarray, str]:
    """Maps (T, size, size) in [0, 1] for one uint8 clip (T, H, W, C) and the method that made them."""
    model.eval()
    x = normalize(clip[None], spec.mean, spec.std, spec.layout)
    maps, method = rollout(model, x, spec.size), "attention rollout"
    if maps is None:
        maps, method = gradcam(model, x, target, spec.num_frames), "Grad-CAM"
    if maps is None:
        maps, method = input_gradient(model, x, target, spec.layout), "input gradient"
    up = F.interpolate(torch.as_tensor(maps, dtype=torch.float32)[None, None], size=(spec.num_frames, spec.size,
                       spec.size), mode="trilinear", align_corners=False)[0, 0].numpy()
    up -= up.min()
    if up.max() <= 0:
        raise VidkitError(f"saliency: the {method} map is constant (the model ignores its input?)")
    return up / up.max(), method


def render(frames: np.ndarray, maps, top: list[tuple[str, float]], title: str, path: Path) -> Path:
    """A PNG: the sampled frames (top row) and the same frames with the heat map over them (bottom row); `maps`
    a list of (row label, maps): one heat-map row each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t, rows = len(frames), maps if isinstance(maps, list) else [("", maps)]
    fig, axes = plt.subplots(1 + len(rows), t, figsize=(1.6 * t, 1.95 * (1 + len(rows))), squeeze=False)
    for i in range(t):
        axes[0, i].imshow(frames[i])
        for r, (label, heat) in enumerate(rows, 1):
            axes[r, i].imshow(frames[i])
            axes[r, i].imshow(heat[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        for ax in axes[:, i]:
            ax.axis("off")
    for r, (label, _) in enumerate(rows, 1):
        if label:
            axes[r, 0].set_title(label, fontsize=8, loc="left")
    fig.suptitle(title + "\n" + "   ".join(f"{c} {p:.3f}" for c, p in top), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=80)
    plt.close(fig)
    return path


def explain_video(run: str | Path, video: str | Path, class_name: str | None = None, fold: int = 0,
                  out: str | Path | None = None, loaded: tuple | None = None, frame: int | None = None,
                  time: float | None = None):
    """`explain`: the saliency PNG of one video for one fold's checkpoint of a run (default
    <run>/explain/<video id>.png); returns (png, maps, method, frames). `loaded`: `load_fold_model`'s.
    A spotting run: the frames that drove one frame's score (`frame=`/`time=`; vidkit.analysis.spot_explain)."""
    from vidkit.data.index import media_row
    run = Path(run)
    if loaded is None and RunDir(run).meta().get("task") == "spotting":
        from vidkit.analysis.spot_explain import explain_spotting
        return explain_spotting(run, video, class_name, fold, out, frame, time)
    model, classes, cfg = loaded or load_fold_model(run, fold)
    row = media_row(video)
    clip = first_view(cfg, model.input_spec, row)
    spec = model.input_spec
    multilabel = getattr(model, "multilabel", False)
    with torch.no_grad():
        logits = model.eval()(normalize(clip[None], spec.mean, spec.std, spec.layout)).float()[0]
    probs = logits.sigmoid() if multilabel else logits.softmax(-1)
    if class_name is not None:
        check_choice("class", class_name, classes)  # the run's classes
    targets = explained_classes(probs, classes, class_name, multilabel)
    rows = [(f"{classes[k]} p={float(probs[k]):.3f}", *saliency(model, clip, spec, k)) for k in targets]
    maps, method = rows[0][1], rows[0][2]
    top = sorted(zip(classes, probs.tolist()), key=lambda cp: -cp[1])[:5]
    path = Path(out) if out else RunDir(run).explain_png(row["video_id"])
    what = f"class {classes[targets[0]]} (fold {fold}, p={float(probs[targets[0]]):.3f})" if len(targets) == 1 \
        else f"each predicted class (fold {fold})"
    render(clip.numpy(), [(label, m) for label, m, _ in rows] if len(rows) > 1 else maps, top,
           f"{row['video_id']}: {method} for {what}", path)
    return path, maps, method, clip.numpy()


def explained_classes(probs, classes: list[str], class_name: str | None, multilabel: bool) -> list[int]:
    """The class indices to explain: the one asked for; else the predicted one, or (multi-label) every class
    with p >= 0.5, most probable first (none: the most probable)."""
    if class_name is not None:
        return [classes.index(class_name)]
    if not multilabel:
        return [int(probs.argmax())]
    order = [int(k) for k in probs.argsort(descending=True)]
    return [k for k in order if probs[k] >= 0.5] or order[:1]


def load_fold_model(run: Path, fold: int = 0):
    """(model, classes, config) of one checkpoint of a run: fold<k>/, else full/."""
    from vidkit.engine.runtime import build_model
    cfg, classes, _ = RunDir(run).trained()
    weights = next((p for p in (RunDir(run).checkpoint(fold), RunDir(run).checkpoint(-1)) if p.is_file()), None)
    if weights is None:
        raise VidkitError(f"{run}: no {RunDir(run).checkpoint(fold).relative_to(run)}")
    model = build_model(cfg, len(classes))
    load_checkpoint(model, weights)
    model.multilabel = is_multilabel(RunDir(run).meta())  # sigmoid, not softmax
    return model.eval(), classes, cfg


def first_view(cfg, spec, row: dict) -> torch.Tensor:
    """The clip validation sees (first TTA clip, centre crop): uint8 (T, H, W, C)."""
    import pandas as pd

    from vidkit.engine.tta import TTASpec, eval_dataset
    return eval_dataset(cfg, spec, pd.DataFrame([row]), tta=TTASpec())[0]["video"][0]
