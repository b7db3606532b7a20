"""Clip augmentation with albumentations: its `images=` target applies one random draw to every frame."""
from __future__ import annotations

import albumentations as A
import numpy as np
import torch


def short_side(image_size: int, resize_short: int | None = None) -> int:
    return resize_short or int(round(image_size * 8 / 7))


def train_transform(image_size: int, resize_short: int | None = None, crop_scale: float = 0.4,
                    hflip: float = 0.5, color_jitter: float = 0.8) -> A.Compose:
    steps = [A.SmallestMaxSize(max_size=short_side(image_size, resize_short)),
             A.RandomResizedCrop(size=(image_size, image_size), scale=(crop_scale, 1.0))]
    if hflip > 0:
        steps.append(A.HorizontalFlip(p=hflip))
    if color_jitter > 0:
        steps.append(A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=color_jitter))
    return A.Compose(steps)


def eval_transform(image_size: int, resize_short: int | None = None) -> A.Compose:
    return A.Compose([A.SmallestMaxSize(max_size=short_side(image_size, resize_short)),
                      A.CenterCrop(height=image_size, width=image_size)])


def to_tensor(frames: np.ndarray, mean, std, layout: str = "CTHW") -> torch.Tensor:
    """uint8 (T, H, W, C) -> normalised float tensor in the model's layout, in one batched op."""
    x = torch.from_numpy(frames).float().div_(255.0)
    x = x.sub_(torch.tensor(mean)).div_(torch.tensor(std))
    return x.permute(3, 0, 1, 2).contiguous() if layout == "CTHW" else x.permute(0, 3, 1, 2).contiguous()
