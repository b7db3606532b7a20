"""`report`: every cross-validated run of a competition in one table, best first (also runs.md and runs.csv)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vidkit import metrics
from vidkit.analysis import provenance
from vidkit.config import Competition, as_competition, load_ensemble
from vidkit.files import safetensors_shapes, write_csv, write_text
from vidkit.rundir import RUNS_CSV, RUNS_MD, CompDir, RunDir

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # saved with the weights, but not parameters


def count_params(path: Path) -> int:
    """Parameters in a safetensors checkpoint, read from its header (no model is built, no tensor loaded)."""
    return int(sum(np.prod(shape) for k, shape in safetensors_shapes(path).items() if not k.endswith(BUFFERS)))


def run_row(run: Path, metric: str) -> dict:
    """One table row from a run's cv_report.json, scored with the competition's `metric`."""
    rep = RunDir(run).report()
    same = rep.get("metric") == metric
    score = rep["score"] if same else rep.get("all_metrics", {}).get(metric, float("nan"))
    checkpoints = RunDir(run).checkpoints()
    return {"run": str(run), "model": rep.get("model", "?"), "config": rep.get("config", "?"), "metric": metric,
            "score": score, "fold_std": float(np.std(rep["fold_scores"])) if same else float("nan"),
            "clip_score": rep.get("clip_score", float("nan")) if same else float("nan"),
            "protocol": rep.get("protocol", "?"), "params": count_params(checkpoints[0]) if checkpoints else None,
            "train_time_s": rep.get("train_time_s"), "n_videos": rep.get("n_videos"), **_provenance(run),
            "license": licence_label(pretrained_of(run)), "extra": _extra_signal(run)}


def pretrained_of(run: Path) -> dict:
    """run.json's `pretrained`: {"source", "license"} of the weights the run started from (both None: scratch)."""
    return RunDir(run).meta().get("pretrained") or {}


def licence_label(pretrained: dict) -> str:
    if not pretrained.get("source"):
        return "scratch"
    if pretrained.get("license") == "own data" and (pretrained.get("parent") or {}).get("source"):
        return f"own data (from {licence_label(pretrained['parent'])})"  # continued pretraining
    return pretrained.get("license") or "unknown"


def licence_allowed(pretrained: dict, allowed: list[str] | None) -> bool:
    """Weights from scratch or the kit's own pretraining always pass, except through what they continued from;
    anything else needs its licence in `allowed` (None: no rule)."""
    if allowed is None or not pretrained.get("source"):
        return True
    if pretrained.get("license") == "own data":
        return licence_allowed(pretrained.get("parent") or {}, allowed)
    return str(pretrained.get("license") or "unknown").lower() in [str(a).lower() for a in allowed]


def _extra_signal(run: Path) -> str:
    """Pseudo-labels and teachers a run trained with (run.json's `pseudo` / `teacher`)."""
    meta = RunDir(run).meta()
    parts = []
    if meta.get("pseudo"):
        parts.append(f"pseudo {len(meta['pseudo']['ids'])} (p >= {meta['pseudo']['threshold']})")
    if meta.get("teacher"):
        parts.append("teacher " + ",".join(Path(r).name for r in meta["teacher"]["runs"]))
    return "; ".join(parts)


def _provenance(run: Path) -> dict:
    """Where and from what code a run was trained (run.json's provenance; blank for older runs)."""
    prov = provenance.read(run)
    commit = (prov.get("commit") or "")[:8] + ("+dirty" if prov.get("dirty") else "")
    dev = prov.get("device") or {}
    device = f"{dev.get('count', 1)}x {dev['name']}" if dev.get("name") else ""
    return {"commit": commit, "device": device, "finished": (prov.get("finished") or "").replace("T", " ")[:16]}


def runs_table(runs: list[Path], metric: str, ensemble: Path | None = None) -> pd.DataFrame:
    """Rows sorted best first for `metric` (NaN last); the saved ensemble, if any, as one more row."""
    rows = [run_row(Path(r), metric) for r in runs]
    if ensemble is not None and ensemble.is_file():
        spec = load_ensemble(ensemble)
        if spec["metric"] == metric:
            names = "+".join(Path(m["run"]).name for m in spec["members"] if m["weight"] > 0)
            rows.append({"run": str(ensemble), "model": "ensemble", "config": f"{spec['method']}: {names}",
                         "metric": metric, "score": spec["score"], "fold_std": float("nan"),
                         "clip_score": float("nan"), "protocol": "OOF blend", "params": None,
                         "train_time_s": None, "n_videos": spec.get("n_videos"), "commit": "", "device": "",
                         "finished": "", "license": ""})
    table = pd.DataFrame(rows).astype({"params": "Int64"})
    return table.sort_values("score", ascending=not metrics.higher_is_better(metric), na_position="last",
                             kind="stable").reset_index(drop=True)


def _params(n) -> str:
    return "" if n is None or pd.isna(n) else f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def _time(s) -> str:
    return "" if s is None or pd.isna(s) else f"{int(s) // 60}m{int(s) % 60:02d}s"


def pretty(table: pd.DataFrame) -> pd.DataFrame:
    """The table as strings, for the terminal and runs.md."""
    metric = table["metric"].iloc[0] if len(table) else "score"
    return pd.DataFrame({
        "run": [Path(r).name for r in table["run"]], "model": table["model"], "config": table["config"],
        f"CV {metric}": [f"{s:.4f}" + ("" if np.isnan(d) else f" ± {d:.4f}")
                         for s, d in zip(table["score"], table["fold_std"])],
        "no TTA": ["" if np.isnan(c) else f"{c:.4f}" for c in table["clip_score"]],
        "protocol": table["protocol"], "params": [_params(n) for n in table["params"]],
        "train time": [_time(s) for s in table["train_time_s"]], "commit": table["commit"],
        "device": table["device"], "finished": table["finished"], "pretrained licence": table["license"],
        "pseudo / teacher": table["extra"].fillna("") if "extra" in table else ""})


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def run_report(comp: Competition | str, runs: list[str] | None = None, out: str | None = None,
               root: Path | None = None) -> pd.DataFrame:
    """Print the runs table best first and write runs.md / runs.csv (default: <root>/<competition>/, root
    default weights/)."""
    comp = as_competition(comp)
    if comp.metric not in metrics.EVENT_METRICS:  # spotting runs report their event mAP as the score
        metrics.check_metric(comp.metric)
    where = CompDir(comp, root)
    run_paths = [Path(r) for r in runs] if runs else where.finished_runs()
    table = runs_table(run_paths, comp.metric, where.ensemble_yaml)
    shown = pretty(table)
    warnings = ensemble_warnings(where.ensemble_yaml, run_paths)
    direction = "higher" if metrics.higher_is_better(comp.metric) else "lower"
    print(f"{comp.name}: {len(run_paths)} runs, {comp.metric} ({direction} is better), best first")
    print(shown.to_string(index=False))
    for w in warnings:
        print(f"warning: {w}")
    folder = Path(out) if out else where.path
    folder.mkdir(parents=True, exist_ok=True)
    note = (f"{comp.name}: CV {comp.metric} ({direction} is better), mean ± std over folds; "
            "no TTA: the best epochs' validation score (val_clips clips, mean of folds)")
    runs_md, runs_csv = folder / RUNS_MD, folder / RUNS_CSV
    write_text(runs_md, note + "\n\n" + markdown(shown) + "".join(f"\nwarning: {w}\n" for w in warnings))
    write_csv(table, runs_csv, index=False)
    print(f"wrote {runs_md} and {runs_csv}")
    return table


def ensemble_warnings(ensemble: Path, runs: list[Path]) -> list[str]:
    """Provenance mismatches among the ensemble's members (ensemble.yaml's, else the runs reported)."""
    members = runs
    if ensemble.is_file():
        members = [Path(m["run"]) for m in load_ensemble(ensemble)["members"] if m["weight"] > 0]
        members = [m if m.is_dir() or m.is_absolute() else ensemble.parent / m for m in members]
    return [f"ensemble: {d}" for d in provenance.differences(members)]
