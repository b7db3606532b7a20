"""Train one fold with Accelerate: AdamW, an lr schedule (warmup + cosine by default), label smoothing, early stopping on the metric,
EMA, mixup/cutmix, progressive unfreezing, class weights, OOM fallback and mid-epoch resume."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import find_executable_batch_size, set_seed
from safetensors.torch import load_file, save_file
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vidkit.engine import distill
from vidkit.engine import multilabel as multilabel_training
from vidkit.data.labels import is_multilabel, targets
from vidkit import metrics
from vidkit.config import Competition, Config
from vidkit.errors import VidkitError
from vidkit.files import save_safetensors, write_text
from vidkit.data import VideoDataset, make_sampler, normalize, short_side, train_transform
from vidkit.data.cache import attach_cache, cache_root
from vidkit.data.dataset import loader_settings
from vidkit.data.epochs import EpochSampler, balanced_weights
from vidkit.engine.optim import class_weights, is_plateau, make_scheduler, param_groups, set_trainable
from vidkit.rundir import EMA_WEIGHTS, PLATEAU, PROGRESS, fold_name, metrics_file, state_dir, weights_file
from vidkit.engine.runtime import bare, build_model, to_device
from vidkit.engine.tta import TTASpec, eval_dataset, fold_oof, predict

log = logging.getLogger(__name__)


def train_dataset(cfg: Config, spec, table: pd.DataFrame, labels, signal: dict | None = None,
                  fold: int | None = None) -> VideoDataset:
    if spec.layout == "features":  # a head: one random view of each video's stored features
        from vidkit.engine.features import feature_dataset
        return feature_dataset(cfg, spec, table, labels, fold, views="random", extras=signal, tta=TTASpec())
    sampler = make_sampler(cfg.train_sampler, spec.num_frames, cfg.frame_stride, 1, cfg.pad_mode)
    transform = train_transform(spec.size, cfg.resize_short, cfg.crop_scale, cfg.hflip, cfg.color_jitter, cfg.rotate,
                                cfg.resize_mode)
    # uint8 clips: the batch is normalised on the device (`normalize` in `train_one_epoch`)
    return VideoDataset(table, sampler, transform, spec, short_side(spec.size, cfg.resize_short), labels,
                        normalize=False, backend=cfg.video_backend,
                        extras=signal)


def loader(cfg: Config, dataset, train: bool, sampler=None, comp: Competition | None = None) -> DataLoader:
    """Workers, pinning and prefetch from the machine (`num_workers=-1`, see `loader_settings`); with
    `cache=true` the dataset's clips come from `comp`'s frame cache, built here first where missing or stale."""
    batch = cfg.batch_size if train else (cfg.eval_batch_size or 2 * cfg.batch_size)
    if cfg.cache and comp is not None:
        short = short_side(dataset.spec.size, cfg.resize_short)
        dataset.rows = attach_cache(dataset.rows, short, cache_root(comp.name, short, cfg.cache_dir),
                                    backend=cfg.video_backend)
    settings = loader_settings(math.ceil(len(dataset) / batch), torch.cuda.is_available(), cfg.num_workers)
    return DataLoader(dataset, batch_size=batch, shuffle=train and sampler is None, sampler=sampler,
                      drop_last=train and len(dataset) > cfg.batch_size, **settings)


def save_weights(accelerator: Accelerator, model, path: Path) -> None:
    """Atomic: write a temp file then rename, so a kill never leaves a half-written checkpoint."""
    state = accelerator.get_state_dict(bare(accelerator, model))
    if accelerator.is_main_process:
        save_safetensors({k: v.detach().cpu().contiguous() for k, v in state.items()}, path)
    accelerator.wait_for_everyone()


@dataclass
class Progress:
    """Where a fold is, beyond what accelerate's save_state keeps (model, optimiser, scheduler, scaler, RNG)."""
    epoch: int = 0
    batch: int = 0          # batches done in `epoch`
    step: int = 0           # optimiser steps done
    best: float | None = None  # early stopping: the best validation score so far
    bad_epochs: int = 0        # and the epochs since it
    loss_sum: float = 0.0   # this epoch's training loss so far, so a resumed epoch reports the whole-epoch mean
    loss_batches: int = 0
    bad_streak: int = 0     # consecutive NaN/inf losses (steps skipped)
    bad_total: int = 0
    data_s: float = 0.0     # this epoch's seconds spent waiting for batches, and in the loop: the data-wait fraction
    loop_s: float = 0.0

    def improved(self, score: float, higher_is_better: bool) -> bool:
        """Early stopping: record an epoch's validation score; True when it is the best so far (NaN never is)."""
        if self.best is None or (score > self.best if higher_is_better else score < self.best):
            self.best, self.bad_epochs = score, 0
            return True
        self.bad_epochs += 1
        return False


@dataclass
class Fold:
    """Everything one fold's loop touches, prepared by accelerate."""
    cfg: Config
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_dl: DataLoader
    val_dl: DataLoader | None
    sampler: EpochSampler
    loss_fn: object
    mixup: Mixup | None
    ema: ModelEmaV3 | None
    progress: Progress
    higher_is_better: bool  # the metric's direction, for early stopping
    out_dir: Path
    deadline: float | None = None  # time.time() past which the fold stops cleanly (`max_time`)
    evaluate: object = None  # evaluate(run) -> the epoch's val_loss, val_score, metric in place of `validate`


def make_loss(cfg: Config, weights: torch.Tensor | None, signal: bool = False):
    """loss(logits, target, batch); with pseudo-labels or a teacher (`signal`) the batch's per-video targets,
    teacher probabilities and weights make it (`distill.signal_loss`)."""
    if signal:
        return lambda logits, target, batch: distill.signal_loss(logits, batch, weights, cfg.label_smoothing,
                                                                 cfg.alpha, cfg.temperature)
    hard = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing)
    soft = SoftTargetCrossEntropy()
    return lambda logits, target, batch=None: soft(logits, target) if target.ndim == 2 else hard(logits, target)


def make_mixup(cfg: Config, num_classes: int) -> Mixup | None:
    if not (cfg.mixup or cfg.cutmix):
        return None
    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                 label_smoothing=cfg.label_smoothing, num_classes=num_classes)


def mix(mixup: Mixup | None, video: torch.Tensor, labels: torch.Tensor):
    """timm's Mixup on clips: time is folded into channels so cutmix cuts the same box out of every frame."""
    if mixup is None or len(video) % 2:
        return video, labels
    flat, target = mixup(video.flatten(1, 2), labels)
    return flat.view_as(video), target


def setup_fold(cfg: Config, table: pd.DataFrame, classes: list[str], fold: int, out_dir: Path,
               accelerator: Accelerator, comp: Competition,
               extra: pd.DataFrame | None = None) -> tuple[Fold, pd.DataFrame, np.ndarray]:
    """`extra`: more training videos (pseudo-labelled or teacher-only test videos) that never validate."""
    labels = targets(table["label"], classes, comp)  # class indices, or multi-hot rows (task: multilabel)
    is_val = (table["fold"] == fold).to_numpy()
    model = build_model(cfg, len(classes), cfg.pretrained)
    model.multilabel = is_multilabel(comp)  # sigmoid outputs at validation, OOF and test (engine.tta)
    if model.multilabel:
        multilabel_training.check_options(cfg)
    spec = model.input_spec
    train_table = pd.concat([table[~is_val], extra], ignore_index=True) if extra is not None else table[~is_val]
    train_labels = targets(train_table["label"], classes, comp, missing=-1)
    signal = distill.item_signal(train_table, train_labels, classes)
    if signal is not None and (cfg.mixup or cfg.cutmix):
        raise VidkitError("mixup/cutmix do not combine with pseudo= or teacher= (their targets are per video)")
    sampler = EpochSampler(len(train_table), cfg.seed * 1000 + fold,
                           balanced_weights(train_labels) if cfg.balanced_sampler else None)
    dataset = train_dataset(cfg, spec, train_table, train_labels, signal, fold=fold)
    dataset.seed = sampler.seed
    train_dl = loader(cfg, dataset, train=True, sampler=sampler, comp=comp)
    val_table = table[is_val]
    val_dl = loader(cfg, eval_dataset(cfg, spec, val_table, num_clips=cfg.val_clips, fold=fold), False, comp=comp) \
        if is_val.any() else None
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.lr, cfg.layer_decay, cfg.head_lr_scale),
                                  lr=cfg.lr)
    total = cfg.epochs * math.ceil(len(train_dl) / cfg.grad_accum)
    higher_is_better = metrics.higher_is_better(comp.metric)
    mode = "max" if higher_is_better and is_val.any() else "min"  # plateau without validation: the training loss
    scheduler = make_scheduler(cfg.scheduler, optimizer, int(cfg.warmup_ratio * total), total, cfg.lr_factor,
                               cfg.plateau_patience, mode)
    model = to_device(model, accelerator.device, cfg.channels_last)
    # plateau is stepped once per epoch by every process alike: not through accelerate's per-step wrapper
    if is_plateau(scheduler):
        model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    else:
        model, optimizer, train_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, scheduler)
    val_dl = accelerator.prepare(val_dl) if val_dl is not None else None
    ema = ModelEmaV3(bare(accelerator, model), decay=cfg.ema_decay) if cfg.ema else None
    if bare(accelerator, model).multilabel:  # after prepare: DDP does not pass attributes through
        loss_fn, mixer = multilabel_training.setup(cfg, train_labels, len(classes), accelerator.device,
                                                         signal)
    else:
        weights = class_weights(train_labels[train_labels >= 0], len(classes), cfg.class_weights)
        loss_fn = make_loss(cfg, weights.to(accelerator.device) if weights is not None else None, signal is not None)
        mixer = make_mixup(cfg, len(classes))
    run = Fold(cfg, accelerator, model, optimizer, scheduler, train_dl, val_dl, sampler, loss_fn,
               mixer, ema, Progress(), higher_is_better, out_dir)
    return run, val_table, labels[is_val]


def save_state(run: Fold) -> None:
    """accelerate's save_state into state.tmp/, then swapped in, so a kill mid-save leaves the last state whole."""
    acc, state = run.accelerator, state_dir(run.out_dir)
    tmp, old = state_dir(run.out_dir, ".tmp"), state_dir(run.out_dir, ".old")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    if acc.is_main_process:
        (tmp / PROGRESS).write_text(json.dumps(asdict(run.progress)))
        if run.ema is not None:
            save_file({k: v.contiguous() for k, v in run.ema.module.state_dict().items()}, str(tmp / EMA_WEIGHTS))
        if is_plateau(run.scheduler):
            torch.save(run.scheduler.state_dict(), tmp / PLATEAU)
        if state.exists():
            os.replace(state, old)
        os.replace(tmp, state)
        shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def load_state(run: Fold) -> bool:
    """Restore the last saved state of this fold, if any (state/, or state.old/ if a kill hit the swap)."""
    for state in (state_dir(run.out_dir), state_dir(run.out_dir, ".old")):
        if (state / PROGRESS).is_file():
            run.accelerator.load_state(str(state))
            run.progress = Progress(**json.loads((state / PROGRESS).read_text()))
            if run.ema is not None:
                run.ema.module.load_state_dict(load_file(str(state / EMA_WEIGHTS)))
            if is_plateau(run.scheduler):
                run.scheduler.load_state_dict(torch.load(state / PLATEAU, weights_only=True))
            log.info("resumed %s at epoch %d, batch %d (step %d)", run.out_dir, run.progress.epoch,
                     run.progress.batch, run.progress.step)
            return True
    return False


def train_one_epoch(run: Fold, epoch: int) -> tuple[float, bool]:
    """One pass over the training data (from `progress.batch` on); returns (mean loss, stopped early: at
    max_steps or past the max_time deadline)."""
    cfg, acc, model, progress = run.cfg, run.accelerator, run.model, run.progress
    spec = bare(acc, model).input_spec
    model.train()
    data = acc.skip_first_batches(run.train_dl, progress.batch) if progress.batch else run.train_dl
    data.set_epoch(epoch)  # the sampler's order depends on (seed, fold, epoch) only
    bar = tqdm(data, desc=f"epoch {epoch}", leave=False, disable=None if acc.is_local_main_process else True)
    for batch in waiting(bar, progress, resumed=progress.batch > 0):
        with acc.accumulate(model):
            video = batch["video"] if spec.layout == "features" else normalize(batch["video"], spec.mean, spec.std,
                                                                               spec.layout)
            video, target = mix(run.mixup, video, batch["label"])
            loss = run.loss_fn(model(video), target, batch)
            if not _finite(acc, loss):
                _skip_bad_step(run)
                continue
            progress.bad_streak = 0
            acc.backward(loss)
            if acc.sync_gradients and cfg.max_grad_norm:
                acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            run.optimizer.step()
            if not is_plateau(run.scheduler):
                run.scheduler.step()
            run.optimizer.zero_grad()
        progress.batch += 1
        progress.loss_sum += loss.item()
        progress.loss_batches += 1
        bar.set_postfix(loss=f"{progress.loss_sum / progress.loss_batches:.3f}")
        if acc.sync_gradients:
            progress.step += 1
            if run.ema is not None:
                run.ema.update(bare(acc, model))
            if cfg.save_every and progress.step % cfg.save_every == 0:
                save_state(run)
            if (cfg.max_steps and progress.step >= cfg.max_steps) or _out_of_time(run):
                return _mean_loss(run), True
    return _mean_loss(run), False


def waiting(batches, progress: Progress, resumed: bool = False):
    """The batches, timing how long each was waited for (`progress.data_s`) against the whole loop (`loop_s`):
    a high data-wait fraction says to raise num_workers or use the frame cache. `resumed` (mid-epoch): the loader
    starts without drawing from torch's RNG, whose saved state already holds this epoch's start (dropout after a
    resume then draws what it would have uninterrupted)."""
    it, start = iter(batches), time.perf_counter()
    try:
        while True:
            asked = time.perf_counter()
            try:
                with torch.random.fork_rng(devices=[], enabled=resumed):
                    batch = next(it)
                resumed = False
            except StopIteration:
                return
            progress.data_s += time.perf_counter() - asked
            yield batch
    finally:
        progress.loop_s += time.perf_counter() - start


def _any_process(acc: Accelerator, flag: bool) -> bool:
    """True on every process when `flag` is true on any: all take the same branch, so no collective hangs."""
    if acc.num_processes == 1:
        return flag
    return bool(acc.gather(torch.tensor([float(flag)], device=acc.device)).max() > 0)


def _finite(acc: Accelerator, loss: torch.Tensor) -> bool:
    """None of the processes steps into a backward the others skip."""
    return not _any_process(acc, not bool(torch.isfinite(loss.detach()).all()))


def _out_of_time(run: Fold) -> bool:
    return run.deadline is not None and _any_process(run.accelerator, time.time() >= run.deadline)


def _skip_bad_step(run: Fold) -> None:
    """A NaN/inf loss: no backward, no optimiser step; too many in a row stops the fold."""
    p = run.progress
    run.optimizer.zero_grad()
    p.batch += 1
    p.bad_streak += 1
    p.bad_total += 1
    log.warning("non-finite loss at epoch %d batch %d: step skipped (%d in a row)", p.epoch, p.batch, p.bad_streak)
    if p.bad_streak >= run.cfg.max_bad_steps:
        raise VidkitError(f"training stopped: {p.bad_streak} consecutive NaN/inf losses at epoch {p.epoch} "
                          f"(step {p.step}); the last good checkpoint is {weights_file(run.out_dir)}. "
                          "Lower lr, or use mixed_precision=bf16/no instead of fp16")


def _mean_loss(run: Fold) -> float:
    p, acc = run.progress, run.accelerator
    mean = p.loss_sum / max(p.loss_batches, 1)
    return float(acc.gather(torch.tensor([mean], device=acc.device)).mean())


def validate(run: Fold, val_table: pd.DataFrame, y: np.ndarray, metric: str) -> dict:
    model = run.ema.module if run.ema is not None else run.model
    with run.accelerator.autocast():
        probs = predict(model, run.val_dl, run.accelerator, len(val_table), desc="validate")
    return {"val_loss": metrics.score("logloss", y, probs), "val_score": metrics.score(metric, y, probs),
            "metric": metric}


def fit(run: Fold, val_table: pd.DataFrame, y: np.ndarray, metric: str, fold: int, on_epoch=None) -> bool:
    """The epochs of one fold; `on_epoch(record)` sees each epoch's record (e.g. `tune`'s pruner, which may raise).
    True when it stopped early (max_steps, max_time) with a resumable state saved."""
    cfg, acc, progress = run.cfg, run.accelerator, run.progress
    weights, log_file, start = weights_file(run.out_dir), metrics_file(run.out_dir), time.time()
    for epoch in range(progress.epoch, cfg.epochs):
        progress.epoch = epoch
        if cfg.freeze_epochs:
            thawed = epoch >= cfg.freeze_epochs
            set_trainable(bare(acc, run.model), backbone=thawed, only=cfg.unfreeze if thawed else None)
        train_loss, interrupted = train_one_epoch(run, epoch)
        if interrupted:  # max_steps / max_time: stop as a kill would, leaving a resumable state
            save_state(run)
            return True
        record = {"fold": fold, "epoch": epoch, "step": progress.step, "train_loss": round(train_loss, 5),
                  "lr": run.scheduler.get_last_lr()[0], "nonfinite_steps": progress.bad_total,
                  "data_wait": round(progress.data_s / max(progress.loop_s, 1e-9), 3)}
        if run.evaluate is not None:  # e.g. spotting: sliding windows over the held-out videos
            record.update(run.evaluate(run))
        elif run.val_dl is not None:
            record.update(validate(run, val_table, y, metric))
        record.update(best=progress.improved(record["val_score"], run.higher_is_better) if "val_score" in record
                      else True,
                      time_s=round(time.time() - start, 1))
        if is_plateau(run.scheduler):  # after the epoch's record, which shows the lr the epoch trained with
            run.scheduler.step(record.get("val_score", train_loss))
        if record["best"]:
            save_weights(acc, run.ema.module if run.ema is not None else run.model, weights)
        if acc.is_main_process:
            with open(log_file, "a") as f:
                f.write(json.dumps(record) + "\n")
        acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=epoch)
        acc.print(_epoch_line(record))
        if on_epoch is not None:
            on_epoch(record)
        progress.epoch, progress.batch, progress.loss_sum, progress.loss_batches = epoch + 1, 0, 0.0, 0
        progress.data_s = progress.loop_s = 0.0
        if progress.bad_epochs >= cfg.patience:
            break
        save_state(run)
    progress.epoch = cfg.epochs
    return False


def _epoch_line(r: dict) -> str:
    line = f"fold {r['fold']} epoch {r['epoch']}: train_loss {r['train_loss']:.4f}  data wait {r['data_wait']:.0%}"
    if "val_score" in r:
        line += f"  val_loss {r['val_loss']:.4f}  {r['metric']} {r['val_score']:.4f}" + ("  *" if r["best"] else "")
    return line


def _trim_log(log_file: Path, before_epoch: int) -> None:
    """Drop epoch records a resumed run will write again."""
    if log_file.is_file():
        keep = [line for line in log_file.read_text().splitlines() if json.loads(line)["epoch"] < before_epoch]
        write_text(log_file, "".join(line + "\n" for line in keep))


def resume_or_restart(run: Fold, deadline: float | None) -> bool:
    """`resume=true`: the last saved state (its metrics.jsonl trimmed to it); else a fresh metrics.jsonl."""
    run.deadline = deadline
    resumed = run.cfg.resume and load_state(run)
    if run.accelerator.is_main_process:
        if resumed:
            _trim_log(metrics_file(run.out_dir), run.progress.epoch)
        else:
            metrics_file(run.out_dir).unlink(missing_ok=True)
    return resumed


def _train_fold(cfg: Config, comp: Competition, table: pd.DataFrame, classes: list[str], fold: int,
                out_dir: Path, accelerator: Accelerator, on_epoch=None, extra=None,
                deadline: float | None = None) -> pd.DataFrame | None:
    set_seed(cfg.seed + max(fold, 0))
    accelerator.free_memory()  # drop the previous fold's (or attempt's) prepared objects
    run, val_table, y = setup_fold(cfg, table, classes, fold, out_dir, accelerator, comp, extra)
    resume_or_restart(run, deadline)
    if cfg.log_with:
        accelerator.init_trackers(fold_name(fold), config={k: v for k, v in asdict(cfg).items()
                                                          if isinstance(v, (int, float, str, bool))})
    stopped = fit(run, val_table, y, comp.metric, fold, on_epoch)
    if cfg.log_with:
        accelerator.end_training()
    if stopped:
        return None  # interrupted on purpose: resume=true finishes it
    if accelerator.is_main_process:
        shutil.rmtree(state_dir(out_dir), ignore_errors=True)  # optimiser state is large; the fold is done
    accelerator.wait_for_everyone()
    if run.val_dl is None:
        return None
    model = bare(accelerator, run.ema.module if run.ema is not None else run.model)
    return fold_oof(cfg, model, weights_file(out_dir), val_table, classes, fold, accelerator, out_dir, comp)


def train_fold(cfg: Config, comp: Competition, table: pd.DataFrame, classes: list[str], fold: int,
               out_dir: Path, accelerator: Accelerator, on_epoch=None, extra=None,
               deadline: float | None = None) -> pd.DataFrame | None:
    """Train fold `fold` (rows of `table` with table.fold == fold validate; -1: no validation).

    Writes out_dir/model.safetensors (best epoch) and metrics.jsonl; returns the fold's OOF table, or None
    when it stopped early (max_steps, or the `deadline` passed) with a resumable state. On an out-of-memory
    error the fold restarts with half the batch and twice the accumulation, down to batch 1.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.features and cfg.model == "gbdt":  # trees fit in one go (vidkit.engine.features)
        from vidkit.engine.gbdt import fit_gbdt_fold
        return fit_gbdt_fold(cfg, comp, table, classes, fold, out_dir, accelerator)
    if cfg.features:  # a head: small batches of features, no out-of-memory retries (and their collections)
        return _train_fold(cfg, comp, table, classes, fold, out_dir, accelerator, on_epoch, extra, deadline)

    @find_executable_batch_size(starting_batch_size=cfg.batch_size)
    def attempt(batch_size: int):
        run_cfg = cfg
        if batch_size != cfg.batch_size:
            accum = cfg.grad_accum * max(1, cfg.batch_size // batch_size)
            log.warning("out of memory: fold %d restarts with batch_size=%d, grad_accum=%d", fold, batch_size, accum)
            run_cfg = dataclasses.replace(cfg, batch_size=batch_size, grad_accum=accum)
            accelerator.gradient_accumulation_steps = accum
        return _train_fold(run_cfg, comp, table, classes, fold, out_dir, accelerator, on_epoch, extra, deadline)

    return attempt()
