"""Local pretrained weights: read a state_dict from .safetensors / .pth / .bin, load what fits, report the rest."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from vidkit.errors import VidkitError
from vidkit.files import read_json

log = logging.getLogger(__name__)


PRETRAINED_DIR = Path("weights/pretrained")
ROOTS_ENV = "VIDKIT_PRETRAINED_ROOTS"  # more places for pretrained=auto (the training kernel: its weight inputs)
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
OWN_PRETRAINING = "vidkit_pretrain.json"  # in a `vidkit pretrain` folder: its source run and licence record


def _found_in(folder: Path, hf_folder: bool) -> Path | None:
    """The folder (config.json) or its one weight file: `folder` itself, else the shallowest folder below it
    that has any (a Kaggle Model mounts as <model>/<framework>/<variation>/<version>/)."""
    level = [folder]
    for _ in range(5):
        for d in level:
            if hf_folder and (d / "config.json").is_file():
                return d
            files = sorted(p for p in d.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
            if files and not hf_folder:
                return files[0] if len(files) == 1 else None
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir())
    return None


def _named_folders(root: Path, names: set[str], depth: int = 4) -> list[Path]:
    """Folders under `root` whose name is one of `names`, shallowest first."""
    level, found = [root], []
    for _ in range(depth):
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir())
        found += [d for d in level if d.name in names]
    return found


def auto_path(model: str, expects: str, hf_folder: bool) -> Path:
    """pretrained=auto: weights/pretrained/<model>/, then a folder <model>/ (or with dashes) under each
    folder of $VIDKIT_PRETRAINED_ROOTS: its one weight file, or the transformers folder with config.json."""
    roots = [Path(r) for r in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if r and Path(r).is_dir()]
    names = {model, model.replace("_", "-")}
    folders = [PRETRAINED_DIR / model] + [f for r in roots for f in ([r] if r.name in names else [])
                                          + _named_folders(r, names)]
    for folder in folders:
        hit = _found_in(folder, hf_folder) if folder.is_dir() else None
        if hit is not None:
            log.info("pretrained=auto: %s", hit)
            return hit
    where = f" (or in a folder {model}/ under {', '.join(map(str, roots))})" if roots else ""
    raise VidkitError(f"pretrained=auto: put {expects} in {PRETRAINED_DIR / model}/{where}; found none, "
                      "or several weight files in one folder")


def require_path(pretrained: str, model: str, expects: str, folder: bool = False) -> Path:
    """The local weights for `model`: a path, or `auto` (see `auto_path`)."""
    if pretrained == "auto":
        return auto_path(model, expects, folder)
    path = Path(pretrained)
    if not path.exists():
        raise VidkitError(f"pretrained: {path} not found; {model} needs {expects} there "
                          "(nothing is downloaded at run time)")
    return path


_trust = {"pickle": False}


@contextmanager
def trusting_pickles(trust: bool):
    """Within the block, .pth files that are full pickles (code, not just tensors) may be loaded.
    Only for files you trust: unpickling runs code. Off unless the user says `trust_pickle=true`."""
    before, _trust["pickle"] = _trust["pickle"], trust
    try:
        yield
    finally:
        _trust["pickle"] = before


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickles with code in them are refused by weights_only
        if not _trust["pickle"]:
            raise VidkitError(f"{path}: not a plain tensor checkpoint ({type(e).__name__}); convert it to "
                              ".safetensors, or pass trust_pickle=true if you trust the file") from None
        log.warning("%s: loading a full pickle because trust_pickle=true", path)
        state = torch.load(path, map_location="cpu", weights_only=False)  # explicit user opt-in (trust_pickle)
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise VidkitError(f"{path}: expected a state_dict, got {type(state).__name__}")
    return state


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str, strip_prefix: str = "") -> None:
    """Load every tensor whose name and shape fit; log the ones that do not (usually the head)."""
    own = model.state_dict()
    if strip_prefix:
        state = {k.removeprefix(strip_prefix): v for k, v in state.items()}
    fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state)
    if not fit:
        raise VidkitError(f"{source}: no tensor matches the model (first keys: {', '.join(list(state)[:3])})")
    model.load_state_dict(fit, strict=False)
    log.info("loaded %d/%d tensors from %s", len(fit), len(own), source)
    for what, keys in (("shape mismatch, kept random init", mismatched), ("not in checkpoint", missing),
                       ("unused from checkpoint", unexpected)):
        if keys:
            log.warning("%s: %s: %s%s", source, what, ", ".join(keys[:6]), " ..." if len(keys) > 6 else "")


def _card_license(folder: Path) -> str | None:
    """`license:` of a Hugging Face model card (README.md front matter) in `folder`."""
    card = folder / "README.md"
    text = card.read_text(errors="replace") if card.is_file() else ""
    if not text.startswith("---"):
        return None
    try:
        front = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    return str(front["license"]) if isinstance(front, dict) and front.get("license") else None


def pretrained_license(pretrained: str | None, model: str, fallback: str | None = None) -> dict:
    """Where pretrained weights came from and their licence: the checkpoint's own metadata (safetensors metadata
    `license`/`source`, a model card's `license:` next to it, config.json's `_name_or_path`), else `fallback`
    (the config's `pretrained_license`). Weights trained from scratch: {"source": None, "license": None}."""
    if not pretrained:
        return {"source": None, "license": None}
    path = PRETRAINED_DIR / model if pretrained == "auto" else Path(pretrained)
    folder = path if path.is_dir() else path.parent
    if (folder / OWN_PRETRAINING).is_file():  # the kit's own pretraining: own data (+ what it continued from)
        record = read_json(folder / OWN_PRETRAINING, "pretraining record")
        return {"source": record["source"], "license": record["license"], "parent": record.get("parent"),
                "use_test": record.get("use_test", False)}
    source, license = str(path), _card_license(folder)
    if (folder / "config.json").is_file():
        source = read_json(folder / "config.json", "model config").get("_name_or_path") or source
    if path.suffix == ".safetensors" and path.is_file():
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        license, source = meta.get("license", license), meta.get("source", source)
    return {"source": source, "license": license or fallback}
