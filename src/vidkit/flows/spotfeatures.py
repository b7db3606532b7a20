"""Per-frame features of a spotting competition (`embed CONFIG comp=C` on a `task: spotting` competition): the
config's spot_dense backbone (with its `pretrained=` weights, `model_args.stack=1`) on every frame of every
training and test video, each video decoded once and streamed, stored as (n_frames, D) arrays in the feature
store's layout (`vidkit.data.features`: all/<video_id>.npy and manifest.json with `per_frame: true`). A `spot_head`
config then trains on them: `cv spot_head_demo comp=C features=DIR` (`vidkit.flows.spotting`). The manifest
records the backbone's recipe (its config) and weights hash; `cv` rebuilds it, checks the hash and saves it into the
run folder (backbone.safetensors, backbone.json), so `submit` computes the test videos' features from their frames
with the run folder alone, as the store has them (`vidkit.flows.spotbackbone`)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.config import Competition, Config
from vidkit.data.events import index_videos, iter_frames
from vidkit.data.features import feature_path, read_features, read_manifest, write_features, write_manifest
from vidkit.errors import VidkitError

log = logging.getLogger(__name__)
BATCH = 64  # frames through the backbone at a time


def embed_frames(cfg: Config, comp: Competition, out: str | Path | None = None, dtype: str = "float16") -> Path:
    """Write (or finish: a video whose file is there is not redone while the manifest matches) the store."""
    import torch
    from vidkit.engine.runtime import build_model
    from vidkit.engine.features import backbone_recipe, weights_hash
    if cfg.model != "spot_dense" or int(cfg.model_args.get("stack", 1)) != 1:
        raise VidkitError(f"embed: per-frame features of a spotting competition come from a spot_dense config "
                          f"with model_args.stack=1 (got {cfg.model}, stack {cfg.model_args.get('stack', 1)})")
    root = Path(out) if out else Path("features") / comp.name / (cfg.name or cfg.model)  # as embed's default
    torch.manual_seed(int(cfg.seed))  # a random-init backbone: the same store every time
    model = build_model(cfg, 1, cfg.pretrained).eval()
    spec = model.input_spec
    manifest = {"competition": comp.name, "per_frame": True, "backbone": cfg.model_args.get("backbone", "resnet18"),
                "pretrained": cfg.pretrained, "image_size": spec.size, "dims": int(model.backbone.num_features),
                "positions": 1, "n_views": 1, "dtype": dtype, "sources": {"all": weights_hash(model)},
                "recipe": backbone_recipe(cfg, {"all": None}, 1)}  # rebuilt and checked by `cv` (save_run_backbone)
    old = read_manifest(root) or {}
    keep = {k: v for k, v in old.items() if k != "complete"} == manifest
    write_manifest(root, {**manifest, "complete": False})
    videos = pd.concat([index_videos(comp, "train")] + ([index_videos(comp, "test")] if comp.test_dir else []))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone = model.backbone.to(device)
    for _, row in videos.iterrows():
        path = feature_path(root, "all", row["video_id"])
        if keep and path.is_file():
            continue
        try:
            features = frame_features(backbone, spec, row, cfg.video_backend, device)
        except (VidkitError, OSError, ValueError) as e:
            log.warning("%s: cannot be decoded (%s); no features for %s", row["path"], str(e).splitlines()[0],
                        row["video_id"])
            continue
        write_features(path, features.astype(dtype))
    write_manifest(root, {**manifest, "complete": True})
    print(f"per-frame features of {len(videos)} videos ({manifest['dims']} per frame) -> {root}")
    return root


def frame_features(backbone, spec, row, backend: str, device) -> np.ndarray:
    """(n_frames, D) features of one video, streamed `BATCH` frames at a time."""
    parts, batch = [], []
    for frame in iter_frames(row, spec.size, backend):
        batch.append(frame)
        if len(batch) == BATCH:
            parts.append(embed_batch(backbone, spec, batch, device))
            batch = []
    if batch:
        parts.append(embed_batch(backbone, spec, batch, device))
    if not parts:
        raise VidkitError(f"{row['path']}: no frames could be decoded")
    return np.concatenate(parts)


def embed_batch(backbone, spec, frames: list[np.ndarray], device) -> np.ndarray:
    """(len(frames), D) float32 features of uint8 (H, W, 3) frames at the backbone's size (embed and submit)."""
    import torch
    from vidkit.engine.spotting import to_input
    with torch.no_grad():
        x = to_input(torch.from_numpy(np.stack(frames))[None].to(device), spec)[0]
        return backbone(x).float().cpu().numpy()


def load_frame_features(cfg: Config, comp: Competition, videos: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every training video's (n_frames, D) features from the store `features=` names."""
    from vidkit.engine.features import store_of
    root, manifest = store_of(cfg, comp)
    if not manifest.get("per_frame"):
        raise VidkitError(f"{root / 'manifest.json'}: not a per-frame store; run `embed CONFIG comp={comp.path} "
                          f"out={root}` with a spot_dense config on this spotting competition")
    out = {}
    for _, row in videos.iterrows():
        path = feature_path(root, "all", row["video_id"])
        if not path.is_file():
            raise VidkitError(f"{path}: no features for training video {row['video_id']!r}; run `embed` again")
        out[row["video_id"]] = read_features(root, "all", row["video_id"]).astype(np.float32)
    return out
