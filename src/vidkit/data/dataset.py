"""A clip Dataset over an index table: item i is clip (i % num_clips) of video (i // num_clips)."""
from __future__ import annotations


import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from vidkit.data.media import read_clip
from vidkit.data.shard import clamp_workers, usable_cores
from vidkit.data.transforms import ClipTransform, to_tensor


class VideoDataset(Dataset):
    def __init__(self, table: pd.DataFrame, sampler, transform, spec, short_side: int,
                 labels: np.ndarray | None = None, num_clips: int = 1, normalize: bool = True,
                 backend: str = "cv2", extras: dict[str, np.ndarray] | None = None):
        self.rows = table.to_dict("records")
        self.sampler, self.transform, self.spec = sampler, transform, spec
        self.short_side, self.num_clips, self.backend = short_side, num_clips, backend
        self.normalize = normalize  # False: uint8 (T, H, W, C) clips, for `vidkit.data.normalize` on the device
        self.labels = labels if labels is not None else np.full(len(self.rows), -1)
        self.extras = extras or {}  # per-video arrays added to each item by name (soft targets, loss weights)
        # set `seed` and index with `epoch * len(self) + i` (vidkit.data.epochs.EpochSampler does) to make each item's
        # clip and augmentation a function of (seed, epoch, i) alone, whatever the workers or a resume did
        self.seed: int | None = None

    def __len__(self):
        return len(self.rows) * self.num_clips

    def __getitem__(self, i):
        epoch, i = divmod(i, len(self))
        video, clip = divmod(i, self.num_clips)
        row = self.rows[video]
        if self.seed is not None:
            seed = int(np.random.SeedSequence([self.seed, epoch, i]).generate_state(1)[0] >> 1)
        else:  # torch's RNG, which accelerate/DataLoader seed per process and worker
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        indices = self.sampler(row["n_frames"], clip, np.random.default_rng(seed))
        frames = read_clip(row, indices, self.short_side, self.backend)
        self.transform.set_random_seed(seed)
        if isinstance(self.transform, ClipTransform):
            frames = self.transform(images=frames, source_shape=(row["height"], row["width"]))["images"]
        else:
            frames = self.transform(images=frames)["images"]
        return {"video": to_tensor(frames, self.spec.mean, self.spec.std, self.spec.layout, self.normalize),
                "label": self.labels[video] if self.labels.ndim == 2 else int(self.labels[video]), "video_id": row["video_id"],
                "index": video, "clip_index": clip, **{k: v[video] for k, v in self.extras.items()}}


def loader_settings(n_batches: int, gpu: bool, workers: int = -1) -> dict:
    """DataLoader settings; `workers=-1` picks them from the machine. With a GPU: a worker per core available
    to this process (cores shared among `accelerate launch` processes, at most 16), pinned memory, deeper
    prefetch when workers are few. Without one the model computes on the same cores, and worker processes
    beside its threads slow it down more than they save (benchmarks/README.md): a worker per 4 cores.
    Never more workers than batches, none for a single batch; a fixed count is clamped to `usable_cores()`."""
    if workers < 0:
        cores = usable_cores()
        workers = min(16, cores if gpu else cores // 4, n_batches if n_batches > 1 else 0)
    else:  # a config's fixed count (e.g. 8) never oversubscribes a smaller machine (Kaggle: 2-4 cores)
        workers = min(clamp_workers(workers), n_batches if n_batches > 1 else 0)
    settings = {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": gpu}
    if workers:
        settings["prefetch_factor"] = 4 if workers <= 4 else 2
    return settings
