import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SHARED, TINY, copy_run, manifest_of  # noqa: F401 (copy_run, manifest_of: import them from helpers)
from vidkit.demo import make_demo

os.environ.setdefault("OMP_NUM_THREADS", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n N`: each worker is one process per core, one torch thread
    os.environ["OMP_NUM_THREADS"] = "1"


def pytest_collection_modifyitems(config, items):
    """The learning tests (`slow`) first: under `-n`, workers share them out while the quick tests fill in around."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tiny_comp(tmp_path_factory) -> Path:
    """A small synthetic competition: 4 classes x 6 groups, 32 px frames, 3 folds."""
    root = tmp_path_factory.mktemp("tiny")
    return make_demo(root / "data", root / "competition" / "tiny.yaml", n_groups=6, per_group=4, n_test=6,
                     size=48, n_folds=3)


@pytest.fixture(scope="session")
def demo_comp(tmp_path_factory) -> Path:
    """The demo-sized synthetic competition (160 training videos, 40 test videos)."""
    root = tmp_path_factory.mktemp("demo")
    return make_demo(root / "data", root / "competition" / "demo.yaml")


@pytest.fixture(scope="session")
def demo_cv_run(demo_comp, tmp_path_factory) -> Path:
    """A run that learned: r3d18_demo cross-validated over the demo's 5 folds, 3 epochs (OOF 0.975; test_cv.py).
    The one full cross-validation in the suite that must learn: reuse it rather than train another."""
    from vidkit.config import load_config
    from vidkit.flows.cv import run_cv
    out = tmp_path_factory.mktemp("demo_cv_run") / "run"
    return run_cv(load_config("r3d18_demo", {"comp": str(demo_comp), "out_dir": str(out), "num_workers": "0",
                                             "epochs": "3"}))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found")
    return SHARED


@pytest.fixture(scope="session")
def tiny_run(tiny_comp, tmp_path_factory) -> Path:
    """A cross-validated tiny r3d_18 run on `tiny_comp` (1 epoch; TTA: 2 clips, each also flipped)."""
    from vidkit.config import load_config, parse_overrides
    from vidkit.flows.cv import run_cv
    overrides = {**parse_overrides(TINY), "comp": str(tiny_comp), "epochs": "1", "tta_flip": "true",
                 "out_dir": str(tmp_path_factory.mktemp("tiny_run"))}
    return run_cv(load_config("configs/r3d18_demo.yaml", overrides))


@pytest.fixture(scope="session")
def kaggle_python(tmp_path_factory) -> Path:
    """A Python that sees only the packages of Kaggle's image (kernels/kaggle_image.txt), not vidkit, and whose
    interpreter refuses and records network calls and writes under VIDKIT_READONLY (vidkit.kaggle.sim)."""
    from vidkit.kaggle.sim import restricted_python
    return restricted_python(tmp_path_factory.mktemp("kaggle_python") / "venv")


@pytest.fixture(scope="session")
def cli_run(tiny_comp, tmp_path_factory) -> Path:
    """`vidkit cv` in a subprocess, as a user runs it: tiny r3d_18 on `tiny_comp`, 2 epochs, no flip TTA.
    Returns the run folder; the process's stdout is in `cli_stdout.txt` next to it."""
    out = tmp_path_factory.mktemp("cli_run") / "run"
    proc = subprocess.run([sys.executable, "-m", "vidkit", "cv", "configs/r3d18_demo.yaml", f"comp={tiny_comp}",
                           f"out_dir={out}", "epochs=2", *TINY], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out.parent / "cli_stdout.txt").write_text(proc.stdout)
    return out


@pytest.fixture(scope="session")
def probs_comp(tiny_comp) -> Path:
    """tiny_comp with a `probabilities` sample (one column per class), so a submission shows its numbers."""
    import pandas as pd
    import yaml
    data = tiny_comp.parent.parent / "data"
    classes = ["down", "left", "right", "up"]
    sample = pd.read_csv(data / "sample_submission.csv")[["id"]].assign(**{c: 0.25 for c in classes})
    sample.to_csv(data / "sample_probs.csv", index=False)
    spec = {**yaml.safe_load(tiny_comp.read_text()), "name": "tinyprobs", "submission": "probabilities",
            "sample_submission": "../data/sample_probs.csv"}
    path = tiny_comp.with_name("tinyprobs.yaml")
    path.write_text(yaml.safe_dump(spec))
    return path
