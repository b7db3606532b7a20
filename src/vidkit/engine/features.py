"""Heads in the training loop: the feature store a head config reads (`features=STORE`, else the competition's
`features_dir:`), the head's input size from it, its datasets (in place of the clip datasets), the checks that
keep a store and a head run together, and the gbdt head's fit (LightGBM, no gradient steps)."""
from __future__ import annotations

import dataclasses
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
        if not manifest.get("complete"):
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
                    skip_errors: bool = False, extras: dict | None = None, tta=None) -> FeatureDataset:
    """A head's dataset over `table`: one random stored view per item (training) or every view (evaluation),
    from the store's source for `fold` (fold-aligned stores; test videos: each fold's model its own source)."""
    from vidkit.engine.tta import TTASpec
    root, manifest = cached_store(cfg)
    n_views = int(manifest.get("n_views", 1))
    tta = dataclasses.replace(tta or TTASpec(), clips=n_views, offsets=None, crops=1, flip=False)
    return FeatureDataset(table, root, manifest, source_of(manifest, fold), spec, labels, views, skip_errors,
                          extras, tta)


def without_features(cfg: Config, table: pd.DataFrame) -> pd.DataFrame:
    """Training videos the store has no features for (unreadable when embedded) are left out, with a warning."""
    root, manifest = cached_store(cfg)
    if manifest.get("precomputed"):
        return table  # the layout only lists videos with a file
    missing = np.zeros(len(table), dtype=bool)
    for source in manifest["sources"]:
        missing |= np.array([not feature_path(root, source, v).is_file() for v in table["video_id"]])
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


def protocol(cfg: Config) -> str:
    return run_features_meta(cfg)["protocol"] or "features"


# ---------------------------------------------------------------- the gbdt head

def fits_itself(cfg: Config) -> bool:
    return cfg.model == "gbdt"


def pooled(dataset: FeatureDataset) -> np.ndarray:
    """(n_videos, D): every video's features averaged over its views and positions."""
    return np.stack([np.asarray(dataset[i]["video"], np.float32).mean((0, 1)) for i in range(len(dataset))])


def fit_gbdt_fold(cfg: Config, comp: Competition, table: pd.DataFrame, classes: list[str], fold: int,
                  out_dir: Path, accelerator) -> pd.DataFrame | None:
    """The gbdt head's fold: LightGBM fitted on the pooled features of the training videos, its model text saved as
    the fold's model.safetensors, and the same OOF (every stored view through the booster) as any head."""
    import lightgbm
    from safetensors.torch import save_file

    from vidkit import metrics
    from vidkit.engine.runtime import build_model
    from vidkit.engine.tta import fold_oof
    from vidkit.rundir import metrics_file, weights_file
    out_dir.mkdir(parents=True, exist_ok=True)
    y = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    is_val = (table["fold"] == fold).to_numpy()
    model = build_model(cfg, len(classes))
    train = feature_dataset(cfg, model.input_spec, table[~is_val], y[~is_val], fold, views="all")
    seed = cfg.seed if isinstance(cfg.seed, int) else 42
    if len(set(y[~is_val])) < len(classes):
        raise VidkitError(f"gbdt: fold {fold}'s training videos lack some classes; use a neural head")
    clf = lightgbm.LGBMClassifier(**model.params, random_state=seed + max(fold, 0), verbose=-1, n_jobs=1)
    clf.fit(pooled(train), y[~is_val])
    model.set_booster(clf.booster_.model_to_string())
    if accelerator.is_main_process:
        save_file({"booster": model.booster}, str(weights_file(out_dir)))
    record = {"fold": fold, "epoch": 0, "step": 1, "train_loss": 0.0, "lr": model.params["learning_rate"],
              "best": True}
    if is_val.any():
        val = feature_dataset(cfg, model.input_spec, table[is_val], y[is_val], fold, views="all")
        probs = np.stack([_softmax_mean(model, val[i]["video"]) for i in range(len(val))])
        record.update(val_loss=metrics.score("logloss", y[is_val], probs),
                      val_score=metrics.score(comp.metric, y[is_val], probs), metric=comp.metric)
    if accelerator.is_main_process:
        metrics_file(out_dir).write_text(json.dumps(record) + "\n")
    if not is_val.any():
        return None
    return fold_oof(cfg, model, weights_file(out_dir), table[is_val], classes, fold, accelerator, out_dir, comp)


def _softmax_mean(model, views: np.ndarray) -> np.ndarray:
    import torch
    return model(torch.from_numpy(np.asarray(views))).softmax(-1).mean(0).numpy()
