"""Clip transforms in uint8: one crop box per clip, one resize per frame, normalisation as one batched op.

A transform maps frames of any size (a reduced-size JPEG decode, a cached short-side copy, full-size video
frames) to (T, size, size, C). Its geometry is defined on the frames resized to `short` on their short side,
but that resize is never materialised: the crop box is mapped back to the input frames and only the crop is
resized (INTER_AREA when shrinking). The train transform draws one random crop, flip, rotation and colour
jitter (albumentations) per clip; the eval transform is the centre crop. `resize_mode` letterbox pads each frame
to a square first, squash stretches it to one (for mixed aspect ratios); short (default) keeps the aspect.
"""
from __future__ import annotations

import functools
import math

import albumentations as A
import cv2
import numpy as np
import torch

from vidkit.choices import CHOICES, check_choice


def short_side(image_size: int, resize_short: int | None = None) -> int:
    return resize_short or int(round(image_size * 8 / 7))


RESIZE_MODES = CHOICES["resize_mode"]  # short side then crop | letterbox (pad to square) | squash (to square)


class ClipTransform:
    """Called like an albumentations Compose: `t.set_random_seed(seed); t(images=frames)["images"]`."""

    def __init__(self, size: int, short: int, train: bool = False, crop_scale: float = 0.4,
                 hflip: float = 0.0, color_jitter: float = 0.0, rotate: float = 0.0, mode: str = "short"):
        check_choice("resize_mode", mode)
        self.size, self.short, self.train, self.mode = size, short, train, mode
        self.crop_scale, self.hflip = crop_scale, hflip
        self.jitter = self.affine = None
        if color_jitter > 0:
            self.jitter = A.Compose([A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05,
                                                   p=color_jitter)])
        if rotate > 0:  # `images=`: one angle for every frame of the clip
            self.affine = A.Compose([A.Affine(rotate=(-rotate, rotate), border_mode=cv2.BORDER_REFLECT_101, p=1.0)])
        self.rng = np.random.default_rng()

    def set_random_seed(self, seed: int):
        self.rng = np.random.default_rng(seed)
        for t in (self.jitter, self.affine):
            if t is not None:
                t.set_random_seed(seed)

    def crop_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """(y, x, h, w) of the crop in the coordinates of the frames resized to `short` on their short side."""
        scale = self.short / min(height, width)
        h, w = height * scale, width * scale
        if self.train:
            for _ in range(10):  # torchvision's RandomResizedCrop: area fraction and log-uniform aspect ratio
                area = h * w * self.rng.uniform(self.crop_scale, 1.0)
                ratio = math.exp(self.rng.uniform(math.log(3 / 4), math.log(4 / 3)))
                cw, ch = math.sqrt(area * ratio), math.sqrt(area / ratio)
                if cw <= w and ch <= h:
                    return self.rng.uniform(0, h - ch), self.rng.uniform(0, w - cw), ch, cw
            side = min(h, w)
            return (h - side) / 2, (w - side) / 2, side, side
        # albumentations' SmallestMaxSize + CenterCrop: rounded resized size, integer offsets
        h, w = round(h), round(w)
        side = min(self.size, h, w)
        return (h - side) // 2, (w - side) // 2, side, side

    def __call__(self, *, images, source_shape: tuple | None = None) -> dict:
        """`source_shape`: (height, width) of the original frames when `images` is a scaled decode of them
        (libjpeg rounds scaled sizes up); the box is laid out on the original, as the two-step pipeline would."""
        # a list of same-size frames is cut frame by frame, never stacked at full size (eval of raw video)
        frames = images if isinstance(images, list) and self.mode != "letterbox" else np.asarray(images)
        frame_h, frame_w = frames[0].shape[:2]
        height, width = source_shape if source_shape and min(source_shape) > 0 else (frame_h, frame_w)
        if self.mode == "letterbox":  # the frame centred on a black square; then as a square frame
            frames = letterbox(frames)
            height = width = frame_h = frame_w = frames.shape[1]
        if self.mode == "squash":  # the box on the frame squashed to short x short, mapped back per axis
            y, x, h, w = self.crop_box(self.short, self.short)
            sy, sx = frame_h / self.short, frame_w / self.short
            y, x, h, w = y * sy, x * sx, h * sy, w * sx
        else:
            to_input = min(frame_h / height, frame_w / width)
            y, x, h, w = (v * min(height, width) / self.short * to_input for v in self.crop_box(height, width))
        crop = resize_crop(frames, y, x, h, w, self.size)
        if self.train and self.hflip > 0 and self.rng.random() < self.hflip:
            crop = crop[:, :, ::-1]
        if self.affine is not None:
            crop = self.affine(images=np.ascontiguousarray(crop))["images"]
        if self.jitter is not None:  # the clip as one tall image: one call per colour op, one draw per clip
            tall = np.ascontiguousarray(crop).reshape(-1, *crop.shape[2:])
            crop = self.jitter(image=tall)["image"].reshape(crop.shape)
        return {"images": crop}


def letterbox(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, C) frames padded with black to (T, S, S, C), S = max(H, W), the frame centred."""
    t, h, w, c = frames.shape
    side = max(h, w)
    if h == w:
        return frames
    top, left = (side - h) // 2, (side - w) // 2
    return np.pad(frames, ((0, 0), (top, side - h - top), (left, side - w - left), (0, 0)))


def resize_crop(frames: np.ndarray, y: float, x: float, h: float, w: float, size: int) -> np.ndarray:
    """The box (y, x, h, w) (input pixels, fractional) of every frame, resized to size x size.

    A whole-pixel box of the output size is a view. Up to 1.5x shrink, a bilinear warp samples the
    box exactly (sub-pixel); beyond, INTER_AREA on the box rounded to whole pixels averages like an
    antialiased resize (the reduced-size JPEG decode keeps most shrinks under 2x). `frames`: (T, H, W, C) or a
    list of T same-size (H, W, C) frames."""
    if h == w == size and float(y).is_integer() and float(x).is_integer():
        return np.asarray(frames)[:, int(y):int(y) + size, int(x):int(x) + size]
    frame_h, frame_w, channels = frames[0].shape
    out = np.empty((len(frames), size, size, channels), np.uint8)
    if max(h, w) / size <= 1.5:
        sy, sx = h / size, w / size  # output pixel centres -> input coordinates
        m = np.array([[sx, 0, x + 0.5 * sx - 0.5], [0, sy, y + 0.5 * sy - 0.5]])
        for i in range(len(frames)):
            cv2.warpAffine(frames[i], m, (size, size), dst=out[i], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
        return out
    y0, x0 = int(round(y)), int(round(x))
    y1 = min(frame_h, max(y0 + 1, int(round(y + h))))
    x1 = min(frame_w, max(x0 + 1, int(round(x + w))))
    # From 4x shrink on, a whole-number block average first (k x k pixels -> 1, cv2's fast INTER_AREA path; its
    # fractional one costs more than the decode's colour conversion on 1080p frames), then INTER_AREA by the
    # remaining factor, kept >= 2 so the blocks stay small against each output pixel's footprint: 2-3x cheaper,
    # and no farther from one INTER_AREA resize than moving the box by a pixel (the trim's half-pixel shift).
    k = int(min(y1 - y0, x1 - x0) / size / 2)
    if k >= 2:  # the box trimmed to whole blocks, evenly on both sides (the centre stays where it was)
        y0, x0 = y0 + (y1 - y0) % k // 2, x0 + (x1 - x0) % k // 2
        y1, x1 = y0 + (y1 - y0) // k * k, x0 + (x1 - x0) // k * k
    for i in range(len(frames)):  # cv2 reads the box's strided rows in place: no copy of the full frame
        box = frames[i][y0:y1, x0:x1]
        if k >= 2:
            box = cv2.resize(box, ((x1 - x0) // k, (y1 - y0) // k), interpolation=cv2.INTER_AREA)
        out[i] = cv2.resize(box, (size, size), interpolation=cv2.INTER_AREA).reshape(out.shape[1:])
    return out


def train_transform(image_size: int, resize_short: int | None = None, crop_scale: float = 0.4,
                    hflip: float = 0.5, color_jitter: float = 0.8, rotate: float = 0.0,
                    mode: str = "short") -> ClipTransform:
    return ClipTransform(image_size, short_side(image_size, resize_short), True, crop_scale, hflip, color_jitter,
                         rotate, mode)


def eval_transform(image_size: int, resize_short: int | None = None, mode: str = "short") -> ClipTransform:
    return ClipTransform(image_size, short_side(image_size, resize_short), mode=mode)


@functools.lru_cache(maxsize=16)
def _luts(mean: tuple, std: tuple) -> list[np.ndarray]:
    """Per channel, the normalised float32 value of each of the 256 uint8 levels."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    return [((levels - m) / s).astype(np.float32) for m, s in zip(mean, std)]


def to_tensor(frames: np.ndarray, mean, std, layout: str = "CTHW", normalize: bool = True) -> torch.Tensor:
    """uint8 (T, H, W, C) -> normalised float32 in the model's layout, or with `normalize=False` the uint8
    frames as they are, (T, H, W, C), for `normalize` to do on the batch on the device (4x less to copy and
    pin, no per-clip work in the loader: a crop view stays a view until the batch is collated)."""
    if normalize:
        return torch.from_numpy(_lut_normalize(frames, mean, std, layout))
    if any(s < 0 for s in frames.strides):  # a flip: torch takes no negative strides
        frames = np.ascontiguousarray(frames)
    return torch.from_numpy(frames)


def normalize(video: torch.Tensor, mean, std, layout: str = "CTHW", dtype=torch.float32) -> torch.Tensor:
    """uint8 clips (..., T, H, W, C) from `to_tensor(..., normalize=False)` -> (x / 255 - mean) / std in the
    model's layout, (..., C, T, H, W) or (..., T, C, H, W), on their device. On a GPU: one convert of the
    permuted view, then two in-place ops. On the CPU, where those memory-bound passes cost ~3x more, the table
    look-up of `_lut_normalize`."""
    if video.dtype != torch.uint8:
        raise TypeError(f"normalize: expects uint8 clips (..., T, H, W, C), got {video.dtype}")
    if video.device.type == "cpu" and dtype == torch.float32:
        return torch.from_numpy(_lut_normalize(video.numpy(), mean, std, layout))
    # CTHW: the permuted view converts in one contiguous pass and leaves a 5D batch in channels_last_3d memory,
    # the layout cuDNN's fastest 3D kernels take (`vidkit.engine.runtime.to_device` puts 3D CNNs in it on a GPU)
    channel = -4 if layout == "CTHW" else -3
    x = video.movedim(-1, channel)
    x = x.to(dtype) if layout == "CTHW" else x.to(dtype, memory_format=torch.contiguous_format)
    shape = [1] * x.ndim
    shape[channel] = -1
    std = torch.as_tensor(std, dtype=dtype, device=x.device).view(shape)
    mean = torch.as_tensor(mean, dtype=dtype, device=x.device).view(shape)
    return x.mul_(1.0 / (255.0 * std)).sub_(mean / std)


def _lut_normalize(frames: np.ndarray, mean, std, layout: str) -> np.ndarray:
    """uint8 (..., T, H, W, C) -> normalised float32 (..., C, T, H, W) or (..., T, C, H, W). Per clip, one
    SIMD de-interleave into channel planes (cv2.split) and one 256-entry table look-up per plane written
    straight into the output: a single pass over the float data."""
    *lead, t, h, w, c = frames.shape
    clips = frames.reshape(-1, t, h, w, c)
    out = np.empty((len(clips), c, t, h, w) if layout == "CTHW" else (len(clips), t, c, h, w), np.float32)
    luts = _luts(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    for i, clip in enumerate(clips):
        tall = np.ascontiguousarray(clip).reshape(t * h, w, c)  # copies only a crop or flip view
        planes = cv2.split(tall) if c > 1 else [tall[..., 0]]
        for k in range(c):
            if layout == "CTHW":
                cv2.LUT(planes[k], luts[k], dst=out[i, k].reshape(t * h, w))
            else:
                for j, plane in enumerate(planes[k].reshape(t, h, w)):
                    cv2.LUT(plane, luts[k], dst=out[i, j, k])
    return out.reshape(*lead, *out.shape[1:])
