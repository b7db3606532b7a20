"""Saliency for every registered model family (tiny sizes) and the `explain` verb on a tiny run."""
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from test_models import TINY as MODEL_TINY
from vidkit.analysis.explain import saliency
from vidkit.models import create_model, list_models

EXPECTED = {"videomae": "attention rollout", "timesformer": "attention rollout", "r3d_18": "Grad-CAM",
            "r2plus1d_18": "Grad-CAM", "tsn": "Grad-CAM", "cnn_rnn": "Grad-CAM"}


@pytest.mark.parametrize("name", list_models())
def test_saliency_for_every_model(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **MODEL_TINY[name])
    if getattr(model, "per_frame", False):
        pytest.skip("a per-frame spotting model: no clip-level class to explain")
    spec = model.input_spec
    rng = np.random.default_rng(0)
    clip = torch.from_numpy(rng.integers(0, 256, (spec.num_frames, spec.size, spec.size, 3), dtype=np.uint8))
    maps, method = saliency(model, clip, spec, target=1)  # a constant map is an error
    assert maps.shape == (spec.num_frames, spec.size, spec.size) and np.isfinite(maps).all()
    assert maps.min() == 0 and maps.max() == 1 and maps.std() > 0.01
    assert method == EXPECTED.get(name, method)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
def test_explain_verb_writes_frames_with_heat_maps(tiny_run, tiny_comp, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    video = sorted((tiny_comp.parent.parent / "data" / "test").iterdir())[0]
    proc = subprocess.run([sys.executable, "-m", "vidkit", "explain", f"run={run}", f"video={video}", "class=up"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = run / "explain" / f"{video.name}.png"
    assert "Grad-CAM" in proc.stdout and str(png) in proc.stdout
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape[1] > 4 * 100 and image.std() > 10  # four frames wide, not blank
    bad = subprocess.run([sys.executable, "-m", "vidkit", "explain", f"run={run}", f"video={video}", "class=sideways"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "'sideways' is not one of the run's classes" in bad.stderr
