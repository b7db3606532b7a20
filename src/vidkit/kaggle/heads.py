"""Head runs in a kernel bundle. Each backbone the heads read from goes in once, as a store without arrays
(`backbones/b<k>/`: the store's manifest, whose recipe rebuilds the backbone, and its weights per source), so the
offline notebook extracts the test videos' features once per backbone for all its heads (`flows.embed.extract_test`).
A weights file already in the bundle (an end-to-end member's fold checkpoint that is also the backbone of a
fold-aligned store) is referred to, not copied again: files are matched by sha256. Heads on a competition's own
precomputed features (`features_dir:`) carry none: the kernel reads the test features from the competition's data.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from vidkit.errors import VidkitError
from vidkit.files import read_json, read_yaml_file, save_safetensors, write_json, write_yaml
from vidkit.kaggle.template.kernel_code import sha256
from vidkit.rundir import BACKBONE_JSON, BACKBONE_WEIGHTS

BACKBONES = "backbones"


def weights_in(dest: Path) -> dict[str, str]:
    """sha256 -> bundle-relative path of every weights file already in the bundle."""
    return {sha256(p): p.relative_to(dest).as_posix() for p in sorted(dest.rglob("*.safetensors"))}


def bundle_backbone(root: Path, manifest: dict, folder: Path, dest: Path, known: dict[str, str]) -> Path:
    """One store's backbone as `folder` (manifest + weights), each weights file once in the whole bundle."""
    from vidkit.flows.embed import load_backbone, recipe_of, weights_hash
    cfg, num_classes, checkpoints = recipe_of(root, manifest)
    folder.mkdir(parents=True)
    where = {}
    for source, checkpoint in checkpoints.items():
        path = folder / f"{source}.safetensors"
        if checkpoint is None:  # pretrained weights: the model embed loaded, saved as they are
            model = load_backbone(cfg, num_classes, None, "cpu")
            if weights_hash(model) != manifest["sources"].get(source):
                raise VidkitError(f"{cfg.pretrained}: not the weights {root} was embedded with ({source}); "
                                  "re-embed or retrain the heads")
            save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()}, path)
            digest = sha256(path)
            if digest in known:
                path.unlink()  # the same bytes are in the bundle already
        elif checkpoint.is_file():
            digest = sha256(checkpoint)
            if digest not in known:
                shutil.copyfile(checkpoint, path)
        else:
            raise VidkitError(f"{checkpoint}: the backbone checkpoint of {source} in {root} is missing")
        known.setdefault(digest, path.relative_to(dest).as_posix())
        where[source] = os.path.relpath(dest / known[digest], folder)
    recipe = {**manifest["recipe"], "checkpoints": where,
              "config": {**manifest["recipe"]["config"], "pretrained": None, "cache": False, "cache_dir": None}}
    kept = {k: v for k, v in manifest.items() if k not in ("root", "recipe")}
    write_json(folder / "manifest.json", {**kept, "recipe": recipe, "complete": False, "n_videos": 0,
                                          "holds": "no arrays: a kernel bundle's backbone"})
    return folder


def bundle_heads(members, folders: list[str], dest: Path) -> list[str]:
    """The backbones of the head members (once per backbone) under backbones/, and each head's config.yaml
    pointing at its backbone (a path relative to the run folder); heads on a features_dir carry nothing more.
    Returns the backbone folders, bundle-relative."""
    from vidkit.engine.features import cached_store, store_key
    known, stores = weights_in(dest), {}
    for folder, member in zip(folders, members):
        if not member.cfg.features or (Path(member.run) / BACKBONE_WEIGHTS).is_file():
            continue  # a spotting head run carries its backbone itself (copied with the run folder)
        root, manifest = cached_store(member.cfg)
        if manifest.get("precomputed"):
            continue  # `submit` reads the competition's own features_dir (vidkit.flows.submit.heads_read)
        key = store_key(member.cfg)
        if key not in stores:
            stores[key] = bundle_backbone(Path(root), manifest, dest / BACKBONES / f"b{len(stores)}", dest, known)
        config_file = dest / folder / "config.yaml"
        write_yaml(config_file, {**read_yaml_file(config_file),
                                 "features": os.path.relpath(stores[key], dest / folder)})
    return [p.relative_to(dest).as_posix() for p in stores.values()]


def backbone_pretrained(member) -> dict:
    """{"source", "license"} of the weights a head's backbone started from: the cross-validated run whose fold
    checkpoints embedded the store (its run.json), else the store's pretrained weights; {} for precomputed features."""
    from vidkit.analysis.report import pretrained_of
    from vidkit.engine.features import cached_store
    from vidkit.flows.embed import recipe_of
    from vidkit.models.weights import pretrained_license
    from vidkit.rundir import RunDir
    own = Path(member.run) / BACKBONE_JSON
    if own.is_file():  # a spotting head run: its backbone's recipe travels with it, the store is not needed
        root, manifest = Path(member.run), {"recipe": read_json(own)["recipe"]}
    else:
        root, manifest = cached_store(member.cfg)
    if manifest.get("precomputed"):
        return {}
    cfg, _, checkpoints = recipe_of(Path(root), manifest)
    runs = [p.parent.parent for p in checkpoints.values() if p is not None]
    if runs and RunDir(runs[0]).is_run():
        return pretrained_of(runs[0])
    return pretrained_license(cfg.pretrained, cfg.model, cfg.pretrained_license)


def check_backbone_licences(comp, members) -> None:
    """`allowed_licenses` holds for the backbones the heads' features come from, as for the members' own weights."""
    from vidkit.analysis.report import licence_allowed, licence_label
    allowed = [str(a).lower() for a in comp.allowed_licenses] if comp.allowed_licenses is not None else None
    for member in (m for m in members if m.cfg.features):
        pretrained = backbone_pretrained(member)
        if not pretrained:
            continue
        label = licence_label(pretrained)
        print(f"{member.run.name}: backbone pretrained {pretrained.get('source') or '-'} (licence: {label})")
        if not licence_allowed(pretrained, allowed):
            raise VidkitError(f"{member.cfg.features}: the backbone's pretrained weights {pretrained.get('source')} "
                              f"are licensed {label!r}, not one of allowed_licenses {comp.allowed_licenses} "
                              f"({comp.path})")
