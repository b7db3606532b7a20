"""Test-time augmentation: the views of a video (temporal clips x spatial crops x flip), stacked per video and
run through the model(s) as one batch; the same views make the OOF and the test predictions.

`TTASpec` comes from the config (`tta_clips`, `tta_offsets`, `tta_crops`, `tta_flip`, `tta_reduce`) and names
itself in the protocol string: "16x3x3+flip video-level" is 16 frames x 3 clips x 3 crops, each also flipped.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from vidkit.config import Competition, Config
from vidkit.data import make_sampler, short_side
from vidkit.data.cache import attach_cache, cache_root
from vidkit.data.dataset import loader_settings
from vidkit.data.media import read_clip
from vidkit.data.video_backends import decode_frames
from vidkit.data.sampling import offset_indices
from vidkit.data.transforms import ClipTransform, normalize, to_tensor
from vidkit.choices import check_choice
from vidkit.engine.reduce import VIEW_MEANS, reduce_logits, video_reduce_of
from vidkit.errors import VidkitError
from vidkit.files import load_checkpoint, write_csv
from vidkit.rundir import oof_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TTASpec:
    clips: int = 1                     # evenly spaced temporal clips
    offsets: tuple | None = None       # or: clip start frames, e.g. (0, 4, 8)
    crops: int = 1                     # 1: centre | 3: start, centre, end of the long side
    flip: bool = False                 # also every view flipped horizontally
    reduce: str = "mean"               # mean of probabilities | mean of logits | vidkit.engine.reduce's rules
    positive: int = 1                  # the class column that `max`, `topk_mean`, `confident` score (binary)
    args: tuple = ()                   # their parameters, (name, value) pairs (video_reduce_args)

    @property
    def n_clips(self) -> int:
        return len(self.offsets) if self.offsets else self.clips

    @property
    def n_views(self) -> int:
        return self.n_clips * self.crops * (2 if self.flip else 1)

    def protocol(self, num_frames: int) -> str:
        name = f"{num_frames}x{self.n_clips}x{self.crops}" + ("+flip" if self.flip else "")
        reduce = {"mean": "", "logits": " logit-mean"}.get(self.reduce, f" {self.reduce}")
        return name + reduce + " video-level"

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


def tta_spec(cfg: Config, clips: int | None = None, classes: list | None = None) -> TTASpec:
    """The config's TTA spec; `clips` (submit's tta_clips=) replaces both tta_clips and tta_offsets; `classes`
    place `reduce_positive` (video_reduce)."""
    offsets = cfg.tta_offsets if clips is None else None
    if offsets is not None and (not offsets or not all(isinstance(o, int) and o >= 0 for o in offsets)):
        raise VidkitError(f"tta_offsets: expected a list of frame numbers >= 0, got {offsets!r}")
    return TTASpec(clips or cfg.tta_clips, tuple(offsets) if offsets else None, cfg.tta_crops, cfg.tta_flip,
                   **video_reduce_of(cfg, classes))


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

    def clip_indices(self, row) -> list[np.ndarray]:
        """The frame indices of each temporal clip of a video."""
        if not row.get("path") or int(row["n_frames"]) < 1:
            raise VidkitError(f"{row.get('path') or row['video_id']}: no readable frames")
        return self.tta.clip_indices(int(row["n_frames"]), self.spec.num_frames, self.stride, self.pad_mode)

    def cut(self, clips: list[np.ndarray]) -> torch.Tensor:
        """Every view from the decoded clips: each clip's crops (and their flips), stacked."""
        out = []
        for frames in clips:
            for transform in self.crops:
                crop = transform(images=frames)["images"]
                out += [crop, crop[:, :, ::-1]] if self.tta.flip else [crop]
        s = self.spec
        return torch.stack([to_tensor(v, s.mean, s.std, s.layout, self.normalize) for v in out])

    def views(self, row) -> torch.Tensor:
        return self.cut([read_clip(row, indices, self.short, self.backend) for indices in self.clip_indices(row)])

    def blank(self) -> torch.Tensor:
        """The stand-in views of an unreadable video (its predictions are discarded)."""
        s = self.spec
        video = torch.zeros(self.tta.n_views, s.num_frames, s.size, s.size, 3, dtype=torch.uint8)
        return normalize(video, s.mean, s.std, s.layout) if self.normalize else video

    def __getitem__(self, i):
        row, ok = self.rows[i], 1
        try:
            video = self.views(row)
        except Exception as e:  # noqa: BLE001 - any decoder failure: the caller fills the row with the prior
            if not self.skip_errors:
                raise
            warn_unreadable(row, e)
            video, ok = self.blank(), 0
        return {"video": video, "index": i, "ok": ok,
                "label": self.labels[i] if self.labels.ndim == 2 else int(self.labels[i])}


def warn_unreadable(row, error: Exception) -> None:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    log.warning("%s: cannot be read (%s); video %s gets the prior", row.get("path") or row["video_id"], reason,
                row["video_id"])


DECODES: Counter = Counter()  # video path -> decodes by SharedViews in this process (a test checks "once")


class SharedViews(Dataset):
    """Item i: the views of video i for several members (a TTADataset each: their own frames, sizes and TTA),
    cut from one decode of the union of the frames all their clips need: a raw video is decoded once, at full
    size, whatever the members. Frame folders are decoded once per distinct short side among the members
    (libjpeg's DCT scaling decodes straight to each size; JPEG frames have no keyframes to re-decode), which
    keeps every member's pixels exactly those of its own TTADataset."""

    def __init__(self, datasets: list[TTADataset]):
        self.datasets, self.rows = datasets, datasets[0].rows

    def __len__(self):
        return len(self.rows)

    def decode(self, row) -> list[list[np.ndarray]]:
        wanted = [d.clip_indices(row) for d in self.datasets]
        sized = row["kind"] == "frames" or isinstance(row.get("cache"), str)
        groups: dict[int, list[int]] = {}
        for k, d in enumerate(self.datasets):
            groups.setdefault(d.short if sized else 0, []).append(k)
        out: list = [None] * len(self.datasets)
        for short, members in groups.items():
            union = sorted({int(i) for k in members for clip in wanted[k] for i in clip})
            if sized:
                frames = read_clip(row, union, short, self.datasets[0].backend)
            else:  # full-size video frames as a list: each member's crops are cut from them, nothing stacked
                frames = decode_frames(row["path"], union, self.datasets[0].backend)
            DECODES[str(row["path"])] += 1
            where = {i: j for j, i in enumerate(union)}
            for k in members:
                out[k] = [pick(frames, [where[int(i)] for i in clip]) for clip in wanted[k]]
        return out

    def __getitem__(self, i):
        row, ok = self.rows[i], 1
        try:
            videos = tuple(d.cut(clips) for d, clips in zip(self.datasets, self.decode(row)))
        except Exception as e:  # noqa: BLE001 - any decoder failure: the caller fills the row with the prior
            warn_unreadable(row, e)
            videos, ok = tuple(d.blank() for d in self.datasets), 0
        return {"video": videos, "index": i, "ok": ok, "label": -1}


def pick(frames, at: list[int]):
    """Frames `at` of an array (a copy) or of a list (the same arrays, no copy)."""
    return [frames[j] for j in at] if isinstance(frames, list) else frames[at]


def eval_dataset(cfg: Config, spec, table: pd.DataFrame, labels=None, num_clips: int = 1,
                 tta: TTASpec | None = None, skip_errors: bool = False, fold: int | None = None) -> TTADataset:
    """Per-epoch validation (`num_clips` clips, centre crop) or, given `tta`, the TTA views; a head's
    (`spec.layout` features): every stored view of each video, from fold `fold`'s source of the store."""
    tta = tta or TTASpec(clips=num_clips)
    if spec.layout == "features":
        from vidkit.engine.features import feature_dataset
        return feature_dataset(cfg, spec, table, labels, fold, views="all", skip_errors=skip_errors, tta=tta)
    return TTADataset(table, spec, tta, cfg.frame_stride, cfg.pad_mode, cfg.resize_short, labels, skip_errors,
                      resize_mode=cfg.resize_mode, backend=cfg.video_backend)


def eval_batch(cfg: Config, n_views: int) -> int:
    """Videos per batch: about `eval_batch_size` clips in all."""
    return max(1, (cfg.eval_batch_size or 2 * cfg.batch_size) // n_views)


def eval_loader(cfg: Config, dataset: TTADataset, comp: Competition | None = None) -> DataLoader:
    """Batches of videos holding about `eval_batch_size` clips in all; with `comp` and `cfg.cache`, the
    clips come from that competition's frame cache (the training videos' cache, for OOF)."""
    batch = eval_batch(cfg, dataset.tta.n_views)
    if comp is not None and cfg.cache:
        root = cache_root(comp.name, dataset.short, cfg.cache_dir)
        dataset.rows = attach_cache(dataset.rows, dataset.short, root, backend=cfg.video_backend)
    settings = loader_settings(math.ceil(len(dataset) / batch), torch.cuda.is_available(), cfg.num_workers)
    return DataLoader(dataset, batch_size=batch, shuffle=False, **settings)


REDUCTIONS = VIEW_MEANS  # the config's `tta_reduce` (vidkit.engine.reduce; `video_reduce` adds the scalar rules)


def reduce_views(logits: torch.Tensor, reduce: str | TTASpec = "mean", multilabel: bool = False) -> torch.Tensor:
    """(B, V, C) logits -> (B, C) probabilities: mean of softmaxes, softmax of the mean logit, or a TTASpec's
    video_reduce rule (vidkit.engine.reduce); sigmoids instead of softmaxes for a multi-label model."""
    if isinstance(reduce, TTASpec):
        return reduce_logits(logits, reduce.reduce, reduce.positive, dict(reduce.args), multilabel)
    return reduce_logits(logits, check_choice("tta_reduce", reduce, REDUCTIONS), multilabel=multilabel)


def is_multilabel_model(model) -> bool:
    """A model trained for a multi-label competition (`model.multilabel`, set where it is built), also wrapped."""
    return bool(getattr(getattr(model, "module", model), "multilabel", False))


def predict(models, data: DataLoader, accelerator, n_videos: int, desc: str = "predict",
            reduce: str | None = None) -> np.ndarray:
    """Video-level probabilities (n_videos, C), averaged over `models` (one or a list); NaN rows: unreadable.

    A batch of B videos x V views is one (B*V) forward per model; the views are then reduced per video.
    """
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    dataset = getattr(data, "dataset", None)
    reduce = reduce or getattr(dataset, "tta", TTASpec())
    return predict_groups([(models, dataset.spec, reduce, accelerator)], data, accelerator, n_videos, desc)[0]


def group_probs(models, spec, reduce: str, accelerator, x: torch.Tensor) -> torch.Tensor:
    """(B, C) probabilities of a batch of B videos x V views, averaged over `models`."""
    x = x.to(accelerator.device, non_blocking=True)
    if x.dtype == torch.uint8:
        x = normalize(x, spec.mean, spec.std, spec.layout)
    b, v = x.shape[:2]
    with accelerator.autocast():
        return sum(reduce_views(m(x.flatten(0, 1)).float().view(b, v, -1), reduce, is_multilabel_model(m))
                   for m in models) / len(models)


@torch.no_grad()
def predict_groups(groups: list[tuple], data: DataLoader, accelerator, n_videos: int,
                   desc: str = "predict") -> list[np.ndarray]:
    """`predict` for several groups (models, spec, reduce, their accelerator) at once: a batch's "video" holds
    one views tensor per group (SharedViews), or one tensor for one group. A list of (n_videos, C_g) arrays."""
    for models, *_ in groups:
        for m in models:
            m.eval()
    totals, ok_all = [None] * len(groups), np.zeros(n_videos, dtype=bool)
    for batch in tqdm(data, desc=desc, leave=False, disable=None if accelerator.is_local_main_process else True):
        videos = batch["video"] if isinstance(batch["video"], (list, tuple)) else [batch["video"]]
        probs = [group_probs(*group, x) for group, x in zip(groups, videos)]
        device = probs[0].device
        index, ok = batch["index"].to(device), batch["ok"].to(device)
        probs, index, ok = accelerator.gather_for_metrics((probs, index, ok))
        index, ok = index.cpu().numpy(), ok.cpu().numpy().astype(bool)
        for g, p in enumerate(probs):
            if totals[g] is None:
                totals[g] = np.full((n_videos, p.shape[1]), np.nan)
            totals[g][index] = p.float().cpu().numpy()
        ok_all[index] = ok
    if totals[0] is None:
        raise VidkitError("predict: no videos to predict")
    for total in totals:
        total[~ok_all] = np.nan
    return totals


def fold_oof(cfg: Config, model, weights: Path, val_table, classes, fold, accelerator, out_dir: Path,
             comp: Competition | None = None) -> pd.DataFrame:
    """Reload the best weights and predict the fold's validation videos with the config's TTA views."""
    load_checkpoint(model, weights)
    tta = tta_spec(cfg, classes=classes)
    dataset = eval_dataset(cfg, model.input_spec, val_table, tta=tta, fold=fold)
    data = accelerator.prepare(eval_loader(cfg, dataset, comp))
    probs = predict(model, data, accelerator, len(val_table), desc="oof", reduce=tta)
    oof = pd.DataFrame({"video_id": val_table["video_id"].to_numpy(), "fold": fold,
                        "label": val_table["label"].to_numpy()})
    oof = pd.concat([oof, pd.DataFrame(probs, columns=classes)], axis=1)
    if accelerator.is_main_process:
        write_csv(oof, oof_file(out_dir), index=False)
    return oof
