"""Test-set probabilities: every fold checkpoint of every run, N temporal clips per video, averaged."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.torch import load_file

from vidkit.config import Competition, Config, apply, read_yaml
from vidkit.errors import VidkitError
from vidkit.train import build_model, eval_dataset, loader, make_accelerator, predict

log = logging.getLogger(__name__)


def load_run(run: Path) -> tuple[Config, list[str], list[Path]]:
    """A run folder's config, classes and checkpoints (fold*/ and full/ model.safetensors)."""
    run = Path(run)
    if not (run / "config.yaml").is_file() or not (run / "run.json").is_file():
        raise VidkitError(f"{run}: not a run folder (no config.yaml/run.json); run `make cv` first")
    cfg = apply(Config(), read_yaml(run / "config.yaml"), where=f"{run / 'config.yaml'}: ")
    classes = json.loads((run / "run.json").read_text())["classes"]
    weights = sorted(run.glob("fold*/model.safetensors")) + sorted(run.glob("full/model.safetensors"))
    if not weights:
        raise VidkitError(f"{run}: no fold*/model.safetensors checkpoints")
    return cfg, classes, weights


def default_runs(comp: Competition, root: Path = Path("weights")) -> list[Path]:
    """Every finished cross-validation run of the competition (those with a cv_report.json)."""
    runs = sorted(p.parent for p in (root / comp.name).glob("*/cv_report.json"))
    if not runs:
        raise VidkitError(f"no finished runs under {root / comp.name}; run `make cv` or pass runs=")
    return runs


def predict_run(run: Path, table: pd.DataFrame, classes: list[str], tta_clips: int | None = None) -> np.ndarray:
    """(n_videos, len(classes)) mean probabilities over the run's checkpoints and TTA clips."""
    cfg, run_classes, weights = load_run(run)
    if sorted(run_classes) != sorted(classes):
        raise VidkitError(f"{run}: classes differ from the competition's ({len(run_classes)} vs {len(classes)})")
    clips = tta_clips or cfg.tta_clips
    accelerator = make_accelerator(cfg)
    total = np.zeros((len(table), len(run_classes)))
    for path in weights:
        model = build_model(cfg, len(run_classes))
        model.load_state_dict(load_file(str(path)))
        data = loader(cfg, eval_dataset(cfg, model.input_spec, table, num_clips=clips), train=False)
        model, data = accelerator.prepare(model, data)
        total += predict(model, data, accelerator, len(table), desc=f"{run.name}/{path.parent.name}")
        accelerator.free_memory(model)
    order = [run_classes.index(c) for c in classes]
    log.info("%s: %d checkpoints x %d clips", run, len(weights), clips)
    return total[:, order] / len(weights)


def ensemble(runs: list[Path], table: pd.DataFrame, classes: list[str], tta_clips: int | None = None,
             weights: list[float] | None = None) -> np.ndarray:
    weights = weights or [1.0] * len(runs)
    probs = sum(w * predict_run(r, table, classes, tta_clips) for r, w in zip(runs, weights))
    return probs / sum(weights)
