"""Masked-autoencoding pretraining on the competition's own videos (VideoMAE, Tong et al. 2022): transformers'
`VideoMAEForPreTraining` with tube masking (one random spatial mask shared by every tubelet in time, `mask_ratio`
of the patches hidden) and normalised-pixel targets (each masked patch's pixels standardised by its own mean and
std, `norm_pix_loss`). It trains through the same loop as classification (`vidkit.engine.train`: Accelerate, AMP,
accumulation, several processes, mid-epoch resume, max_time, the frame cache, progress bars): the model is
wrapped so that forward(clips) returns the reconstruction loss, and its masks come from a counter saved with
the resumable state, so a resumed run draws the masks an uninterrupted one would."""
from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from vidkit.config import Competition, Config
from vidkit.data import normalize
from vidkit.data.epochs import EpochSampler
from vidkit.engine.optim import is_plateau, make_scheduler, param_groups
from vidkit.engine.runtime import bare, to_device
from vidkit.engine.train import Fold, Progress, fit, loader, resume_or_restart, train_dataset
from vidkit.errors import VidkitError
from vidkit.models.registry import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from vidkit.models.weights import require_path
from vidkit.rundir import weights_file

log = logging.getLogger(__name__)
FAMILIES = ("videomae", "hf_video")  # registered models whose encoder a VideoMAE pretraining folder fills
SKIP = ("model_type", "attn_implementation")  # model_args of the classifier builders, not of VideoMAEConfig


class TubeMasks:
    """Tube masks drawn from (seed, process, draw count): the count is all the state, saved with the run
    (`accelerator.register_for_checkpointing`), so masks after a resume are those of an uninterrupted run."""

    def __init__(self, ratio: float, frames: int, side: int, seed: int, rank: int = 0):
        if not 0 < ratio < 1:
            raise VidkitError(f"mask_ratio: must be between 0 and 1 (exclusive), got {ratio}")
        self.ratio, self.frames, self.side, self.seed, self.rank, self.drawn = ratio, frames, side, seed, rank, 0
        self.hidden = min(side * side - 1, max(1, round(ratio * side * side)))

    def draw(self, batch: int) -> torch.Tensor:
        """(batch, frames * side**2) booleans, True = hidden: the same spatial patches hidden in every tubelet."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank * 10_007 + self.drawn)
        self.drawn += 1
        order = torch.rand(batch, self.side * self.side, generator=g).argsort(1)
        spatial = torch.zeros(batch, self.side * self.side, dtype=torch.bool)
        spatial.scatter_(1, order[:, :self.hidden], True)
        return spatial.repeat(1, self.frames)  # token order of VideoMAE's patch embedding: time, then rows

    def state_dict(self) -> dict:
        return {"drawn": self.drawn}

    def load_state_dict(self, state: dict) -> None:
        self.drawn = int(state["drawn"])


class MaskedAutoencoder(nn.Module):
    """forward(normalised clips (B, T, C, H, W)) -> the reconstruction loss of freshly masked clips."""

    def __init__(self, hf: nn.Module, masks: TubeMasks):
        super().__init__()
        self.hf, self.masks = hf, masks
        c = hf.config
        self.input_spec = InputSpec(c.num_frames, c.image_size, IMAGENET_MEAN, IMAGENET_STD, "TCHW")

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        mask = self.masks.draw(len(clips)).to(clips.device)
        return self.hf(pixel_values=clips, bool_masked_pos=mask).loss


def decoder_args(encoder: dict) -> dict:
    """The decoder VideoMAE pairs with an encoder (ViT-B 768 wide, 12 blocks: 384 wide, 4 blocks), scaled to
    the encoder when model_args do not size it."""
    from transformers import VideoMAEConfig
    base = VideoMAEConfig()
    hidden = encoder.get("hidden_size", base.hidden_size)
    heads = encoder.get("num_attention_heads", base.num_attention_heads)
    layers = encoder.get("num_hidden_layers", base.num_hidden_layers)
    return {"decoder_hidden_size": hidden // 2, "decoder_num_attention_heads": max(1, heads // 2),
            "decoder_intermediate_size": 2 * hidden, "decoder_num_hidden_layers": max(1, layers // 3)}


def check_family(cfg: Config) -> None:
    kind = cfg.model_args.get("model_type", "videomae") if cfg.model == "hf_video" else cfg.model
    if cfg.model not in FAMILIES or kind != "videomae":
        raise VidkitError(f"pretrain: model {cfg.model!r} has no masked-autoencoding pretraining here; use a "
                          "videomae config (configs/videomae.yaml, videomae_demo.yaml)")


def pretraining_config(cfg: Config):
    """VideoMAEConfig of a fresh model (model_args, frames, size) or of the checkpoint `pretrained=` continues."""
    from transformers import AutoConfig, VideoMAEConfig
    args = {k: v for k, v in cfg.model_args.items() if k not in SKIP}
    if not cfg.pretrained:
        sizes = {k: v for k, v in (("num_frames", cfg.num_frames), ("image_size", cfg.image_size)) if v}
        return VideoMAEConfig(**{**decoder_args(args), **args, **sizes, "norm_pix_loss": cfg.norm_pix_loss}), None
    path = Path(require_path(cfg.pretrained, cfg.model, "a VideoMAE save_pretrained folder", folder=True))
    if not (path / "config.json").is_file():
        raise VidkitError(f"pretrained: {path} has no config.json; pretrain continues a VideoMAE "
                          "save_pretrained folder")
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    if config.model_type != "videomae":
        raise VidkitError(f"pretrained: {path / 'config.json'} holds a {config.model_type}, not a videomae; "
                          "pretrain continues only VideoMAE checkpoints")
    for key, value in (("num_frames", cfg.num_frames), ("image_size", cfg.image_size)):
        setattr(config, key, value or getattr(config, key))  # fixed sinusoids: not in the weights
    config.norm_pix_loss = cfg.norm_pix_loss
    return config, path


def build_pretraining_model(cfg: Config, rank: int = 0) -> MaskedAutoencoder:
    from transformers import VideoMAEForPreTraining
    check_family(cfg)
    config, path = pretraining_config(cfg)
    if path is None:
        hf = VideoMAEForPreTraining(config)
    else:  # a classifier checkpoint (e.g. Kinetics fine-tuned) fills the encoder; the decoder starts fresh
        hf = VideoMAEForPreTraining.from_pretrained(str(path), config=config, local_files_only=True)
    for key in ("image_size", "patch_size", "num_frames", "tubelet_size"):
        if not isinstance(getattr(config, key), int):
            raise VidkitError(f"pretrain: {key} must be an integer, got {getattr(config, key)!r}")
    if config.image_size % config.patch_size or config.num_frames % config.tubelet_size:
        raise VidkitError(f"pretrain: image_size {config.image_size} must be a multiple of patch_size "
                          f"{config.patch_size}, num_frames {config.num_frames} of tubelet_size {config.tubelet_size}")
    masks = TubeMasks(cfg.mask_ratio, config.num_frames // config.tubelet_size, config.image_size // config.patch_size,
                      int(cfg.seed), rank)
    return MaskedAutoencoder(hf, masks)


def setup_pretrain(cfg: Config, table: pd.DataFrame, out_dir: Path, accelerator: Accelerator,
                   comp: Competition) -> Fold:
    """The pieces of training's `Fold` for pretraining: no labels, no validation, the loss is the model's output."""
    model = build_pretraining_model(cfg, accelerator.process_index)
    sampler = EpochSampler(len(table), int(cfg.seed) * 1000 + 999)
    dataset = train_dataset(cfg, model.input_spec, table, np.full(len(table), -1))
    dataset.seed = sampler.seed
    train_dl = loader(cfg, dataset, train=True, sampler=sampler, comp=comp)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.lr), lr=cfg.lr, betas=(0.9, 0.95))
    total = cfg.epochs * math.ceil(len(train_dl) / cfg.grad_accum)
    scheduler = make_scheduler(cfg.scheduler, optimizer, int(cfg.warmup_ratio * total), total, cfg.lr_factor,
                               cfg.plateau_patience, "min")
    masks = model.masks
    model = to_device(model, accelerator.device, cfg.channels_last)
    if is_plateau(scheduler):
        model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    else:
        model, optimizer, train_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, scheduler)
    accelerator.register_for_checkpointing(masks)
    return Fold(cfg, accelerator, model, optimizer, scheduler, train_dl, None, sampler,
                lambda loss, target, batch=None: loss, None, None, Progress(),
                False, out_dir)  # no validation: every epoch is the best, never an early stop


def check_enough(comp: Competition, n: int, cfg: Config, processes: int) -> None:
    need = cfg.batch_size * processes
    if n < need:
        raise VidkitError(f"{comp.path}: only {n} readable videos; pretraining needs at least batch_size x "
                          f"processes = {need} for one batch (lower batch_size=, or use_test=true)")


def pretrain_loop(cfg: Config, comp: Competition, table: pd.DataFrame, out_dir: Path, accelerator: Accelerator,
                  deadline: float | None = None) -> nn.Module | None:
    """Pretrain on every row of `table` (labels unused) into `out_dir` (metrics.jsonl, state/ while unfinished);
    the trained MaskedAutoencoder, or None when it stopped early (max_steps, max_time) with a resumable state."""
    check_enough(comp, len(table), cfg, accelerator.num_processes)
    set_seed(int(cfg.seed))
    accelerator.free_memory()
    run = setup_pretrain(cfg, table, out_dir, accelerator, comp)
    resume_or_restart(run, deadline)
    if fit(run, table, np.zeros(0), comp.metric, -1):
        return None
    if accelerator.is_main_process:  # the weights go out as save_pretrained; state and the raw copy are spent
        shutil.rmtree(out_dir / "state", ignore_errors=True)
        weights_file(out_dir).unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    return bare(accelerator, run.model)


# ---------------------------------------------------------------- reconstruction (the paper's figure)

def _patches(frames: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, tokens, tubelet * patch * patch, C), tokens in VideoMAE's order."""
    b, t, c, h, w = frames.shape
    x = frames.view(b, t // tubelet, tubelet, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 1, 4, 6, 2, 5, 7, 3).reshape(b, -1, tubelet * patch * patch, c)


def _unpatch(tokens: torch.Tensor, shape: tuple, tubelet: int, patch: int) -> torch.Tensor:
    b, t, c, h, w = shape
    x = tokens.view(b, t // tubelet, h // patch, w // patch, tubelet, patch, patch, c)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, t, h, w, c)


@torch.no_grad()
def reconstruct(model: MaskedAutoencoder, uint8_clips: torch.Tensor, seed: int = 0) -> dict:
    """For uint8 clips (B, T, H, W, C): the input, the masked input and the reconstruction (visible patches
    as given, hidden ones predicted; normalised-pixel predictions mapped back with each patch's own mean and std),
    each (B, T, H, W, C) in [0, 1], plus the loss and `baseline`: the loss of the best constant prediction
    (each target value's mean over the hidden patches; about 1 for normalised pixels). A loss near it means the
    encoder learned next to nothing about the clips (see `learned_little`)."""
    model.eval()
    c = model.hf.config
    device = next(model.parameters()).device
    clips = normalize(uint8_clips, IMAGENET_MEAN, IMAGENET_STD, "TCHW").to(device)
    masks = TubeMasks(model.masks.ratio, model.masks.frames, model.masks.side, seed)
    mask = masks.draw(len(clips)).to(device)
    out = model.hf(pixel_values=clips, bool_masked_pos=mask)
    frames = uint8_clips.to(device).float().div(255).movedim(-1, 2)  # (B, T, C, H, W) in [0, 1]
    patches = _patches(frames, c.tubelet_size, c.patch_size)
    mean, std = patches.mean(-2, keepdim=True), patches.var(-2, unbiased=True, keepdim=True).sqrt() + 1e-6
    predicted = out.logits.float().reshape(-1, *patches.shape[2:])  # the hidden patches, in token order
    targets = ((patches - mean) / std if c.norm_pix_loss else patches)[mask].flatten(1)
    filled, hidden = patches.clone(), patches.clone()
    filled[mask] = predicted * std[mask] + mean[mask] if c.norm_pix_loss else predicted
    hidden[mask] = 0.5  # grey where hidden
    shape = frames.shape
    return {"input": _unpatch(patches, shape, c.tubelet_size, c.patch_size).clamp(0, 1).cpu().numpy(),
            "masked": _unpatch(hidden, shape, c.tubelet_size, c.patch_size).clamp(0, 1).cpu().numpy(),
            "reconstruction": _unpatch(filled, shape, c.tubelet_size, c.patch_size).clamp(0, 1).cpu().numpy(),
            "loss": float(out.loss), "baseline": float(targets.var(0, unbiased=False).mean())}


def learned_little(loss: float, baseline: float, margin: float = 0.1) -> bool:
    """The reconstruction loss is not `margin` below that of predicting a constant. On the demo, normalised-pixel
    targets of flat patches are noise, the loss stalls at 0.98 of that baseline, and the encoder learns backgrounds
    only (issue 28: fine-tuning from it at chance after a high pretraining lr)."""
    return loss > (1 - margin) * baseline
