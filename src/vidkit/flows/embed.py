"""`embed`: a frozen backbone turns every training and test video into features, stored once
(`vidkit.data.features` describes the store) for the heads of `vidkit.models.heads`.

The backbone is the config's model with its `pretrained=` weights (one source, `all`) or, with `run=`, each fold
checkpoint of a cross-validated run (sources `fold<k>`: fold-aligned; the run's config builds the model, the
given config's TTA settings make the views). Every TTA view (clips x crops x flip) is kept. The manifest records
what made the store; anything changed (backbone, spec, views, dtype, vidkit version) rebuilds the store, a
source whose weights changed rebuilds that source, and a video whose file is there is never redone (a killed
embed resumes). An unreadable video is logged and gets no file (training leaves it out; a test video gets the
prior at submit).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

import vidkit
from vidkit.config import Competition, Config, apply, as_competition
from vidkit.data import classes_of, index_test, index_train
from vidkit.data.check import drop_bad
from vidkit.data.dataset import loader_settings
from vidkit.data.features import estimate_bytes, feature_path, read_manifest, write_features, write_manifest
from vidkit.data.shard import in_shard, parse_shard
from vidkit.engine.features import backbone_recipe, weights_hash  # noqa: F401  (spotting stores record them too)
from vidkit.engine.runtime import build_model, make_accelerator
from vidkit.engine.tta import eval_batch, eval_dataset, tta_spec
from vidkit.errors import VidkitError
from vidkit.models.heads import backbone_tokens
from vidkit.rundir import RunDir

log = logging.getLogger(__name__)
DTYPES = ("float16", "float32")
# how backbone_tokens lays out positions; a store made under another rule is rebuilt (2: transformers video models
# that mean-pool their tokens keep one position per tubelet step)
POSITIONS_RULE = 2


def embed_table(comp: Competition, cfg: Config) -> pd.DataFrame:
    """Every training video with readable media, then every test video with media; ids must be unique."""
    train = drop_bad(index_train(comp), cfg.exclude)
    test = index_test(comp) if comp.test_dir or comp.sample_submission else train.iloc[:0]
    test = test[test["path"].notna()]
    both = set(train["video_id"]) & set(test["video_id"])
    if both:
        raise VidkitError(f"{comp.path}: training and test share video ids ({', '.join(sorted(both)[:3])}); "
                          "a store keys videos by id")
    return pd.concat([train, test], ignore_index=True)


def backbones(cfg: Config, run: str | None) -> tuple[Config, dict[str, Path | None], list[str] | None]:
    """The backbone's config, its sources (name -> checkpoint; None: the config's pretrained weights) and, for a
    run, its classes (the checkpoints' head size)."""
    if not run:
        return cfg, {"all": None}, None
    rd = RunDir(Path(run))
    if not rd.is_run():
        raise VidkitError(f"{run}: not a run folder (no config.yaml/run.json); run `vidkit cv` first")
    folds = sorted(rd.path.glob("fold[0-9]*/model.safetensors"), key=lambda p: int(p.parent.name[4:]))
    if not folds:
        raise VidkitError(f"{run}: no fold*/model.safetensors (embed run= needs a cross-validated run)")
    views = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name.startswith("tta_")}
    backbone = dataclasses.replace(rd.read_config(), **views, num_workers=cfg.num_workers, comp=cfg.comp,
                                   video_backend=cfg.video_backend, eval_batch_size=cfg.eval_batch_size)
    return backbone, {p.parent.name: p for p in folds}, rd.meta()["classes"]


def settings(cfg: Config, comp: Competition, spec, dtype: str) -> dict:
    """What makes a store's arrays: any change rebuilds it."""
    tta = tta_spec(cfg)
    return {"backbone": cfg.model, "config": cfg.name, "model_args": cfg.model_args, "competition": comp.name,
            "positions_rule": POSITIONS_RULE,
            "spec": dataclasses.asdict(spec), "dtype": dtype, "vidkit": vidkit.__version__,
            "views": {"protocol": tta.protocol(spec.num_frames), **dataclasses.asdict(tta),
                      "frame_stride": cfg.frame_stride, "pad_mode": cfg.pad_mode, "resize_short": cfg.resize_short,
                      "resize_mode": cfg.resize_mode}}


def prepare_store(root: Path, wanted: dict, hashes: dict) -> dict:
    """The manifest to write; what changed since the last embed is deleted here (never silently reused)."""
    old, wanted = read_manifest(root), json.loads(json.dumps(wanted))  # tuples as the manifest holds them
    if old is not None:
        changed = sorted(k for k in wanted if old.get(k) != wanted[k])
        if changed:
            log.warning("%s: %s changed: rebuilding the whole store", root, ", ".join(changed))
            for source in old.get("sources", {}):
                shutil.rmtree(root / source, ignore_errors=True)
            old = None
    manifest = {**(old or {}), **wanted, "sources": {**(old or {}).get("sources", {}), **hashes}, "complete": False}
    for source, digest in hashes.items():
        if old is not None and old.get("sources", {}).get(source) not in (None, digest):
            log.warning("%s: %s's weights changed: rebuilding it", root, source)
            shutil.rmtree(root / source, ignore_errors=True)
    for source in set(manifest["sources"]) - set(hashes):  # a run with fewer folds, or pretrained vs run=
        shutil.rmtree(root / source, ignore_errors=True)
        del manifest["sources"][source]
    return manifest


def load_backbone(cfg: Config, num_classes: int, checkpoint: Path | None, device) -> torch.nn.Module:
    torch.manual_seed(cfg.seed if isinstance(cfg.seed, int) else 0)  # what pretrained weights leave out: fixed
    model = build_model(cfg, num_classes, None if checkpoint else cfg.pretrained)
    if checkpoint is not None:
        model.load_state_dict(load_file(str(checkpoint)))
    return model.to(device).eval()


@torch.no_grad()
def embed_source(model, cfg: Config, table: pd.DataFrame, root: Path, source: str, num_classes: int,
                 dtype: str, workers: int | None, accelerator) -> int:
    """Features of the videos of `table` that have no file yet in `source`; returns how many were written."""
    todo = table[[not feature_path(root, source, v).is_file() for v in table["video_id"]]].reset_index(drop=True)
    if todo.empty:
        return 0
    dataset = eval_dataset(cfg, model.input_spec, todo, tta=tta_spec(cfg), skip_errors=True)
    batch = eval_batch(cfg, dataset.tta.n_views)
    settings_ = loader_settings(math.ceil(len(todo) / batch), torch.cuda.is_available(),
                                workers if workers is not None else cfg.num_workers)
    written = 0
    for item in DataLoader(dataset, batch_size=batch, shuffle=False, **settings_):
        x = item["video"].to(accelerator.device)
        x = normalize_views(x, model.input_spec)
        b, v = x.shape[:2]
        with accelerator.autocast():
            tokens = backbone_tokens(model, x.flatten(0, 1), num_classes).float()
        tokens = tokens.view(b, v, *tokens.shape[1:]).cpu().numpy().astype(dtype)
        for j, (i, ok) in enumerate(zip(item["index"].tolist(), item["ok"].tolist())):
            if ok:
                write_features(feature_path(root, source, todo["video_id"][i]), tokens[j])
                written += 1
        log.info("%s: %d / %d videos", source, written, len(todo))
    return written


def normalize_views(x: torch.Tensor, spec) -> torch.Tensor:
    from vidkit.data import normalize
    return normalize(x, spec.mean, spec.std, spec.layout) if x.dtype == torch.uint8 else x


def probe_shape(model, cfg: Config, row: pd.DataFrame, num_classes: int, device) -> tuple[int, int, int]:
    """(views, positions, dims) of one video's features (the size estimate and the heads' input)."""
    dataset = eval_dataset(cfg, model.input_spec, row, tta=tta_spec(cfg))
    x = normalize_views(dataset[0]["video"].to(device), model.input_spec)
    tokens = backbone_tokens(model, x, num_classes)
    return x.shape[0], tokens.shape[1], tokens.shape[2]


def default_out(comp: Competition, cfg: Config, run: str | None) -> Path:
    return Path("features") / comp.name / (Path(run).name if run else (cfg.name or cfg.model))


def run_embed(cfg: Config, comp: Competition | str | None = None, run: str | None = None, out: str | None = None,
              shard: str | None = None, workers: int | None = None, dtype: str = "float16") -> Path:
    """Build (or finish, or rebuild what changed of) the feature store; returns its folder."""
    if dtype not in DTYPES:
        raise VidkitError(f"dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    comp = as_competition(comp or cfg.comp)
    if comp.task == "spotting":  # per-frame features of long videos (vidkit.flows.spotfeatures)
        from vidkit.flows.spotfeatures import embed_frames
        return embed_frames(cfg, comp, out, dtype)
    backbone, sources, run_classes = backbones(cfg, run)
    root = Path(out) if out else default_out(comp, cfg, run)
    table = embed_table(comp, backbone)
    num_classes = len(run_classes or classes_of(comp, table[table["label"].notna()]))
    mine = table[[in_shard(v, parse_shard(shard)) for v in table["video_id"]]].reset_index(drop=True)
    accelerator = make_accelerator(backbone)
    models = {s: load_backbone(backbone, num_classes, ckpt, accelerator.device) for s, ckpt in sources.items()}
    first = next(iter(models.values()))
    manifest = prepare_store(root, settings(backbone, comp, first.input_spec, dtype),
                             {s: weights_hash(m) for s, m in models.items()})
    n_views, positions, dims = probe_shape(first, backbone, table.iloc[:1], num_classes, accelerator.device)
    manifest.update(n_views=n_views, positions=positions, dims=dims, n_videos=len(table),
                    recipe=backbone_recipe(backbone, sources, num_classes))
    write_manifest(root, manifest)
    size = estimate_bytes(len(mine), n_views, positions, dims, len(sources), np.dtype(dtype).itemsize)
    print(f"embed: {len(mine)} videos x {len(sources)} source(s) x {n_views} views x {positions} positions x "
          f"{dims} dims x {np.dtype(dtype).itemsize} bytes = {size / 2**20:.1f} MiB -> {root}", flush=True)
    for source, model in models.items():
        n = embed_source(model, backbone, mine, root, source, num_classes, dtype, workers, accelerator)
        print(f"{source}: {n} videos embedded ({len(mine) - n} there already or unreadable)")
    done = all(feature_path(root, s, v).is_file() for s in sources for v in table["video_id"])
    if done:
        write_manifest(root, {**read_manifest(root), "complete": True})
    print(root)
    return root


# ---------------------------------------------------------------- test videos at submit time (and in a kernel)

def recipe_of(root: Path, manifest: dict) -> tuple[Config, int, dict]:
    """(backbone config, head size, source -> checkpoint or None); a checkpoint path may be relative to the store."""
    recipe = manifest.get("recipe")
    if not recipe:
        raise VidkitError(f"{Path(root) / 'manifest.json'}: no backbone recipe (embedded by an older vidkit); "
                          "re-run `vidkit embed` to extract test videos at submit or bundle it in a kernel")
    cfg = apply(Config(), recipe["config"], where=f"{Path(root) / 'manifest.json'}: recipe: ")
    checkpoints = {s: None if p is None else Path(root) / p for s, p in recipe["checkpoints"].items()}
    return cfg, int(recipe["num_classes"]), checkpoints


def load_recipe_backbones(root: Path, manifest: dict, device) -> tuple[Config, int, dict]:
    """The store's backbone per source, checked against the weights hash the store recorded: other weights than
    the heads trained on are refused, naming the store."""
    cfg, num_classes, checkpoints = recipe_of(root, manifest)
    models = {}
    for source, checkpoint in checkpoints.items():
        if checkpoint is not None and not checkpoint.is_file():
            raise VidkitError(f"{checkpoint}: the backbone checkpoint of {source} in {root} is missing")
        model = load_backbone(cfg, num_classes, checkpoint, device)
        if weights_hash(model) != manifest["sources"].get(source):
            raise VidkitError(f"{checkpoint or cfg.pretrained}: not the weights {root} was embedded with "
                              f"({source}); re-embed or retrain the heads")
        models[source] = model
    return cfg, num_classes, models


EXTRACTIONS: list = []  # (store root, videos extracted) per test-time extraction in this process (a test counts)


def extract_test(root: Path, manifest: dict, table: pd.DataFrame, scratch: Path) -> Path:
    """A store to read `table`'s videos from: `root` when it holds them all, else `scratch`, a store with the same
    manifest holding root's files of them and the rest extracted once by the store's own backbone (every source,
    every view); an unreadable video gets no file (the prior)."""
    missing = [v for v in table["video_id"] if not all(feature_path(root, s, v).is_file()
                                                     for s in manifest["sources"])]
    if not missing:
        return Path(root)
    accelerator = make_accelerator(recipe_of(root, manifest)[0])
    cfg, num_classes, models = load_recipe_backbones(Path(root), manifest, accelerator.device)
    write_manifest(scratch, {**{k: v for k, v in manifest.items() if k != "root"},
                             "holds": "the test videos of one submit"})
    for source, model in models.items():
        for video in table["video_id"]:
            if feature_path(root, source, video).is_file():
                feature_path(scratch, source, video).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(feature_path(root, source, video), feature_path(scratch, source, video))
        todo = table[table["video_id"].isin(missing)].reset_index(drop=True)
        embed_source(model, cfg, todo, scratch, source, num_classes, manifest.get("dtype", "float16"), None,
                     accelerator)
    EXTRACTIONS.append((str(root), len(missing)))
    log.info("%s: %d test videos extracted by %s into %s", root, len(missing), cfg.model, scratch)
    return Path(scratch)


@torch.no_grad()
def extraction_speed(root: Path, manifest: dict, table: pd.DataFrame, n_sample: int = 3) -> float:
    """Seconds to extract one video (decode + every view through every source), timed on a few of `table`'s
    videos; 0 when the store holds them all already."""
    if all(feature_path(root, s, v).is_file() for s in manifest["sources"] for v in table["video_id"]):
        return 0.0
    accelerator = make_accelerator(recipe_of(root, manifest)[0])
    cfg, num_classes, models = load_recipe_backbones(Path(root), manifest, accelerator.device)
    first = next(iter(models.values()))
    dataset = eval_dataset(cfg, first.input_spec, table, tta=tta_spec(cfg))
    picks = np.unique(np.linspace(0, len(table) - 1, min(n_sample, len(table)) + 1).round().astype(int))
    total = 0.0
    for k, i in enumerate(picks):  # the first pick warms up and is not counted
        start = time.perf_counter()
        x = normalize_views(dataset[int(i)]["video"].to(accelerator.device), first.input_spec)
        with accelerator.autocast():
            for model in models.values():
                backbone_tokens(model, x, num_classes)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if k or len(picks) == 1:
            total += time.perf_counter() - start
    return total / max(1, len(picks) - 1)


def test_stores(head_cfgs: list, table: pd.DataFrame, scratch: Path) -> dict[str, str]:
    """store_key -> the store each head reads `table` from: one `extract_test` per backbone (however many heads and
    stores share it) into its own folder of `scratch`; precomputed features (`features_dir:`) are read as they are."""
    from vidkit.engine.features import cached_store, store_key
    out = {}
    for cfg in head_cfgs:
        key = store_key(cfg)
        root, manifest = cached_store(cfg)
        if key in out or manifest.get("precomputed"):
            continue
        out[key] = str(extract_test(root, manifest, table, Path(scratch) / f"store{len(out)}"))
    return out
