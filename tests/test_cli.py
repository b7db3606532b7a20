"""Drive the CLI as a user would (subprocesses), and check the files CONTRACT.md lists."""
import json
import subprocess
import sys

import pandas as pd

from conftest import TINY


def vidkit(*args, cwd=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "vidkit", *args], capture_output=True, text=True, cwd=cwd)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_cv_then_submit_leaves_the_contract_files(tiny_comp, tmp_path):
    out = tmp_path / "run"
    proc = vidkit("cv", "configs/r3d18_demo.yaml", f"comp={tiny_comp}", f"out_dir={out}", "epochs=2", *TINY)
    assert proc.stdout.strip().splitlines()[-1] == str(out)  # the folder is printed last
    for name in ("config.yaml", "folds.csv", "oof.csv", "cv_report.json", "confusion_matrix.png", "per_class.png",
                 "curves.png", "run.json"):
        assert (out / name).is_file(), name
    for k in range(3):
        assert (out / f"fold{k}" / "model.safetensors").is_file()
        epochs = [json.loads(line) for line in (out / f"fold{k}" / "metrics.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in epochs] == [0, 1] and "val_score" in epochs[0]
    report = json.loads((out / "cv_report.json").read_text())
    assert report["metric"] == "accuracy" and len(report["fold_scores"]) == 3
    assert report["protocol"] == "4x2x1 video-level"
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    oof = pd.read_csv(out / "oof.csv")
    assert list(oof.columns) == ["video_id", "fold", "label", "down", "left", "right", "up"] and len(oof) == 24

    sub_path = tmp_path / "sub.csv"
    proc = vidkit("submit", f"comp={tiny_comp}", f"runs={out}", f"out={sub_path}", "tta_clips=3")
    sample = tiny_comp.parent.parent / "data" / "sample_submission.csv"
    sub = pd.read_csv(sub_path)
    assert sub["id"].tolist() == pd.read_csv(sample)["id"].tolist()
    assert set(sub["label"]) <= {"down", "left", "right", "up"}
    assert "valid" in vidkit("validate", str(sub_path), f"sample={sample}").stdout
    archived = [p for p in tmp_path.glob("*_run.csv")]
    assert len(archived) == 1 and archived[0].with_suffix(".json").is_file()


def test_train_one_fold_and_all_data(tiny_comp, tmp_path):
    vidkit("train", "r3d18_demo", f"comp={tiny_comp}", f"out_dir={tmp_path}", "fold=1", "epochs=1", *TINY)
    assert (tmp_path / "fold1" / "model.safetensors").is_file() and (tmp_path / "fold1" / "oof.csv").is_file()
    vidkit("train", "r3d18_demo", f"comp={tiny_comp}", f"out_dir={tmp_path}", "fold=-1", "epochs=1", *TINY)
    assert (tmp_path / "full" / "model.safetensors").is_file()
    assert "val_score" not in (tmp_path / "full" / "metrics.jsonl").read_text()


def test_user_errors_are_one_line(tiny_comp, tmp_path):
    proc = vidkit("train", "r3d18_demo", f"comp={tiny_comp}", "epoch=1", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "unknown key 'epoch'" in proc.stderr
    proc = vidkit("submit", f"comp={tmp_path / 'nope.yaml'}", check=False)
    assert proc.returncode == 2 and "nope.yaml: file not found" in proc.stderr
    sample = tiny_comp.parent.parent / "data" / "sample_submission.csv"
    bad = tmp_path / "bad.csv"
    pd.read_csv(sample).iloc[1:].to_csv(bad, index=False)
    proc = vidkit("validate", str(bad), f"sample={sample}", check=False)
    assert proc.returncode == 2 and "1 ids missing" in proc.stderr


def test_help_and_not_yet_verbs():
    assert "submit" in vidkit("--help").stdout
    assert "keys:" in vidkit("cv", "--help").stdout
    assert "dry_run=true" in vidkit("kernel", "--help").stdout  # every verb is implemented now
    proc = vidkit("nosuchverb", check=False)
    assert proc.returncode == 2 and "unknown verb 'nosuchverb'" in proc.stderr
