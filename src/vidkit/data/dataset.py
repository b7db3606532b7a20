"""A clip Dataset over an index table: item i is clip (i % num_clips) of video (i // num_clips)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from vidkit.data.media import read_clip
from vidkit.data.transforms import to_tensor


class VideoDataset(Dataset):
    def __init__(self, table: pd.DataFrame, sampler, transform, spec, short_side: int,
                 labels: np.ndarray | None = None, num_clips: int = 1):
        self.rows = table.to_dict("records")
        self.sampler, self.transform, self.spec = sampler, transform, spec
        self.short_side, self.num_clips = short_side, num_clips
        self.labels = labels if labels is not None else np.full(len(self.rows), -1)

    def __len__(self):
        return len(self.rows) * self.num_clips

    def __getitem__(self, i):
        video, clip = divmod(i, self.num_clips)
        row = self.rows[video]
        # one seed per item from torch's RNG, which accelerate/DataLoader seed per process and worker:
        # the same (seed, epoch) gives the same clips and augmentations
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        indices = self.sampler(row["n_frames"], clip, np.random.default_rng(seed))
        frames = read_clip(row, indices, self.short_side)
        self.transform.set_random_seed(seed)
        frames = self.transform(images=frames)["images"]
        return {"video": to_tensor(np.asarray(frames), self.spec.mean, self.spec.std, self.spec.layout),
                "label": int(self.labels[video]), "video_id": row["video_id"],
                "index": video, "clip_index": clip}
