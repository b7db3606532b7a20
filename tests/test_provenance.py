"""run.json's provenance: what code, libraries, device and data made a run; `report` shows it and warns."""
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd

from vidkit.analysis import provenance
from vidkit.config import load_competition
from vidkit.data import index_train
from vidkit.analysis.report import run_report

KEYS = {"commit", "dirty", "versions", "device", "started", "finished", "fold_seconds", "data_fingerprint",
        "folds_hash"}


def test_run_json_records_provenance(tiny_run, tiny_comp):
    prov = json.loads((tiny_run / "run.json").read_text())["provenance"]
    assert KEYS <= set(prov)
    repo = Path(provenance.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert prov["commit"] == head.strip() and isinstance(prov["dirty"], bool)
    assert prov["versions"]["torch"].startswith("2.") and prov["versions"]["python"]
    assert prov["device"]["type"] == "cpu" and prov["device"]["count"] >= 1
    assert prov["started"] <= prov["finished"]
    assert set(prov["fold_seconds"]) == {"fold0", "fold1", "fold2"} and all(s > 0 for s in prov["fold_seconds"].values())
    table = index_train(load_competition(tiny_comp))
    assert prov["data_fingerprint"] == provenance.data_fingerprint(table.sample(frac=1, random_state=0))
    changed = table.copy()
    changed.loc[0, "label"] = "left" if changed.loc[0, "label"] != "left" else "up"
    assert provenance.data_fingerprint(changed) != prov["data_fingerprint"]
    assert prov["folds_hash"] == provenance.folds_hash(pd.read_csv(tiny_run / "folds.csv", dtype=str))


def test_report_shows_commit_device_and_warns_on_different_data(tiny_run, tiny_comp, tmp_path, capsys):
    a, b = tmp_path / "weights" / "tiny" / "a", tmp_path / "weights" / "tiny" / "b"
    for run in (a, b):
        shutil.copytree(tiny_run, run)
    run_report(str(tiny_comp), [str(a), str(b)], root=tmp_path / "weights")
    out = capsys.readouterr().out
    assert provenance.read(a)["commit"][:8] in out and "warning" not in out
    provenance.update(b, lambda p: p.__setitem__("data_fingerprint", "0" * 16))
    run_report(str(tiny_comp), [str(a), str(b)], root=tmp_path / "weights")
    out = capsys.readouterr().out
    assert "warning: ensemble: runs trained on different training data: a" in out
    assert "different folds" not in out
    assert "different training data" in (tmp_path / "weights" / "tiny" / "runs.md").read_text()
