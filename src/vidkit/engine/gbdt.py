"""The gbdt head: LightGBM on a feature store's pooled features, fitted once per fold (no epochs), its booster
text saved as the fold's model.safetensors so OOF and `submit` treat it as any head (vidkit.engine.features)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.config import Competition, Config
from vidkit.data.features import FeatureDataset
from vidkit.engine.features import feature_dataset
from vidkit.engine.tta import TTASpec
from vidkit.errors import VidkitError

from vidkit.files import save_safetensors, write_text


def pooled(dataset: FeatureDataset) -> np.ndarray:
    """(n_videos, D): every video's features averaged over its views and positions."""
    return np.stack([np.asarray(dataset[i]["video"], np.float32).mean((0, 1)) for i in range(len(dataset))])


def fit_gbdt_fold(cfg: Config, comp: Competition, table: pd.DataFrame, classes: list[str], fold: int,
                  out_dir: Path, accelerator) -> pd.DataFrame | None:
    """The gbdt head's fold: LightGBM fitted on the pooled features of the training videos, its model text saved as
    the fold's model.safetensors, and the same OOF (every stored view through the booster) as any head."""
    import lightgbm

    from vidkit import metrics
    from vidkit.engine.runtime import build_model
    from vidkit.engine.tta import fold_oof
    from vidkit.rundir import metrics_file, weights_file
    out_dir.mkdir(parents=True, exist_ok=True)
    y = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    is_val = (table["fold"] == fold).to_numpy()
    model = build_model(cfg, len(classes))
    train = feature_dataset(cfg, model.input_spec, table[~is_val], y[~is_val], fold, views="all", tta=TTASpec())
    seed = cfg.seed if isinstance(cfg.seed, int) else 42
    if len(set(y[~is_val])) < len(classes):
        raise VidkitError(f"gbdt: fold {fold}'s training videos lack some classes; use a neural head")
    clf = lightgbm.LGBMClassifier(**model.params, random_state=seed + max(fold, 0), verbose=-1, n_jobs=1)
    clf.fit(pooled(train), y[~is_val])
    model.set_booster(clf.booster_.model_to_string())
    if accelerator.is_main_process:
        save_safetensors({"booster": model.booster}, weights_file(out_dir))
    record = {"fold": fold, "epoch": 0, "step": 1, "train_loss": 0.0, "lr": model.params["learning_rate"],
              "best": True}
    if is_val.any():
        val = feature_dataset(cfg, model.input_spec, table[is_val], y[is_val], fold, views="all", tta=TTASpec())
        probs = np.stack([_softmax_mean(model, val[i]["video"]) for i in range(len(val))])
        record.update(val_loss=metrics.score("logloss", y[is_val], probs),
                      val_score=metrics.score(comp.metric, y[is_val], probs), metric=comp.metric)
    if accelerator.is_main_process:
        write_text(metrics_file(out_dir), json.dumps(record) + "\n")
    if not is_val.any():
        return None
    return fold_oof(cfg, model, weights_file(out_dir), table[is_val], classes, fold, accelerator, out_dir, comp)


def _softmax_mean(model, views: np.ndarray) -> np.ndarray:
    import torch
    return model(torch.from_numpy(np.asarray(views))).softmax(-1).mean(0).numpy()
