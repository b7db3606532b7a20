"""Test-time augmentation: the views of a video (temporal clips x spatial crops x flip), stacked per video and
run through the model(s) as one batch; the same views make the OOF and the test predictions.

`TTASpec` comes from the config (`tta_clips`, `tta_offsets`, `tta_crops`, `tta_flip`, `tta_reduce`) and names
itself in the protocol string: "16x3x3+flip video-level" is 16 frames x 3 clips x 3 crops, each also flipped.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from vidkit.config import Config, load_competition
from vidkit.data import make_sampler, short_side
from vidkit.data.cache import attach_cache, cache_root
from vidkit.data.dataset import loader_settings
from vidkit.data.media import read_clip
from vidkit.data.sampling import offset_indices
from vidkit.data.transforms import ClipTransform, normalize, to_tensor
from vidkit.errors import VidkitError
from vidkit.rundir import oof_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TTASpec:
    clips: int = 1                     # evenly spaced temporal clips
    offsets: tuple | None = None       # or: clip start frames, e.g. (0, 4, 8)
    crops: int = 1                     # 1: centre | 3: start, centre, end of the long side
    flip: bool = False                 # also every view flipped horizontally
    reduce: str = "mean"               # mean of probabilities | mean of logits

    @property
    def n_clips(self) -> int:
        return len(self.offsets) if self.offsets else self.clips

    @property
    def n_views(self) -> int:
        return self.n_clips * self.crops * (2 if self.flip else 1)

    def protocol(self, num_frames: int) -> str:
        name = f"{num_frames}x{self.n_clips}x{self.crops}" + ("+flip" if self.flip else "")
        return name + (" logit-mean" if self.reduce == "logits" else "") + " video-level"

    def fewer(self) -> tuple[TTASpec, str] | None:
        """The next cheaper spec and what it dropped (flip, then crops, then clips); None at one view."""
        if self.flip:
            return dataclasses.replace(self, flip=False), "flip"
        if self.crops > 1:
            return dataclasses.replace(self, crops=1), f"{self.crops} crops -> centre crop"
        if self.n_clips > 1:
            if self.offsets:
                keep = np.unique(np.linspace(0, len(self.offsets) - 1, len(self.offsets) - 1).round().astype(int))
                return (dataclasses.replace(self, offsets=tuple(self.offsets[i] for i in keep)),
                        f"{self.n_clips} -> {len(keep)} clips")
            return dataclasses.replace(self, clips=self.clips - 1), f"{self.clips} -> {self.clips - 1} clips"
        return None

    def clip_indices(self, n_frames: int, num_frames: int, stride: int, pad_mode: str) -> list[np.ndarray]:
        if self.offsets:
            return [offset_indices(n_frames, num_frames, stride, o, pad_mode) for o in self.offsets]
        sampler = make_sampler("multi", num_frames, stride, self.clips, pad_mode)
        return [sampler(n_frames, k) for k in range(self.clips)]


def tta_spec(cfg: Config, clips: int | None = None) -> TTASpec:
    """The config's TTA spec; `clips` (submit's tta_clips=) replaces both tta_clips and tta_offsets."""
    offsets = cfg.tta_offsets if clips is None else None
    if offsets is not None and (not offsets or not all(isinstance(o, int) and o >= 0 for o in offsets)):
        raise VidkitError(f"tta_offsets: expected a list of frame numbers >= 0, got {offsets!r}")
    return TTASpec(clips or cfg.tta_clips, tuple(offsets) if offsets else None, cfg.tta_crops, cfg.tta_flip,
                   cfg.tta_reduce)


class CropAt(ClipTransform):
    """The eval crop (see vidkit.data.transforms) moved along the long side: 0 start, 0.5 centre, 1 end."""

    def __init__(self, size: int, short: int, position: float, mode: str = "short"):
        super().__init__(size, short, mode=mode)
        self.position = position

    def crop_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        y, x, h, w = super().crop_box(height, width)
        scale = self.short / min(height, width)
        if width >= height:
            return y, (width * scale - w) * self.position, h, w
        return (height * scale - h) * self.position, x, h, w


def spatial_crops(size: int, short: int, n_crops: int, mode: str = "short") -> list[ClipTransform]:
    """The centre crop, or three square crops along the long side (start, centre, end); with `mode` letterbox
    or squash, of the squared frame (along its width)."""
    if n_crops == 1:
        return [ClipTransform(size, short, mode=mode)]
    return [CropAt(size, short, p, mode) for p in (0.0, 0.5, 1.0)]


class TTADataset(Dataset):
    """Item i: every view of video i stacked: uint8 (n_views, T, H, W, C) (`predict` normalises on the device)
    or, with `normalize=True`, normalised float (n_views, *clip in the model's layout); `ok` is 0 where the
    video could not be read.

    Each clip is decoded once; its crops and flips are cut from the same frames, with the geometry of the
    eval transform (the centre crop is exactly what validation sees).
    """

    def __init__(self, table: pd.DataFrame, spec, tta: TTASpec, frame_stride: int = 2, pad_mode: str = "repeat",
                 resize_short: int | None = None, labels: np.ndarray | None = None, skip_errors: bool = False,
                 normalize: bool = False, resize_mode: str = "short", backend: str = "cv2"):
        self.rows = table.to_dict("records")
        self.spec, self.tta, self.stride, self.pad_mode = spec, tta, frame_stride, pad_mode
        self.short = short_side(spec.size, resize_short)
        self.crops = spatial_crops(spec.size, self.short, tta.crops, resize_mode)
        self.labels = labels if labels is not None else np.full(len(self.rows), -1)
        self.skip_errors, self.normalize, self.backend = skip_errors, normalize, backend

    def __len__(self):
        return len(self.rows)

    def views(self, row) -> torch.Tensor:
        if not row.get("path") or int(row["n_frames"]) < 1:
            raise VidkitError(f"{row.get('path') or row['video_id']}: no readable frames")
        out = []
        for indices in self.tta.clip_indices(int(row["n_frames"]), self.spec.num_frames, self.stride, self.pad_mode):
            frames = read_clip(row, indices, self.short, self.backend)
            for transform in self.crops:
                crop = transform(images=frames)["images"]
                out += [crop, crop[:, :, ::-1]] if self.tta.flip else [crop]
        s = self.spec
        return torch.stack([to_tensor(v, s.mean, s.std, s.layout, self.normalize) for v in out])

    def __getitem__(self, i):
        row, ok = self.rows[i], 1
        try:
            video = self.views(row)
        except Exception as e:  # noqa: BLE001 - any decoder failure: the caller fills the row with the prior
            if not self.skip_errors:
                raise
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.warning("%s: cannot be read (%s); video %s gets the prior", row.get("path") or row["video_id"],
                        reason, row["video_id"])
            s = self.spec
            video = torch.zeros(self.tta.n_views, s.num_frames, s.size, s.size, 3, dtype=torch.uint8)
            if self.normalize:
                video = normalize(video, s.mean, s.std, s.layout)
            ok = 0
        return {"video": video, "index": i, "ok": ok, "label": int(self.labels[i])}


def eval_dataset(cfg: Config, spec, table: pd.DataFrame, labels=None, num_clips: int = 1,
                 tta: TTASpec | None = None, skip_errors: bool = False) -> TTADataset:
    """Per-epoch validation (`num_clips` clips, centre crop) or, given `tta`, the TTA views."""
    tta = tta or TTASpec(clips=num_clips)
    return TTADataset(table, spec, tta, cfg.frame_stride, cfg.pad_mode, cfg.resize_short, labels, skip_errors,
                      resize_mode=cfg.resize_mode, backend=cfg.video_backend)


def eval_loader(cfg: Config, dataset: TTADataset, cache: bool = False) -> DataLoader:
    """Batches of videos holding about `eval_batch_size` clips in all; with `cache` and `cfg.cache`, the
    clips come from the frame cache (the training videos' cache, for OOF)."""
    batch = max(1, (cfg.eval_batch_size or 2 * cfg.batch_size) // dataset.tta.n_views)
    if cache and cfg.cache:
        root = cache_root(load_competition(cfg.comp).name, dataset.short, cfg.cache_dir)
        dataset.rows = attach_cache(dataset.rows, dataset.short, root)
    settings = loader_settings(math.ceil(len(dataset) / batch), torch.cuda.is_available(), cfg.num_workers)
    return DataLoader(dataset, batch_size=batch, shuffle=False, **settings)


def reduce_views(logits: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """(B, V, C) logits -> (B, C) probabilities: mean of softmaxes, or softmax of the mean logit."""
    if reduce == "logits":
        return logits.mean(1).softmax(-1)
    return logits.softmax(-1).mean(1)


@torch.no_grad()
def predict(models, data: DataLoader, accelerator, n_videos: int, desc: str = "predict",
            reduce: str | None = None) -> np.ndarray:
    """Video-level probabilities (n_videos, C), averaged over `models` (one or a list); NaN rows: unreadable.

    A batch of B videos x V views is one (B*V) forward per model; the views are then reduced per video.
    """
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    dataset = getattr(data, "dataset", None)
    reduce = reduce or getattr(dataset, "tta", TTASpec()).reduce
    for m in models:
        m.eval()
    total, ok_all = None, np.zeros(n_videos, dtype=bool)
    for batch in tqdm(data, desc=desc, leave=False, disable=None if accelerator.is_local_main_process else True):
        x = batch["video"].to(accelerator.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = normalize(x, dataset.spec.mean, dataset.spec.std, dataset.spec.layout)
        b, v = x.shape[:2]
        with accelerator.autocast():
            probs = sum(reduce_views(m(x.flatten(0, 1)).float().view(b, v, -1), reduce) for m in models) / len(models)
        index, ok = batch["index"].to(x.device), batch["ok"].to(x.device)
        probs, index, ok = accelerator.gather_for_metrics((probs, index, ok))
        probs, index, ok = probs.float().cpu().numpy(), index.cpu().numpy(), ok.cpu().numpy().astype(bool)
        if total is None:
            total = np.full((n_videos, probs.shape[1]), np.nan)
        total[index] = probs
        ok_all[index] = ok
    if total is None:
        raise VidkitError("predict: no videos to predict")
    total[~ok_all] = np.nan
    return total


def fold_oof(cfg: Config, model, weights: Path, val_table, classes, fold, accelerator, out_dir: Path) -> pd.DataFrame:
    """Reload the best weights and predict the fold's validation videos with the config's TTA views."""
    model.load_state_dict(load_file(str(weights)))
    tta = tta_spec(cfg)
    dataset = eval_dataset(cfg, model.input_spec, val_table, tta=tta)
    data = accelerator.prepare(eval_loader(cfg, dataset, cache=True))
    probs = predict(model, data, accelerator, len(val_table), desc="oof", reduce=tta.reduce)
    oof = pd.DataFrame({"video_id": val_table["video_id"].to_numpy(), "fold": fold,
                        "label": val_table["label"].to_numpy()})
    oof = pd.concat([oof, pd.DataFrame(probs, columns=classes)], axis=1)
    if accelerator.is_main_process:
        oof.to_csv(oof_file(out_dir), index=False)
    return oof
