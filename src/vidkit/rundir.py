"""Where runs and their files live: every file name of a run folder and of a competition's output folder.

A run folder (`RunDir`; by default <out_root>/<competition>/<config>/):
  config.yaml       the resolved training config
  run.json          what a run is: classes, competition, model, input_spec, protocol, provenance, ... (a dict
                    that other code extends: `meta()` / `update_meta()`, never the file name)
  folds.csv         the folds it was trained on
  fold<k>/          model.safetensors (best epoch), metrics.jsonl (one record per epoch), oof.csv (that fold's);
                    full/ for fold=-1, seed<s>/fold<k>/ for seed sub-runs; while it trains, state/ (accelerate's
                    save_state, progress.json, ema.safetensors, plateau.pt; swapped in through state.tmp/, state.old/)
  oof.csv           every fold's out-of-fold predictions; cv_report.json: the CV report; its plots (PLOTS);
                    errors.png + errors.html: the error gallery; explain/<video id>.png: saliency
  backbone.safetensors + backbone.json   a spotting head on per-frame features: the store's backbone and its
                    recipe (vidkit.flows.spotbackbone), so the run folder alone submits
A competition's folder (`CompDir`; <out_root>/<competition>/): its runs, ensemble.yaml, runs.md and runs.csv.
"""
from __future__ import annotations

from pathlib import Path

from vidkit.config import Competition, Config, apply, read_yaml, save_config
from vidkit.errors import VidkitError
from vidkit.files import check_keys, read_csv, read_json, write_json

OUT_ROOT = Path("weights")  # the default output root, relative to the working folder (every verb's out_root=)
CONFIG, META, FOLDS, OOF, REPORT = "config.yaml", "run.json", "folds.csv", "oof.csv", "cv_report.json"
WEIGHTS, METRICS = "model.safetensors", "metrics.jsonl"
ENSEMBLE, RUNS_MD, RUNS_CSV = "ensemble.yaml", "runs.md", "runs.csv"
STATE, PROGRESS, EMA_WEIGHTS, PLATEAU = "state", "progress.json", "ema.safetensors", "plateau.pt"  # in state/
PLOTS = {"confusion": "confusion_matrix.png", "per_class": "per_class.png", "curves": "curves.png",
         "class_distribution": "class_distribution.png"}  # the CV report's plots, by what they show
GALLERY_PNG, GALLERY_HTML, EXPLAIN = "errors.png", "errors.html", "explain"
# a spotting head on per-frame features: the backbone that made them (weights + recipe), so the run folder alone submits
BACKBONE_WEIGHTS, BACKBONE_JSON = "backbone.safetensors", "backbone.json"
GALLERY_SIZE = 24  # videos in the error gallery (cv writes it; `vidkit gallery n=` changes it)
REPORT_KEYS = {"metric": str, "score": (int, float), "fold_scores": list}  # what every reader of a report needs
CHECKPOINTS = (f"fold*/{WEIGHTS}", f"full/{WEIGHTS}", f"seed*/fold*/{WEIGHTS}", f"seed*/full/{WEIGHTS}")


def fold_name(fold: int) -> str:
    return "full" if fold == -1 else f"fold{fold}"


def weights_file(fold_dir: str | Path) -> Path:
    """A fold folder's best-epoch checkpoint."""
    return Path(fold_dir) / WEIGHTS


def state_dir(fold_dir: str | Path, suffix: str = "") -> Path:
    """A fold folder's resumable training state (`suffix` .tmp / .old: the folders a save swaps through)."""
    return Path(fold_dir) / f"{STATE}{suffix}"


def metrics_file(fold_dir: str | Path) -> Path:
    """A fold folder's per-epoch records (JSON lines)."""
    return Path(fold_dir) / METRICS


def oof_file(folder: str | Path) -> Path:
    """The out-of-fold predictions of a fold folder (that fold) or of a run folder (every fold)."""
    return Path(folder) / OOF


def ensemble_file(folder: str | Path) -> Path:
    """The blend in a folder: a competition's output folder, or a kernel bundle."""
    return Path(folder) / ENSEMBLE


class RunDir:
    """One run folder: its files by name, read and written here."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __truediv__(self, other) -> Path:
        return self.path / other

    @property
    def name(self) -> str:
        return self.path.name

    config_yaml = property(lambda self: self.path / CONFIG)
    meta_file = property(lambda self: self.path / META)
    folds_csv = property(lambda self: self.path / FOLDS)
    oof_csv = property(lambda self: oof_file(self.path))
    report_file = property(lambda self: self.path / REPORT)
    gallery_png = property(lambda self: self.path / GALLERY_PNG)
    gallery_html = property(lambda self: self.path / GALLERY_HTML)

    def plot(self, name: str) -> Path:
        """One of the CV report's plots, by its key in `PLOTS`."""
        return self.path / PLOTS[name]

    def explain_png(self, video_id: str) -> Path:
        return self.path / EXPLAIN / f"{video_id}.png"

    def fold(self, fold: int) -> Path:
        return self.path / fold_name(fold)

    def checkpoint(self, fold: int) -> Path:
        return weights_file(self.fold(fold))

    def checkpoints(self) -> list[Path]:
        """Every checkpoint: fold*/, full/ and the seed sub-runs' seed*/fold*/, seed*/full/."""
        return [w for pattern in CHECKPOINTS for w in sorted(self.path.glob(pattern))]

    def metrics_files(self) -> list[Path]:
        return sorted(self.path.glob(f"fold*/{METRICS}"))

    def is_run(self) -> bool:
        return self.config_yaml.is_file() and self.meta_file.is_file()

    def finished(self) -> bool:
        """Cross-validated to the end (it has a CV report)."""
        return self.report_file.exists()  # a folder there is an error when read

    def trained(self) -> tuple[Config, list[str], list[Path]]:
        """Its config, classes and checkpoints (fold*/, full/, seed*/fold*/); a one-line error when it has none."""
        if not self.is_run():
            raise VidkitError(f"{self.path}: not a run folder (no {CONFIG}/{META}); run `make cv` first")
        meta = self.meta()
        check_keys(meta, {"classes": list}, self.meta_file)
        weights = self.checkpoints()
        if not weights:
            raise VidkitError(f"{self.path}: no fold*/{WEIGHTS} checkpoints")
        self.check_fold_checkpoints()
        return self.read_config(), meta["classes"], weights

    def check_fold_checkpoints(self) -> None:
        """A cross-validated run has every fold's checkpoint: a lost one is an error, not a silent fold less."""
        if not self.finished() or not self.folds_csv.exists() or not any(self.path.glob(f"fold*/{WEIGHTS}")):
            return
        folds = sorted(read_csv(self.folds_csv, ("fold",), ("fold",), what="folds file")["fold"].astype(int).unique())
        lost = [self.checkpoint(k) for k in folds if not self.checkpoint(k).exists()]
        if lost:
            raise VidkitError(f"{lost[0]}: checkpoint missing (the run has folds {folds[0]}-{folds[-1]}); "
                              "copy it back or re-run `make cv` with resume=true")

    def read_config(self) -> Config:
        return apply(Config(), read_yaml(self.config_yaml), where=f"{self.config_yaml}: ")

    def write_config(self, cfg: Config) -> None:
        save_config(cfg, self.config_yaml)

    def meta(self) -> dict:
        """run.json as a dict ({} for a folder without one)."""
        return read_json(self.meta_file, META) if self.meta_file.exists() else {}

    def write_meta(self, meta: dict) -> None:
        """Atomic: a kill never leaves a half-written run.json."""
        write_json(self.meta_file, meta)

    def update_meta(self, change=None, **keys) -> dict:
        """Set `keys` in run.json and/or let `change(meta)` edit it in place; returns the new dict."""
        meta = self.meta()
        meta.update(keys)
        if change is not None:
            change(meta)
        self.write_meta(meta)
        return meta

    def competition_yaml(self) -> str | None:
        """The competition yaml it was trained on: run.json's (resolved at cv time), else config.yaml's `comp`."""
        if self.meta().get("competition_yaml"):
            return self.meta()["competition_yaml"]
        return self.read_config().comp if self.config_yaml.is_file() else None

    def report(self) -> dict:
        if not self.finished():
            raise VidkitError(f"{self.path}: no {REPORT}; cross-validate it first (`make cv`)")
        return read_json(self.report_file, REPORT, REPORT_KEYS)

    def write_report(self, report: dict) -> None:
        write_json(self.report_file, report)


def competition_of(runs: list) -> str:
    """The one competition yaml that `runs` were trained on; a one-line error when they differ or cannot say."""
    found: dict[str, list[str]] = {}
    for r in runs:
        path = RunDir(r).competition_yaml()
        if path is None:
            raise VidkitError(f"{r}: not a run folder (no {CONFIG}/{META}); pass comp=")
        found.setdefault(str(Path(path).resolve()), []).append(str(r))
    if len(found) > 1:
        which = "; ".join(f"{', '.join(rs)} ({path})" for path, rs in found.items())
        raise VidkitError(f"runs of different competitions: {which}; blend runs of one competition")
    return next(iter(found))


class CompDir:
    """A competition's output folder, <out_root>/<name>/: one run folder per config, ensemble.yaml, runs.md/csv."""

    def __init__(self, comp: Competition | str, root: str | Path | None = None):
        self.name = comp if isinstance(comp, str) else comp.name
        self.root = Path(root) if root is not None else OUT_ROOT
        self.path = self.root / self.name

    ensemble_yaml = property(lambda self: ensemble_file(self.path))
    runs_md = property(lambda self: self.path / RUNS_MD)
    runs_csv = property(lambda self: self.path / RUNS_CSV)

    def run(self, cfg: Config) -> RunDir:
        """The run folder of a config: `out_dir` when set, else <out_root>/<competition>/<config name>."""
        return RunDir(cfg.out_dir if cfg.out_dir else self.path / (cfg.name or cfg.model))

    def finished_runs(self) -> list[Path]:
        """Every cross-validated run of the competition (those with a CV report), by name."""
        runs = sorted(p.parent for p in self.path.glob(f"*/{REPORT}"))
        if not runs:
            raise VidkitError(f"no finished runs under {self.path}; run `make cv` first or pass runs=")
        return runs
