import shutil
from pathlib import Path

import pandas as pd
import pytest

from vidkit.config import load_config, parse_overrides
from vidkit.errors import VidkitError
from vidkit.flows.tune import read_space, run_tune
from helpers import TINY

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tune_dir(tmp_path, monkeypatch, tiny_comp):
    """A config folder of its own (the tuned yaml lands next to the config) and a working dir for weights/."""
    (tmp_path / "configs").mkdir()
    for name in ("r3d18.yaml", "r3d18_demo.yaml"):  # the demo config inherits from r3d18.yaml
        shutil.copy(REPO / "configs" / name, tmp_path / "configs" / name)
    (tmp_path / "configs" / "tune.yaml").write_text("lr: {log: [1.0e-3, 1.0e-2]}\nlabel_smoothing: [0.0, 0.2]\n"
                                                    "num_frames: {choice: [4]}\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tiny_config(comp: Path):
    return load_config("configs/r3d18_demo.yaml", {**parse_overrides(TINY), "comp": str(comp), "epochs": "1"})


def study_trials(tune_dir: Path, comp_name: str = "tiny") -> pd.DataFrame:
    return pd.read_csv(tune_dir / "weights" / comp_name / "tune" / "r3d18_demo_trials.csv")


@pytest.mark.slow
def test_study_resumes_from_its_database(tune_dir, tiny_comp):
    cfg = tiny_config(tiny_comp)
    tuned = run_tune(cfg, Path("configs/r3d18_demo.yaml"), trials=2)
    assert (tune_dir / "weights" / "tiny" / "tune" / "r3d18_demo.db").is_file()
    first = study_trials(tune_dir)
    assert list(first["number"]) == [0, 1] and set(first["state"]) == {"COMPLETE"}
    header = tuned.read_text().splitlines()[0]
    best = first.loc[first["value"].idxmax()]
    assert f"trial {int(best['number'])}" in header and f"{best['value']:.6f}" in header
    again = load_config(str(tuned))  # the tuned config loads as any config, with the best trial's values
    assert again.lr == pytest.approx(best["params_lr"]) and again.num_frames == 4
    assert (tune_dir / "weights" / "tiny" / "tune" / "r3d18_demo_history.png").stat().st_size > 1000

    run_tune(cfg, Path("configs/r3d18_demo.yaml"), trials=3)  # the same study, one more trial
    second = study_trials(tune_dir)
    assert list(second["number"]) == [0, 1, 2]
    assert second.loc[:1, "params_lr"].tolist() == first["params_lr"].tolist()  # the first two are kept, not redone
    assert not (tune_dir / "weights" / "tiny" / "tune" / "trial2").exists()  # trial checkpoints are cleaned up


def test_failed_trial_is_recorded_and_the_study_goes_on(tune_dir, tiny_comp, monkeypatch):
    import vidkit.engine.train
    calls = []

    def flaky(cfg, *args, **kwargs):  # the first trial runs out of memory, the second completes
        calls.append(cfg.lr)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        labels = args[2]  # train_fold(cfg, comp, table, classes, ...)
        return pd.DataFrame({"video_id": ["a", "b"], "label": [labels[0], labels[1]],
                             **{c: [1.0 if c == labels[0] else 0.0, 1.0 if c == labels[1] else 0.0] for c in labels}})

    monkeypatch.setattr(vidkit.engine.train, "train_fold", flaky)
    run_tune(tiny_config(tiny_comp), Path("configs/r3d18_demo.yaml"), trials=2)
    trials = study_trials(tune_dir)
    assert list(trials["state"]) == ["FAIL", "COMPLETE"] and len(calls) == 2
    assert trials.loc[1, "value"] == pytest.approx(1.0)


@pytest.mark.slow
def test_a_killed_study_loses_only_its_running_trial(tune_dir, tiny_comp):
    """`tune` killed (SIGKILL) during its second trial: run again, the first trial is kept as it was, the killed
    one stays behind as unfinished (failed once its heartbeat is stale), and new trials bring the total up."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time
    cmd = [sys.executable, "-m", "vidkit", "tune", "configs/r3d18_demo.yaml", f"comp={tiny_comp}", *TINY,
           "epochs=2"]
    proc = subprocess.Popen(cmd + ["trials=3"], cwd=tune_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db, deadline = tune_dir / "weights" / "tiny" / "tune" / "r3d18_demo.db", time.time() + 300
    states = []
    while time.time() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(db) as con:
                states = [s for (s,) in con.execute("select state from trials order by number")]
        except sqlite3.Error:  # not created yet
            states = []
        if states == ["COMPLETE", "RUNNING"]:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.1)
    assert proc.wait() == -signal.SIGKILL, f"not killed mid-trial: {states} {proc.stderr.read()[-2000:]}"
    with sqlite3.connect(db) as con:
        kept = con.execute("select param_value from trial_params where trial_id = 1").fetchall()
    done = subprocess.run(cmd + ["trials=2"], cwd=tune_dir, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 trials finished, 1 to run" in done.stdout
    trials = study_trials(tune_dir)
    assert list(trials["state"]) == ["COMPLETE", "RUNNING", "COMPLETE"]  # the killed trial: within its grace
    with sqlite3.connect(db) as con:
        assert con.execute("select param_value from trial_params where trial_id = 1").fetchall() == kept
    assert trials["value"].notna().sum() == 2


def test_space_errors_name_the_file_and_key(tmp_path):
    cfg = load_config("configs/r3d18_demo.yaml")
    bad = {"lr: {log: [1.0e-2, 1.0e-4]}": "low must be below high", "nonsense: [0, 1]": "unknown key 'nonsense'",
           "lr: {between: [1, 2]}": "expected [low, high]", "epochs: {choice: [two]}": "epochs: expected int"}
    for text, message in bad.items():
        path = tmp_path / "space.yaml"
        path.write_text(text + "\n")
        with pytest.raises(VidkitError, match=message.replace("[", r"\[")):
            from vidkit.flows.tune import suggest
            space = read_space(path, cfg)
            suggest(_FakeTrial(), *next(iter(space.items())))


class _FakeTrial:
    def suggest_float(self, key, lo, hi, log=False):
        return lo

    suggest_int = suggest_float

    def suggest_categorical(self, key, values):
        return values[0]
