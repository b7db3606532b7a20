"""Train one fold with Accelerate: AdamW, warmup + cosine, label smoothing, early stopping on the metric."""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from vidkit import metrics
from vidkit.config import Competition, Config
from vidkit.data import VideoDataset, eval_transform, make_sampler, short_side, train_transform
from vidkit.models import create_model

log = logging.getLogger(__name__)


def make_accelerator(cfg: Config) -> Accelerator:
    precision = cfg.mixed_precision
    if precision == "fp16" and not torch.cuda.is_available():
        log.warning("mixed_precision=fp16 needs a GPU; using no mixed precision on CPU")
        precision = "no"
    # cpu=True on GPU-less machines is what lets torchrun/accelerate launch start a gloo group of CPU processes
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum,
                       cpu=not torch.cuda.is_available())


def build_model(cfg: Config, num_classes: int, pretrained: str | None = None):
    return create_model(cfg.model, num_classes=num_classes, pretrained=pretrained, num_frames=cfg.num_frames,
                        image_size=cfg.image_size, **cfg.model_args)


def eval_dataset(cfg: Config, spec, table: pd.DataFrame, labels=None, num_clips: int = 1) -> VideoDataset:
    sampler = make_sampler("multi", spec.num_frames, cfg.frame_stride, num_clips, cfg.pad_mode)
    return VideoDataset(table, sampler, eval_transform(spec.size, cfg.resize_short), spec,
                        short_side(spec.size, cfg.resize_short), labels, num_clips)


def train_dataset(cfg: Config, spec, table: pd.DataFrame, labels) -> VideoDataset:
    sampler = make_sampler(cfg.train_sampler, spec.num_frames, cfg.frame_stride, 1, cfg.pad_mode)
    transform = train_transform(spec.size, cfg.resize_short, cfg.crop_scale, cfg.hflip, cfg.color_jitter)
    return VideoDataset(table, sampler, transform, spec, short_side(spec.size, cfg.resize_short), labels)


def loader(cfg: Config, dataset, train: bool) -> DataLoader:
    workers = cfg.num_workers
    return DataLoader(dataset, batch_size=cfg.batch_size if train else (cfg.eval_batch_size or 2 * cfg.batch_size),
                      shuffle=train, drop_last=train and len(dataset) > cfg.batch_size, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())


@torch.no_grad()
def predict(model, data: DataLoader, accelerator: Accelerator, n_videos: int, desc: str = "predict") -> np.ndarray:
    """Video-level probabilities (n_videos, C): softmax averaged over each video's clips, all processes."""
    model.eval()
    total, count = None, np.zeros(n_videos)
    for batch in tqdm(data, desc=desc, leave=False, disable=None if accelerator.is_local_main_process else True):
        probs = model(batch["video"]).float().softmax(-1)
        probs, index = accelerator.gather_for_metrics((probs, batch["index"]))
        probs, index = probs.cpu().numpy(), index.cpu().numpy()
        if total is None:
            total = np.zeros((n_videos, probs.shape[1]))
        np.add.at(total, index, probs)
        np.add.at(count, index, 1)
    return total / np.maximum(count, 1)[:, None]


def save_weights(accelerator: Accelerator, model, path: Path) -> None:
    """Atomic: write a temp file then rename, so a kill never leaves a half-written checkpoint."""
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        tmp = path.with_suffix(".tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
        os.replace(tmp, path)
    accelerator.wait_for_everyone()


def param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class EarlyStopping:
    def __init__(self, patience: int, higher_is_better: bool):
        self.patience, self.sign = patience, 1 if higher_is_better else -1
        self.best, self.bad_epochs = None, 0

    def step(self, score: float) -> bool:
        """Record a score; True when it is the best so far."""
        if self.best is None or self.sign * (score - self.best) > 0:
            self.best, self.bad_epochs = score, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def stop(self) -> bool:
        return self.bad_epochs >= self.patience


def train_one_epoch(model, data, optimizer, scheduler, criterion, accelerator, cfg, epoch, step) -> tuple[float, int]:
    model.train()
    losses = []
    bar = tqdm(data, desc=f"epoch {epoch}", leave=False, disable=None if accelerator.is_local_main_process else True)
    for batch in bar:
        with accelerator.accumulate(model):
            loss = criterion(model(batch["video"]), batch["label"])
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients:
            step += 1
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if cfg.max_steps and step >= cfg.max_steps:
            break
    mean = accelerator.gather(torch.tensor([np.mean(losses) if losses else 0.0], device=accelerator.device))
    return float(mean.mean()), step


def train_fold(cfg: Config, comp: Competition, table: pd.DataFrame, classes: list[str], fold: int,
               out_dir: Path, accelerator: Accelerator) -> pd.DataFrame | None:
    """Train fold `fold` (rows of `table` with table.fold == fold validate; -1: no validation).

    Writes out_dir/model.safetensors (best epoch) and metrics.jsonl; returns the fold's OOF table.
    """
    set_seed(cfg.seed + max(fold, 0))
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    is_val = (table["fold"] == fold).to_numpy()
    model = build_model(cfg, len(classes), cfg.pretrained)
    spec = model.input_spec
    train_dl = loader(cfg, train_dataset(cfg, spec, table[~is_val], labels[~is_val]), train=True)
    val_table = table[is_val]
    val_dl = loader(cfg, eval_dataset(cfg, spec, val_table, num_clips=cfg.val_clips), False) if is_val.any() else None

    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    total = cfg.epochs * math.ceil(len(train_dl) / cfg.grad_accum)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer, train_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, scheduler)
    val_dl = accelerator.prepare(val_dl) if val_dl is not None else None
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    stopper = EarlyStopping(cfg.patience, metrics.higher_is_better(comp.metric))
    step, start, weights = 0, time.time(), out_dir / "model.safetensors"
    log_file = out_dir / "metrics.jsonl"
    if accelerator.is_main_process:
        log_file.unlink(missing_ok=True)
    for epoch in range(cfg.epochs):
        train_loss, step = train_one_epoch(model, train_dl, optimizer, scheduler, criterion, accelerator, cfg, epoch, step)
        record = {"fold": fold, "epoch": epoch, "step": step, "train_loss": round(train_loss, 5),
                  "lr": scheduler.get_last_lr()[0]}
        best = True
        if val_dl is not None:
            probs = predict(model, val_dl, accelerator, len(val_table), desc="validate")
            y = labels[is_val]
            record.update(val_loss=metrics.score("logloss", y, probs), val_score=metrics.score(comp.metric, y, probs),
                          metric=comp.metric)
            best = stopper.step(record["val_score"])
        record.update(best=best, time_s=round(time.time() - start, 1))
        if best:
            save_weights(accelerator, model, weights)
        if accelerator.is_main_process:
            with open(log_file, "a") as f:
                f.write(json.dumps(record) + "\n")
        accelerator.print(_epoch_line(record))
        if stopper.stop or (cfg.max_steps and step >= cfg.max_steps):
            break
    if val_dl is None:
        return None
    return fold_oof(cfg, accelerator.unwrap_model(model), weights, val_table, classes, fold, accelerator, out_dir)


def _epoch_line(r: dict) -> str:
    line = f"fold {r['fold']} epoch {r['epoch']}: train_loss {r['train_loss']:.4f}"
    if "val_score" in r:
        line += f"  val_loss {r['val_loss']:.4f}  {r['metric']} {r['val_score']:.4f}" + ("  *" if r["best"] else "")
    return line


def fold_oof(cfg, model, weights: Path, val_table, classes, fold, accelerator, out_dir: Path) -> pd.DataFrame:
    """Reload the best weights and predict the fold's validation videos with the TTA clips."""
    model.load_state_dict(load_file(str(weights)))
    data = accelerator.prepare(loader(cfg, eval_dataset(cfg, model.input_spec, val_table, num_clips=cfg.tta_clips), False))
    probs = predict(model, data, accelerator, len(val_table), desc="oof")
    oof = pd.DataFrame({"video_id": val_table["video_id"].to_numpy(), "fold": fold,
                        "label": val_table["label"].to_numpy()})
    oof = pd.concat([oof, pd.DataFrame(probs, columns=classes)], axis=1)
    if accelerator.is_main_process:
        oof.to_csv(out_dir / "oof.csv", index=False)
    return oof
