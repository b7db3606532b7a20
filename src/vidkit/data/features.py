"""Feature stores: a frozen backbone's features of every video, written once (`vidkit embed`), read memory-mapped
by the heads (`vidkit.models.heads`), and precomputed features a competition ships (`features_dir:`).

A store folder (default `features/<comp>/<config>/`):

    manifest.json           backbone (model name), config, competition, spec (the backbone's InputSpec), views
                            (the TTA views, as a protocol string and their settings), vidkit version, dtype,
                            positions P, dims D, n_views V, and per source the sha256 of its weights
    <source>/<video_id>.npy (V, P, D) float16 (or float32): every view x temporal position; `pooled` = mean over P

`source` is `all` (one backbone for every video) or `fold<k>` (fold-aligned: fold k's checkpoint of a
cross-validated run embeds every video, and the head of fold k reads only it, so no head sees features from a
backbone that trained on its validation videos). Size: videos x sources x V x P x D x 2 bytes (`estimate_bytes`).

The API (numpy only; torch is imported only to read a `.pt` file):
    read_manifest(root) / write_manifest(root, m)    the store's manifest (None when there is none)
    source_of(manifest, fold) -> "all" | "fold<k>"    the source a head of fold k reads
    feature_path(root, source, video_id)              where a video's array lives
    write_features(path, array)                       atomic (a kill never leaves half a file)
    read_features(root, source, video_id)             (V, P, D), memory-mapped
    load_feature_file(path)                           one file of a `features_dir:` (.npy .npz .pt .safetensors),
                                                      (P, D) or (D,), checked: 1-2 dims, a float dtype, no NaN
    feature_reader(root)                              video_id, source -> (V, P, D) for either kind of store
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from vidkit.errors import VidkitError
from vidkit.files import atomic_write, read_arrays, read_json, write_text

MANIFEST = "manifest.json"
EXTENSIONS = (".npy", ".npz", ".pt", ".safetensors")  # a features_dir file per video id
MANIFEST_KEYS = {"competition": str, "sources": dict, "positions": int, "dims": int, "n_views": int}


def read_manifest(root: str | Path) -> dict | None:
    """The store's manifest, None when there is none; a broken one (or a folder in its place) is one line."""
    path = Path(root) / MANIFEST
    if not path.exists() and not path.is_symlink():
        return None
    return read_json(path, "feature store manifest", keys=MANIFEST_KEYS)


def write_manifest(root: str | Path, manifest: dict) -> None:
    Path(root).mkdir(parents=True, exist_ok=True)
    write_text(Path(root) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def source_of(manifest: dict, fold: int | None) -> str:
    """`all`, or `fold<k>` for the head of fold k in a fold-aligned store (test videos: every fold's)."""
    if set(manifest.get("sources", {})) == {"all"} or manifest.get("precomputed"):
        return "all"
    if fold is None or fold < 0:
        raise VidkitError(f"{manifest.get('root', 'store')}: a fold-aligned store has no features for fold {fold}; "
                          "train heads with cv (every fold), or embed with pretrained weights instead of run=")
    name = f"fold{fold}"
    if name not in manifest["sources"]:
        raise VidkitError(f"{manifest.get('root', 'store')}: no source {name} (has {', '.join(manifest['sources'])})")
    return name


def feature_path(root: str | Path, source: str, video_id: str) -> Path:
    return Path(root) / source / f"{video_id}.npy"


def write_features(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.save(f, array)


def read_features(root: str | Path, source: str, video_id: str, manifest: dict | None = None) -> np.ndarray:
    """A stored video's (V, P, D) features, memory-mapped; with the store's `manifest`, checked against it (V and
    D; P may differ: `fixed_positions`)."""
    path = feature_path(root, source, video_id)
    if not path.exists():
        raise VidkitError(f"{path}: no features for video {video_id} (run `vidkit embed` for this store)")
    array = read_arrays(path, "stored feature file", mmap=True)[""]
    if manifest is not None and (array.dtype.kind != "f" or array.ndim != 3 or array.shape[0] != manifest["n_views"]
                                 or array.shape[2] != manifest["dims"]):
        raise VidkitError(f"{path}: stored features should be ({manifest['n_views']} views, positions, "
                          f"{manifest['dims']} dims) floats as manifest.json says, got {tuple(array.shape)} "
                          f"{array.dtype}")
    return array


def estimate_bytes(n_videos: int, n_views: int, positions: int, dims: int, n_sources: int = 1,
                   itemsize: int = 2) -> int:
    """videos x sources x views x positions x dims x bytes per value (2: float16)."""
    return n_videos * n_sources * n_views * positions * dims * itemsize


def load_feature_file(path: str | Path) -> np.ndarray:
    """One video's precomputed features, (P, D) float32; a 1-D file is one position. A one-line error naming the
    file when it is not 1-2 dimensional floats without NaN."""
    array = checked_feature_file(path)
    return np.asarray(array, dtype=np.float32).reshape(-1, array.shape[-1])


def checked_feature_file(path: str | Path) -> np.ndarray:
    """A feature file's array as stored (its own float dtype), checked as `load_feature_file` says."""
    path = Path(path)
    if path.suffix not in EXTENSIONS:
        raise VidkitError(f"{path}: not a feature file ({' '.join(EXTENSIONS)})")
    array = _single(path, read_arrays(path, "feature file"))
    if array.dtype.kind != "f":
        raise VidkitError(f"{path}: features must be floats, got dtype {array.dtype}")
    if array.ndim not in (1, 2) or array.size == 0:
        raise VidkitError(f"{path}: features must be (frames, dims) or (dims,), got shape {tuple(array.shape)}")
    if not np.isfinite(array).all():
        raise VidkitError(f"{path}: features contain NaN or inf")
    return array


def _single(path: Path, arrays: dict) -> np.ndarray:
    if len(arrays) != 1:
        raise VidkitError(f"{path}: expected one array, found {len(arrays)} ({', '.join(list(arrays)[:5])})")
    return next(iter(arrays.values()))


def is_feature_file(path: Path) -> bool:
    return Path(path).suffix in EXTENSIONS and Path(path).is_file()


def find_feature_file(folder: Path, video_id: str) -> Path | None:
    stem = Path(video_id).stem if Path(video_id).suffix.lower() in (".mp4", ".avi", ".mkv", ".webm", ".mov") \
        else video_id
    for ext in EXTENSIONS:
        if (folder / f"{stem}{ext}").exists():  # a folder in its place is read, and named as broken
            return folder / f"{stem}{ext}"
    return None


def precomputed_manifest(folder: Path, comp_name: str) -> dict:
    """A `features_dir:` folder read as a store with one source and one view; P and D from its first file."""
    files = sorted(p for p in folder.iterdir() if p.suffix in EXTENSIONS) if folder.is_dir() else []
    if not files:
        raise VidkitError(f"{folder}: features_dir holds no feature files ({' '.join(EXTENSIONS)})")
    first = load_feature_file(files[0])
    return {"precomputed": True, "root": str(folder), "competition": comp_name, "backbone": "precomputed",
            "positions": int(first.shape[0]), "dims": int(first.shape[1]), "n_views": 1,
            "views": {"protocol": f"{first.shape[0]}x1x1 precomputed"}, "sources": {"all": None}}


def feature_reader(root: str | Path, manifest: dict):
    """(video_id, source) -> (V, P, D) array: memory-mapped from a store, or loaded and checked from a
    `features_dir:` (its dims must match the first file's: a wrong shape is that file's error)."""
    root = Path(root)
    if not manifest.get("precomputed"):
        return lambda video_id, source: read_features(root, source, video_id, manifest)

    def read(video_id: str, source: str) -> np.ndarray:
        path = find_feature_file(root, video_id)
        if path is None:
            raise VidkitError(f"{root / video_id}: no feature file ({' '.join(EXTENSIONS)}) for video {video_id}")
        array = load_feature_file(path)
        if array.shape[1] != manifest["dims"]:
            raise VidkitError(f"{path}: features have {array.shape[1]} dims, the others {manifest['dims']}")
        return array[None]
    return read


def fixed_positions(array: np.ndarray, positions: int) -> np.ndarray:
    """(V, P', D) -> (V, positions, D): evenly spaced positions (repeated when P' is shorter), so a batch stacks."""
    if array.shape[1] == positions:
        return array
    return array[:, np.linspace(0, array.shape[1] - 1, positions).round().astype(int)]


CACHE_BYTES = 1 << 30  # a store up to this size (as float32) is held in memory by each dataset


class FeatureDataset:
    """The heads' dataset, in place of the clip datasets (same items): training items are one random view
    (P, D) of a video (`views="random"`), evaluation items every view (V, P, D) with `ok` 0 where the video has
    no features (`skip_errors`: a test video, which then gets the prior). float32 arrays; the DataLoader's
    collate makes them tensors. Indexing by `epoch * len + i` (EpochSampler) makes the view a function of
    (seed, epoch, i), as VideoDataset's clips are."""

    def __init__(self, table, root, manifest: dict, source: str, spec, labels=None, views: str = "all",
                 skip_errors: bool = False, extras: dict | None = None, tta=None):
        self.rows = table.to_dict("records")
        self.read, self.source, self.spec, self.tta = feature_reader(root, manifest), source, spec, tta
        self.positions, self.dims = int(manifest["positions"]), int(manifest["dims"])
        self.n_views = int(manifest.get("n_views", 1))
        self.labels = labels if labels is not None else np.full(len(self.rows), -1)
        self.views, self.skip_errors, self.extras = views, skip_errors, extras or {}
        self.seed: int | None = None
        size = len(self.rows) * self.n_views * self.positions * self.dims * 4
        self.cache = {} if not manifest.get("precomputed") and size < CACHE_BYTES else None

    def features(self, video_id: str) -> np.ndarray:
        """A video's stored array, read into memory once when the store is small (opening a memory map costs
        more than a small head's step: 2.6 of a 5-fold head cv's 8.6 s)."""
        if self.cache is None:
            return self.read(video_id, self.source)
        if video_id not in self.cache:
            self.cache[video_id] = np.array(self.read(video_id, self.source))
        return self.cache[video_id]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        epoch, i = divmod(i, len(self))
        row = self.rows[i]
        if self.views == "random":
            x = fixed_positions(self.features(row["video_id"]), self.positions)
            seed = [self.seed, epoch, i] if self.seed is not None else None
            view = np.random.default_rng(seed).integers(len(x))
            # np.array copies: the store's memory map stays read-only
            return {"video": np.array(x[view], dtype=np.float32), "label": int(self.labels[i]),
                    "video_id": row["video_id"], "index": i, "clip_index": 0,
                    **{k: v[i] for k, v in self.extras.items()}}
        ok = 1
        try:
            x = np.array(fixed_positions(self.features(row["video_id"]), self.positions), np.float32)
        except VidkitError as e:
            if not self.skip_errors:
                raise
            logging.getLogger(__name__).warning("%s; video %s gets the prior", e, row["video_id"])
            x, ok = np.zeros((self.n_views, self.positions, self.dims), np.float32), 0
        return {"video": x, "index": i, "ok": ok, "label": int(self.labels[i])}
