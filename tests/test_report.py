"""cv_report.json contents, the `report` runs table, and `ensemble` on real (tiny) cross-validated runs."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import copy_run

from vidkit.config import Config, apply, read_yaml
from vidkit.flows.cv import write_report
from vidkit.flows.ensemble import load_ensemble, run_ensemble
from vidkit.analysis.report import count_params, run_report
from vidkit.engine.runtime import build_model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tiny_run, cli_run, tmp_path_factory):
    """Two cross-validated tiny R3D runs of competition `tiny` under <root>/weights/tiny/: copies of the session's
    `tiny_run` (1 epoch, flip TTA) and `cli_run` (2 epochs)."""
    root = tmp_path_factory.mktemp("report")
    return root, [copy_run(run, root / "weights" / "tiny" / name) for run, name in ((tiny_run, "short"),
                                                                                   (cli_run, "longer"))]


def test_cv_report_has_every_metric_and_the_plots(runs):
    _, (run, _) = runs
    report = json.loads((run / "cv_report.json").read_text())
    for key in ("metric", "score", "fold_scores", "protocol", "model", "config", "train_time_s"):  # CONTRACT keys
        assert key in report, key
    assert set(report["all_metrics"]) == {"accuracy", "top5", "f1_macro", "logloss", "auc", "mcc"}
    assert report["all_metrics"]["accuracy"] == pytest.approx(report["score"])
    assert set(report["per_class"]) == {"down", "left", "right", "up"}
    assert sum(c["support"] for c in report["per_class"].values()) == 24
    best = [[json.loads(line) for line in (run / f"fold{k}" / "metrics.jsonl").read_text().splitlines()][0]["val_score"]
            for k in range(3)]  # one epoch: that epoch is the best
    assert report["clip_fold_scores"] == pytest.approx(best) and report["clip_protocol"] == "4x1x1 clip-level"
    assert report["fold_std"] == pytest.approx(np.std(report["fold_scores"]))
    for name in ("confusion_matrix", "per_class", "curves", "class_distribution"):
        assert (run / f"{name}.png").read_bytes()[:8] == PNG, name


def test_params_counted_from_the_checkpoint(runs):
    _, (run, _) = runs
    cfg = apply(Config(), read_yaml(run / "config.yaml"))
    model = build_model(cfg, 4)
    assert count_params(run / "fold0" / "model.safetensors") == sum(p.numel() for p in model.parameters())


def test_report_table_best_first_and_files(runs, tiny_comp, capsys):
    root, (short, longer) = runs
    run_ensemble(str(tiny_comp), [str(short), str(longer)], out=str(root / "weights" / "tiny" / "ensemble.yaml"))
    table = run_report(str(tiny_comp), root=root / "weights")
    scores = table["score"].tolist()
    assert scores == sorted(scores, reverse=True) and len(table) == 3
    assert set(table["model"]) == {"r3d_18", "ensemble"}
    assert (table.loc[table["model"] == "r3d_18", "params"] > 100_000).all()
    md = (root / "weights" / "tiny" / "runs.md").read_text()
    assert "| run | model | config | CV accuracy |" in md and "longer" in md and "4x2x1 video-level" in md
    assert "| pretrained licence |" in md and (table.loc[table["model"] == "r3d_18", "license"] == "scratch").all()
    csv = pd.read_csv(root / "weights" / "tiny" / "runs.csv")
    assert csv["score"].tolist() == pytest.approx(scores)
    assert "best first" in capsys.readouterr().out


def test_report_verb_from_the_repo_root(runs, tiny_comp):
    root, _ = runs
    proc = subprocess.run([sys.executable, "-m", "vidkit", "report", f"comp={tiny_comp}"], cwd=root,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "short" in proc.stdout and "longer" in proc.stdout and (root / "weights" / "tiny" / "runs.csv").is_file()


def test_logloss_runs_sort_lowest_first(tmp_path, capsys):
    comp = tmp_path / "ll.yaml"
    comp.write_text("name: ll\ntrain_dir: train\nmetric: logloss\n")
    for name, score in (("a", 0.9), ("b", 0.3), ("c", 0.6)):
        (tmp_path / "weights" / "ll" / name).mkdir(parents=True)
        (tmp_path / "weights" / "ll" / name / "cv_report.json").write_text(json.dumps(
            {"metric": "logloss", "score": score, "fold_scores": [score - 0.1, score + 0.1], "protocol": "8x2x1"}))
    table = run_report(str(comp), root=tmp_path / "weights")
    assert table["run"].map(lambda r: r[-1]).tolist() == ["b", "c", "a"]
    assert table["fold_std"].tolist() == pytest.approx([0.1, 0.1, 0.1])


def test_write_report_reads_clip_scores_from_metrics(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"protocol": "8x3x1 video-level", "input_spec": {"num_frames": 8}}))
    for k, records in enumerate([[(0.5, True), (0.75, True), (0.6, False)], [(0.25, True), (0.2, False)]]):
        (tmp_path / f"fold{k}").mkdir()
        (tmp_path / f"fold{k}" / "metrics.jsonl").write_text("\n".join(json.dumps(
            {"fold": k, "epoch": e, "train_loss": 1.0, "val_loss": 1.0, "val_score": s, "best": b, "metric": "accuracy",
             "lr": 1e-3}) for e, (s, b) in enumerate(records)))
    oof = pd.DataFrame({"video_id": list("abcd"), "fold": [0, 0, 1, 1], "label": ["x", "y", "x", "y"],
                        "x": [0.9, 0.2, 0.4, 0.3], "y": [0.1, 0.8, 0.6, 0.7]})
    report = write_report(oof, ["x", "y"], "accuracy", tmp_path, Config(name="toy"), 12.3)
    assert report["clip_fold_scores"] == [0.75, 0.25] and report["clip_score"] == pytest.approx(0.5)
    assert report["score"] == pytest.approx(3 / 4) and report["fold_scores"] == pytest.approx([1.0, 0.5])
    assert report["per_class"]["x"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert json.loads((tmp_path / "cv_report.json").read_text())["protocol"] == "8x3x1 video-level"
