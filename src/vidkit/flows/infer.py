"""Test-set probabilities of an ensemble: members (runs) one at a time, each with all its fold (and seed)
checkpoints, its own input size, frames and TTA views; then blended with the members' weights.

A runtime budget is met by measuring each member's speed on a few test videos and cutting TTA views, then
members, until the estimate for the whole test set fits.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from vidkit.config import Competition, Config
from vidkit.data import normalize
from vidkit.data.dataset import loader_settings
from vidkit.flows.ensemble import blend, load_ensemble
from vidkit.errors import VidkitError
from vidkit.files import load_checkpoint
from vidkit.rundir import CompDir, RunDir
from vidkit.engine.runtime import build_model, make_accelerator, to_device
from vidkit.engine.tta import SharedViews, TTASpec, eval_batch, eval_dataset, eval_loader, predict, predict_groups, tta_spec

log = logging.getLogger(__name__)


@dataclass
class Member:
    run: Path
    weight: float
    cfg: Config
    classes: list[str]
    checkpoints: list[Path]
    tta: TTASpec
    num_frames: int = 0
    class_counts: dict | None = None  # run.json's (runs from before vidkit recorded them: None)
    multilabel: bool = False          # run.json's task: sigmoid outputs, blended per class
    class_weights: dict | None = None  # multi-label: its weight per class (ensemble.yaml per_class_weights)

    @property
    def name(self) -> str:
        return self.run.name


def load_run(run: Path) -> tuple[Config, list[str], list[Path]]:
    """A run folder's config, classes and checkpoints: fold*/, full/ and seed sub-runs seed*/fold*/."""
    return RunDir(run).trained()



def load_member(run: Path, weight: float = 1.0, tta_clips: int | None = None) -> Member:
    cfg, classes, checkpoints = load_run(run)
    if cfg.features and not Path(cfg.features).exists() and (Path(run) / cfg.features).exists():
        cfg.features = os.path.normpath(os.path.abspath(Path(run) / cfg.features))  # a kernel bundle's backbone
    info = RunDir(run).meta()
    return Member(Path(run), weight, cfg, classes, checkpoints, tta_spec(cfg, tta_clips, classes),
                  info.get("input_spec", {}).get("num_frames", 0), info.get("class_counts"),
                  info.get("task") == "multilabel")


def resolve_members(comp: Competition, runs: list | None = None, tta_clips: int | None = None,
                    ensemble_yaml: str | Path | None = None,
                    out_root: Path | None = None) -> tuple[list[Member], dict]:
    """The ensemble's members and its spec (method, temperature, threshold, clip; {} when equal weights).

    `ensemble_yaml` (default <out_root>/<comp>/ensemble.yaml, out_root default weights/) gives the weights when `runs` is not given or names
    exactly its members (relative member paths: from its folder); other `runs` get equal weights; neither:
    every finished run of the competition, equal weights.
    """
    where = CompDir(comp, out_root)
    path = Path(ensemble_yaml) if ensemble_yaml else where.ensemble_yaml
    spec = load_ensemble(path) if ensemble_yaml or path.exists() else None  # a given file must be there
    weights = {}
    if spec:
        for m in spec["members"]:
            run = Path(m["run"])
            weights[(run if run.is_dir() or run.is_absolute() else path.parent / run).resolve()] = m["weight"]
    given = [Path(r) for r in runs] if runs else None
    if spec and (given is None or {g.resolve() for g in given} == set(weights)):
        members = [load_member(run, w, tta_clips) for run, w in weights.items() if w > 0]
        log.info("ensemble from %s: %s", path, ", ".join(f"{m.name} ({m.weight:.3f})" for m in members))
        return members, with_class_weights(spec, members, list(weights.values()))
    return [load_member(r, 1.0, tta_clips) for r in (given or where.finished_runs())], {}


def with_class_weights(spec: dict, members: list[Member], weights: list[float]) -> dict:
    """Hand each kept member its `per_class_weights` entry (`weights`: every yaml member's, dropped ones 0, whose
    per-class weights are 0 too) and return the spec with those lists cut to the kept members, as the kernel
    bundle's ensemble.yaml lists them."""
    table = spec.get("per_class_weights")
    if not table:
        return spec
    kept = [i for i, w in enumerate(weights) if w > 0]
    for member, i in zip(members, kept):
        member.class_weights = {c: ws[i] for c, ws in table.items()}
    return {**spec, "per_class_weights": {c: [ws[i] for i in kept] for c, ws in table.items()}}


def member_weights(members: list[Member], classes: list[str]):
    """Each member's blend weight, or (multi-label, per-class weights) a (members, classes) table; a class whose
    members with a weight were all left out (a runtime budget) falls back to the members' overall weights."""
    if not all(m.class_weights for m in members):
        return [m.weight for m in members]
    table = np.array([[m.class_weights[c] for c in classes] for m in members], dtype=np.float64)
    empty = table.sum(0) <= 0
    table[:, empty] = np.array([m.weight for m in members])[:, None]
    return table


def load_models(member: Member, device) -> list[torch.nn.Module]:
    models = []
    for path in member.checkpoints:
        model = build_model(member.cfg, len(member.classes))
        model.multilabel = member.multilabel  # engine.tta: sigmoid instead of softmax
        load_checkpoint(model, path)
        models.append(to_device(model, device, member.cfg.channels_last).eval())
    return models


def free(models: list, accelerator) -> None:
    """Drop a member's models before the next is loaded. Only a GPU needs its memory back at once: there a
    collection and the cache release; on the CPU, reference counting frees them, and a full `gc.collect` of
    torch's heap costs ~1 s a call (2 per member: measured, 5 of the 6.7 s of a one-video submit)."""
    models.clear()
    if torch.cuda.is_available():
        accelerator.free_memory()  # its own gc.collect and empty_cache


def predict_member(member: Member, table: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """(n_videos, len(classes)) probabilities, averaged over the member's checkpoints; NaN rows: unreadable.

    Each batch is decoded once and goes through every checkpoint of the member.
    """
    if member.cfg.features:
        return predict_heads({0: member}, table, classes)[0]
    if sorted(member.classes) != sorted(classes):
        raise VidkitError(f"{member.run}: classes differ from the competition's "
                          f"({len(member.classes)} vs {len(classes)})")
    accelerator = make_accelerator(member.cfg)
    models = load_models(member, accelerator.device)
    dataset = eval_dataset(member.cfg, models[0].input_spec, table, tta=member.tta, skip_errors=True)
    data = accelerator.prepare(eval_loader(member.cfg, dataset))
    start = time.time()
    probs = predict(models, data, accelerator, len(table), desc=member.name, reduce=member.tta)
    log.info("%s: %d checkpoints x %s in %.0fs", member.run, len(models),
             member.tta.protocol(models[0].input_spec.num_frames), time.time() - start)
    free(models, accelerator)
    return probs[:, [member.classes.index(c) for c in classes]]


def predict_shared(members: list[Member], table: pd.DataFrame, classes: list[str]) -> list[np.ndarray]:
    """Every member's probabilities (as `predict_member`'s), with each video decoded once for all of them
    (SharedViews: the union of the frames every clip of every member needs) and every member's models loaded.
    Heads read their store's features (embedded once per backbone for all its heads) and decode nothing; test
    videos a store lacks (a kernel's bundled backbone) are extracted first, once per backbone (`predict_heads`)."""
    if any(m.cfg.features for m in members):
        heads = predict_heads({i: m for i, m in enumerate(members) if m.cfg.features}, table, classes)
        rest = [m for m in members if not m.cfg.features]
        clips = iter(predict_shared(rest, table, classes) if rest else [])
        return [heads[i] if i in heads else next(clips) for i in range(len(members))]
    for m in members:
        if sorted(m.classes) != sorted(classes):
            raise VidkitError(f"{m.run}: classes differ from the competition's ({len(m.classes)} vs {len(classes)})")
    accelerators = [make_accelerator(m.cfg) for m in members]
    loaded = [load_models(m, a.device) for m, a in zip(members, accelerators)]
    datasets = [eval_dataset(m.cfg, models[0].input_spec, table, tta=m.tta, skip_errors=True)
                for m, models in zip(members, loaded)]
    batch = min(eval_batch(m.cfg, d.tta.n_views) for m, d in zip(members, datasets))
    settings = loader_settings(math.ceil(len(table) / batch), torch.cuda.is_available(), members[0].cfg.num_workers)
    data = accelerators[0].prepare(DataLoader(SharedViews(datasets), batch_size=batch, shuffle=False, **settings))
    start = time.time()
    groups = [(models, d.spec, m.tta, a) for m, models, d, a in zip(members, loaded, datasets, accelerators)]
    probs = predict_groups(groups, data, accelerators[0], len(table), desc="submit")
    log.info("%d members, each video decoded once, in %.0fs", len(members), time.time() - start)
    for models in loaded:
        models.clear()
    free([], accelerators[0])  # once, not per member
    return [p[:, [m.classes.index(c) for c in classes]] for m, p in zip(members, probs)]


def predict_head(member: Member, table: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """A head member's probabilities from its feature store: fold k's checkpoint on fold k's source (a
    fold-aligned store) or on the one source; a test id without features gets NaN (then the prior)."""
    from vidkit.engine.features import check_run_store, feature_dataset
    check_run_store(member.run, member.cfg, RunDir(member.run).meta().get("features"))
    if sorted(member.classes) != sorted(classes):
        raise VidkitError(f"{member.run}: classes differ from the competition's "
                          f"({len(member.classes)} vs {len(classes)})")
    accelerator = make_accelerator(member.cfg)
    total = np.zeros((len(table), len(member.classes)))
    for path, model in zip(member.checkpoints, load_models(member, accelerator.device)):
        fold = int(path.parent.name[4:]) if path.parent.name[4:].isdigit() else None
        dataset = feature_dataset(member.cfg, model.input_spec, table, None, fold, views="all", skip_errors=True,
                                  tta=member.tta)
        total += predict(model, eval_loader(member.cfg, dataset), accelerator, len(table), desc=member.name,
                         reduce=member.tta.reduce)
    return total[:, [member.classes.index(c) for c in classes]] / len(member.checkpoints)


def predict_heads(heads: dict[int, Member], table: pd.DataFrame, classes: list[str]) -> dict[int, np.ndarray]:
    """Head members' probabilities; test videos their store lacks (a new test set, the kernel's bundled backbone
    without arrays) are extracted first, once per backbone for all the heads on it (`extract_test`)."""
    import tempfile
    from vidkit.engine.features import store_key
    from vidkit.flows.embed import test_stores
    with tempfile.TemporaryDirectory(prefix="vidkit-test-features-") as scratch:
        stores = test_stores([m.cfg for m in heads.values()], table, Path(scratch))
        return {i: predict_head(dataclasses.replace(m, cfg=dataclasses.replace(
                    m.cfg, features=stores.get(store_key(m.cfg), m.cfg.features))), table, classes)
                for i, m in heads.items()}


def predict_run(run: Path, table: pd.DataFrame, classes: list[str], tta_clips: int | None = None) -> np.ndarray:
    return predict_member(load_member(Path(run), 1.0, tta_clips), table, classes)


def ensemble(members: list[Member | Path], table: pd.DataFrame, classes: list[str], tta_clips: int | None = None,
             weights: list[float] | None = None, method: str = "mean", shared: bool = True) -> np.ndarray:
    """Blend of the members' probabilities (each video decoded once for all members: `predict_shared`; with
    `shared=False`, members one at a time, each decoding for itself); NaN rows where any member failed."""
    members = [m if isinstance(m, Member) else load_member(Path(m), 1.0, tta_clips) for m in members]
    weights = weights if weights is not None else member_weights(members, classes)
    if shared:
        probs_list = predict_shared(members, table, classes)
    else:
        probs_list = [predict_member(m, table, classes) for m in members]
    ok = np.all([np.isfinite(p).all(1) for p in probs_list], axis=0)
    out = np.full((len(table), len(classes)), np.nan)
    if ok.any():
        out[ok] = blend([p[ok] for p in probs_list], weights, method, members[0].multilabel)
    return out


# ---------------------------------------------------------------- runtime budget

@torch.no_grad()
def measure_speed(member: Member, table: pd.DataFrame, n_sample: int = 4) -> dict:
    """Seconds to read one clip and to run one view through one checkpoint, timed on a few test videos."""
    accelerator = make_accelerator(member.cfg)
    models = load_models(member, accelerator.device)
    spec = models[0].input_spec
    dataset = eval_dataset(member.cfg, spec, table, tta=member.tta)
    picks = np.unique(np.linspace(0, len(table) - 1, min(n_sample, len(table)) + 1).round().astype(int))
    read_s = forward_s = 0.0
    for k, i in enumerate(picks):  # the first pick warms up and is not counted
        start = time.perf_counter()
        x = normalize(dataset[int(i)]["video"].to(accelerator.device), spec.mean, spec.std, spec.layout)
        read = time.perf_counter() - start
        with accelerator.autocast():
            for m in models:
                m(x)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if k or len(picks) == 1:
            read_s, forward_s = read_s + read, forward_s + time.perf_counter() - start - read
    n = max(1, len(picks) - 1)
    free(models, accelerator)
    return {"read_s": read_s / (n * member.tta.n_clips),
            "view_s": forward_s / (n * member.tta.n_views * len(member.checkpoints))}


def measure_member(member: Member, table: pd.DataFrame, extractions: dict) -> dict:
    """`measure_speed`'s seconds, or a head's: its own seconds per video (`video_s`: every view through every
    checkpoint) and its backbone's extraction seconds per video (`extract_s`, 0 when its store holds the test
    videos), timed once per backbone (`extractions`: store key -> seconds) however many heads share it."""
    if not member.cfg.features:
        return measure_speed(member, table)
    from vidkit.engine.features import cached_store, store_key
    from vidkit.flows.embed import extraction_speed
    root, manifest = cached_store(member.cfg)
    key = store_key(member.cfg)
    if key not in extractions:
        extractions[key] = 0.0 if manifest.get("precomputed") else extraction_speed(root, manifest, table)
    return {"video_s": head_video_s(member, manifest), "extract": key, "extract_s": extractions[key]}


@torch.no_grad()
def head_video_s(member: Member, manifest: dict, repeats: int = 3) -> float:
    """Seconds for one video's stored views through every checkpoint of a head (the first pass not counted)."""
    accelerator = make_accelerator(member.cfg)
    models = load_models(member, accelerator.device)
    x = torch.zeros(int(manifest.get("n_views", 1)), int(manifest["positions"]), int(manifest["dims"]),
                    device=accelerator.device)
    seconds = 0.0
    for k in range(repeats + 1):
        start = time.perf_counter()
        for m in models:
            m(x)
        seconds += (time.perf_counter() - start) if k else 0.0
    free(models, accelerator)
    return seconds / repeats


def total_s(members: list[Member], speeds: list[dict], n_videos: float) -> float:
    """The whole ensemble's estimate: every member, plus each backbone's extraction once for all its heads."""
    extractions = {s["extract"]: s["extract_s"] for s in speeds if "extract" in s}
    return sum(estimate_s(m, s, n_videos) for m, s in zip(members, speeds)) + n_videos * sum(extractions.values())


def estimate_s(member: Member, speed: dict, n_videos: float) -> float:
    if "video_s" in speed:  # a head (its backbone's extraction: `total_s`)
        return n_videos * speed["video_s"]
    return n_videos * (member.tta.n_clips * speed["read_s"]
                       + member.tta.n_views * len(member.checkpoints) * speed["view_s"])


def fit_budget(members: list[Member], speeds: list[dict], n_videos: float,
               budget_s: float) -> tuple[list[Member], list[str]]:
    """Cut TTA views (flip, crops, clips; the slowest member first), then members (lowest weight first),
    until the estimated time fits `budget_s`. Returns the members kept and what was dropped, in order."""
    members, speeds, dropped = list(members), list(speeds), []
    while total_s(members, speeds, n_videos) > budget_s:
        cuttable = [(estimate_s(m, s, n_videos), i) for i, (m, s) in enumerate(zip(members, speeds))
                    if m.tta.fewer() and "video_s" not in s]  # a head's views are its store's
        if cuttable:
            i = max(cuttable)[1]
            tta, what = members[i].tta.fewer()
            members[i] = dataclasses.replace(members[i], tta=tta)
            dropped.append(f"{members[i].name}: {what}")
        elif len(members) > 1:
            i = min(range(len(members)), key=lambda j: (members[j].weight, -j))
            dropped.append(f"member {members[i].name} (weight {members[i].weight:.3g})")
            del members[i], speeds[i]
        else:
            total = total_s(members, speeds, n_videos)
            dropped.append(f"nothing left to cut: {members[0].name} alone needs ~{total:.0f}s")
            break
    return members, dropped
