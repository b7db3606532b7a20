"""`tune`: an Optuna study over a YAML search space on chosen folds of the competition's fixed folds.

TPE sampler, median pruner fed each epoch's validation score, the study in a database (SQLite by default, any
SQLAlchemy URL with `storage=`) so running `tune` again continues it and several machines can share it.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import warnings
from pathlib import Path

import yaml

from vidkit.config import Competition, Config, apply, read_yaml
from vidkit.errors import VidkitError
from vidkit.files import save_figure, write_csv, write_text
from vidkit.rundir import CompDir, fold_name

log = logging.getLogger(__name__)
HEARTBEAT_S = 60  # a trial whose process died (no heartbeat for GRACE_S) is marked failed when the study resumes
GRACE_S = 180


def _range(key: str, spec) -> tuple:
    if not (isinstance(spec, list) and len(spec) == 2 and all(isinstance(v, (int, float)) for v in spec)):
        raise VidkitError(f"search space: {key}: expected [low, high], got {spec!r}")
    if spec[0] >= spec[1]:
        raise VidkitError(f"search space: {key}: low must be below high, got {spec!r}")
    return spec[0], spec[1]


def suggest(trial, key: str, spec):
    """One value. `[lo, hi]` (int if both are), `{log: [lo, hi]}`, `{int: [lo, hi]}`, `{choice: [a, b, ...]}`."""
    if isinstance(spec, list):
        lo, hi = _range(key, spec)
        if isinstance(lo, int) and isinstance(hi, int):
            return trial.suggest_int(key, lo, hi)
        return trial.suggest_float(key, lo, hi)
    if isinstance(spec, dict) and len(spec) == 1:
        kind, arg = next(iter(spec.items()))
        if kind == "choice" and isinstance(arg, list) and arg:
            return trial.suggest_categorical(key, arg)
        if kind == "log":
            return trial.suggest_float(key, *_range(key, arg), log=True)
        if kind == "int":
            return trial.suggest_int(key, *map(int, _range(key, arg)))
    raise VidkitError(f"search space: {key}: expected [low, high], {{log: [low, high]}}, {{int: [low, high]}} "
                      f"or {{choice: [...]}}, got {spec!r}")


def read_space(path: Path, base: Config) -> dict:
    """The search space, checked against the config: every key must be a config field taking its values."""
    space = read_yaml(path)
    if not space:
        raise VidkitError(f"{path}: empty search space")
    for key, spec in space.items():
        try:
            values = [suggest(_Ends(end), key, spec) for end in (0, -1)]  # its shape, before any trial runs
        except VidkitError as e:
            raise VidkitError(f"{path}: {e}") from None
        if isinstance(spec, dict) and "choice" in spec:
            values = spec["choice"]  # every choice, not only the ends
        for value in values:
            apply(dataclasses.replace(base), {key: value}, where=f"{path}: ")
    return space


class _Ends:
    """A stand-in Optuna trial that suggests one end of each range (first or last choice): `read_space` checks
    every key's spec and values with it."""

    def __init__(self, end: int):
        self.end = end

    def suggest_int(self, key, low, high, **_):
        return (low, high)[self.end]

    suggest_float = suggest_int

    def suggest_categorical(self, key, choices):
        return choices[self.end]


class _Pruner:
    """The per-epoch hook of `train_fold`: reports validation scores to the trial, raises when pruned."""

    def __init__(self, trial, step0: int):
        self.trial, self.step0 = trial, step0

    def __call__(self, record: dict) -> None:
        import optuna
        if "val_score" in record and math.isfinite(record["val_score"]):
            self.trial.report(record["val_score"], self.step0 + record["epoch"])
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {record['epoch']} ({record['val_score']:.4f})")


def trial_config(base: Config, trial, space: dict, work: Path) -> Config:
    values = {key: suggest(trial, key, spec) for key, spec in space.items()}
    return apply(dataclasses.replace(base, out_dir=str(work / f"trial{trial.number}"), seed=_seed(base)), values)


def _seed(cfg: Config) -> int:
    return cfg.seed[0] if isinstance(cfg.seed, list) else cfg.seed


def objective(base: Config, space: dict, folds: list[int], work: Path, comp: Competition):
    """Mean out-of-fold score of `folds` (TTA as configured) for one trial's config."""
    from vidkit import metrics
    from vidkit.data.labels import targets
    from vidkit.flows.cv import prepare_run
    from vidkit.engine.runtime import make_accelerator
    from vidkit.engine.train import train_fold

    def run(trial) -> float:
        cfg = trial_config(base, trial, space, work)
        accelerator = make_accelerator(cfg, Path(cfg.out_dir))
        try:
            _, table, classes, out = prepare_run(cfg, accelerator, comp)
            scores = []
            for i, k in enumerate(folds):
                oof = train_fold(cfg, comp, table, classes, k, out / fold_name(k), accelerator,
                                 on_epoch=_Pruner(trial, i * cfg.epochs))
                y = targets(oof["label"], classes, comp)  # class indices, or multi-hot rows (multi-label)
                scores.append(metrics.score(comp.metric, y, oof[classes].to_numpy()))
            return float(sum(scores) / len(scores))
        finally:  # trials keep their numbers in the study; their checkpoints are not needed
            if accelerator.is_main_process:
                shutil.rmtree(cfg.out_dir, ignore_errors=True)
    return run


def open_study(name: str, storage: str, metric: str, seed: int):
    import optuna
    from vidkit.metrics import higher_is_better
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, history plot
    rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    study = optuna.create_study(study_name=name, storage=rdb, load_if_exists=True,
                                direction="maximize" if higher_is_better(metric) else "minimize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    # a resumed study must not replay the first run's random start-up draws
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def finished(study) -> int:
    from optuna.trial import TrialState
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in study.trials)


def write_tuned(base: Config, study, space: dict, path: Path) -> Path:
    best = study.best_trial
    cfg = apply(dataclasses.replace(base, out_dir=None), {k: best.params[k] for k in space if k in best.params})
    body = yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
    write_text(path, f"# tuned by `vidkit tune`: study {study.study_name!r}, trial {best.number}, "
               f"{study.direction.name.lower()} score {best.value:.6f}\n" + body)
    return path


def write_trials(study, work: Path) -> tuple[Path, Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history
    table, png = work / f"{study.study_name}_trials.csv", work / f"{study.study_name}_history.png"
    write_csv(study.trials_dataframe(), table, index=False)
    ax = plot_optimization_history(study)
    save_figure(ax.figure, png, dpi=100, bbox_inches="tight")
    plt.close(ax.figure)
    return table, png


def run_tune(base: Config, config_file: Path, trials: int, space_file: Path | None = None, folds=(0,),
             storage: str | None = None, out: Path | None = None) -> Path:
    """Run the study until it holds `trials` finished trials (complete, pruned or failed); write the best config."""
    import optuna
    from vidkit.config import load_competition
    comp = load_competition(base.comp)
    space_file = space_file or config_file.with_name("tune.yaml")
    space = read_space(space_file, base)
    if not all(0 <= k < comp.n_folds for k in folds):
        raise VidkitError(f"folds: {list(folds)} out of range (0 .. {comp.n_folds - 1})")
    work = CompDir(comp).path / "tune"
    work.mkdir(parents=True, exist_ok=True)
    study = open_study(base.name, storage or f"sqlite:///{work / base.name}.db", comp.metric, _seed(base))
    todo = trials - finished(study)
    print(f"study {base.name!r}: {finished(study)} trials finished, {max(todo, 0)} to run ({space_file})")
    if todo > 0:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # a failed trial (NaN, out of memory, a bad value) is recorded as failed and the study goes on
        study.optimize(objective(base, space, list(folds), work, comp), n_trials=todo, catch=(Exception,))
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise VidkitError(f"study {base.name!r}: no trial completed (see {work})")
    tuned = write_tuned(base, study, space, out or config_file.with_name(f"{base.name}_tuned.yaml"))
    table, png = write_trials(study, work)
    print(f"best trial {study.best_trial.number}: {comp.metric} {study.best_value:.4f} "
          f"{study.best_trial.params}\n{tuned}\n{table}\n{png}")
    return tuned
