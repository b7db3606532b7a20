"""Local pretrained weights: read a state_dict from .safetensors / .pth / .bin, load what fits, report the rest."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from vidkit.errors import VidkitError

log = logging.getLogger(__name__)


PRETRAINED_DIR = Path("weights/pretrained")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def require_path(pretrained: str, model: str, expects: str, folder: bool = False) -> Path:
    """The local weights for `model`: a path, or `auto` = the one file (or HF folder) in weights/pretrained/<model>/."""
    if pretrained == "auto":
        base = PRETRAINED_DIR / model
        if folder and (base / "config.json").is_file():
            return base
        files = sorted(p for p in base.glob("*") if p.suffix in WEIGHT_SUFFIXES) if base.is_dir() else []
        if not folder and len(files) == 1:
            return files[0]
        found = f" (found {len(files)} weight files)" if files else ""
        raise VidkitError(f"pretrained=auto: put {expects} in {base}/{found}")
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
