"""Heads in the training loop: the feature store a head config reads (`features=STORE`, else the competition's
`features_dir:`), the head's input size from it, its datasets (in place of the clip datasets), the checks that
keep a store and a head run together, and the gbdt head's fit (LightGBM, no gradient steps)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.config import Competition, Config, load_competition
from vidkit.data.features import FeatureDataset, feature_path, precomputed_manifest, read_manifest, source_of
from vidkit.errors import VidkitError

log = logging.getLogger(__name__)


def store_of(cfg: Config, comp: Competition | None = None) -> tuple[Path, dict]:
    """(folder, manifest) of the config's store; a store embedded for another competition is refused."""
    comp = comp or load_competition(cfg.comp)
    if cfg.features:
        root = Path(cfg.features)
        manifest = read_manifest(root)
        if manifest is None:
            if comp.features_dir and root.resolve() == comp.resolve(comp.features_dir):
                return root, precomputed_manifest(root, comp.name)
            raise VidkitError(f"{root}: not a feature store (no manifest.json); run `vidkit embed CONFIG "
                              f"comp={cfg.comp} out={root}` first")
        if manifest.get("competition") != comp.name:
            raise VidkitError(f"{root / 'manifest.json'}: features of competition {manifest.get('competition')!r} "
                              f"(backbone {manifest.get('backbone')}), not of {comp.name!r}")
        if not manifest.get("complete") and not manifest.get("holds"):  # `holds`: a bundle's or submit's store
            log.warning("%s: the store is not complete (an embed still running or killed?)", root)
        return root, {**manifest, "root": str(root)}
    if comp.features_dir:
        root = comp.resolve(comp.features_dir)
        return root, precomputed_manifest(root, comp.name)
    raise VidkitError(f"{cfg.model}: a head needs features=STORE (from `vidkit embed`) or a competition "
                      "with features_dir:")


_STORES: dict = {}  # (features, comp) -> (root, manifest): read once per process


def cached_store(cfg: Config) -> tuple[Path, dict]:
    key = (cfg.features, cfg.comp)
    if key not in _STORES:
        _STORES[key] = store_of(cfg)
    return _STORES[key]


def head_args(cfg: Config) -> dict:
    """The builder arguments a head takes from its store: in_dim (D) and positions (P)."""
    _, manifest = cached_store(cfg)
    return {"in_dim": int(manifest["dims"]), "positions": int(manifest["positions"])}


def feature_dataset(cfg: Config, spec, table: pd.DataFrame, labels, fold: int | None, views: str,
                    skip_errors: bool = False, extras: dict | None = None, *, tta) -> FeatureDataset:
    """A head's dataset over `table`: one random stored view per item (training) or every view (evaluation),
    from the store's source for `fold` (fold-aligned stores; test videos: each fold's model its own source)."""
    root, manifest = cached_store(cfg)
    n_views = int(manifest.get("n_views", 1))
    tta = dataclasses.replace(tta, clips=n_views, offsets=None, crops=1, flip=False)  # the caller's TTASpec
    return FeatureDataset(table, root, manifest, source_of(manifest, fold), spec, labels, views, skip_errors,
                          extras, tta)


def without_features(cfg: Config, table: pd.DataFrame) -> pd.DataFrame:
    """Training videos the store has no features for (unreadable when embedded) are left out, with a warning."""
    root, manifest = cached_store(cfg)
    if manifest.get("precomputed"):
        return table  # the layout only lists videos with a file
    missing = np.zeros(len(table), dtype=bool)
    for source in manifest["sources"]:
        missing |= np.array([not feature_path(root, source, v).exists() for v in table["video_id"]])
    if missing.all():
        raise VidkitError(f"{root}: no features for any training video; run `vidkit embed` for this store")
    if missing.any():
        log.warning("%s: no features for %d training videos, left out: %s", root, int(missing.sum()),
                    ", ".join(table.loc[missing, "video_id"].head(20)))
    return table[~missing].reset_index(drop=True)


def run_features_meta(cfg: Config) -> dict:
    """What a head run records of its store in run.json (`features`): the store, its backbone and weights."""
    root, manifest = cached_store(cfg)
    return {"store": str(Path(root).resolve()), "backbone": manifest.get("backbone"),
            "config": manifest.get("config"), "sources": manifest.get("sources"),
            "protocol": manifest.get("views", {}).get("protocol")}


def check_run_store(run: Path, cfg: Config, recorded: dict | None) -> None:
    """A head run predicts only from the store it was trained on: another backbone or other weights are refused,
    naming both."""
    if not recorded:
        return
    now = run_features_meta(cfg)
    if (now["backbone"], now["sources"]) != (recorded.get("backbone"), recorded.get("sources")):
        raise VidkitError(f"{run}/run.json: trained on features of {recorded.get('backbone')} "
                          f"({recorded.get('config')}), but {now['store']} now holds {now['backbone']} "
                          f"({now['config']}, other weights); re-embed or retrain the head")


def store_key(cfg: Config) -> str:
    """One backbone, however many stores or heads: what made the store's arrays (backbone, its weights per
    source, views, spec, dtype). Heads with the same key share one extraction of each test video."""
    _, manifest = cached_store(cfg)
    keys = ("backbone", "model_args", "sources", "views", "spec", "dtype", "precomputed", "root")
    return json.dumps({k: manifest.get(k) for k in keys if k != "root" or manifest.get("precomputed")},
                      sort_keys=True, default=str)


def protocol(cfg: Config) -> str:
    return run_features_meta(cfg)["protocol"] or "features"


# ---------------------------------------------------------------- the gbdt head

def fits_itself(cfg: Config) -> bool:
    return cfg.model == "gbdt"


# ---------------------------------------------------------------- what made a store (flows.embed, flows.spotfeatures)

def weights_hash(model) -> str:
    """sha256 of the state_dict (names, shapes, values): the same weights, however they were loaded."""
    import torch
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def backbone_recipe(backbone: Config, sources: dict, num_classes: int) -> dict:
    """What rebuilds a store's backbone without the store's arrays (`submit` on test videos the store lacks, the
    kernel): its config, head size and each source's checkpoint (None: the config's pretrained weights)."""
    return {"config": json.loads(json.dumps(dataclasses.asdict(backbone))), "num_classes": num_classes,
            "checkpoints": {s: str(Path(p).resolve()) if p else None for s, p in sources.items()}}
