"""Run provenance (the `provenance` object of run.json): code version, library versions, device, times and
hashes of the training data and folds, so a run can be traced and runs trained on different data are caught."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

from vidkit.rundir import RunDir

LIBRARIES = ("vidkit", "torch", "torchvision", "transformers", "timm", "accelerate")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the vidkit source tree; (None, None) outside a git checkout (a Kaggle bundle)."""
    root = root or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode:
            return None, None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device() -> dict:
    """GPU name and count when CUDA is there, else the CPU model and core count."""
    import torch
    if torch.cuda.is_available():
        return {"type": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
    name = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), name)
    except OSError:
        pass
    return {"type": "cpu", "name": name, "count": os.cpu_count()}


def table_hash(table: pd.DataFrame, columns: list[str]) -> str:
    """sha256 over the columns' values, rows in video_id order: the same data in any order hashes the same."""
    rows = table[[c for c in columns if c in table.columns]].astype(str).sort_values("video_id", kind="stable")
    return hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest()[:16]


def data_fingerprint(table: pd.DataFrame) -> str:
    """The training set as indexed: ids, labels, groups and frame counts."""
    return table_hash(table, ["video_id", "label", "group", "n_frames"])


def folds_hash(folds: pd.DataFrame) -> str:
    return table_hash(folds, ["video_id", "fold"])


def start(table: pd.DataFrame, folds: pd.DataFrame, previous: dict | None = None) -> dict:
    """A run's provenance at its start. The fold times of `previous` (the folder's earlier provenance) are
    kept when it was trained on the same data and folds: those folds' checkpoints are still that run's."""
    commit, dirty = git_state()
    prov = {"commit": commit, "dirty": dirty, "versions": versions(), "device": device(), "started": now(),
            "finished": None, "fold_seconds": {}, "data_fingerprint": data_fingerprint(table),
            "folds_hash": folds_hash(folds), "argv": sys.argv[1:]}
    previous = previous or {}
    if all(previous.get(k) == prov[k] for k in ("data_fingerprint", "folds_hash")):
        prov["fold_seconds"] = dict(previous.get("fold_seconds") or {})
    return prov


def record_fold(run: Path | RunDir, fold: str, seconds: float, add: bool = False) -> None:
    """One fold's wall time into run.json's provenance; `add`: a resumed fold, its attempts add up."""
    def change(prov):
        prov["fold_seconds"][fold] = round(seconds + (prov["fold_seconds"].get(fold, 0) if add else 0), 1)
    update(run, change)


def finish(run: Path | RunDir) -> None:
    update(run, lambda p: p.__setitem__("finished", now()))


def update(run: Path | RunDir, change) -> None:
    """Let `change(provenance)` edit the run folder's provenance in place."""
    def edit(meta: dict) -> None:
        prov = meta.setdefault("provenance", {"fold_seconds": {}})
        prov.setdefault("fold_seconds", {})
        change(prov)
    RunDir(run).update_meta(edit)


def read(run: Path | RunDir) -> dict:
    """A run folder's provenance ({} for runs made before it was recorded)."""
    return RunDir(run).meta().get("provenance", {})


def differences(runs: list[Path]) -> list[str]:
    """Warnings when runs were trained on different data (fingerprint) or folds (hash)."""
    provs = {Path(r).name: read(r) for r in runs}
    out = []
    for key, what in (("data_fingerprint", "training data"), ("folds_hash", "folds")):
        seen = {}
        for name, prov in provs.items():
            if prov.get(key):
                seen.setdefault(prov[key], []).append(name)
        if len(seen) > 1:
            groups = "; ".join(f"{', '.join(names)} ({h[:8]})" for h, names in seen.items())
            out.append(f"runs trained on different {what}: {groups}")
    return out
