"""Saliency for every registered model family (tiny sizes) and the `explain` verb on a tiny run."""
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import MODEL_ARGS
from vidkit.analysis.explain import saliency
from vidkit.models import create_model, list_models
from vidkit.models.heads import HEADS

# The saliency method each model family gets: attention rollout where the attention maps are readable, Grad-CAM on
# the last conv stage that keeps time, else the input gradient. A new model must say which it gets.
ROLLOUT, GRADCAM, GRADIENT = "attention rollout", "Grad-CAM", "input gradient"
PER_FRAME = {"spot_dense", "spot_head"}  # dense spotting models: a score per frame, no clip-level class to explain
CLIP_CLASSIFIERS = [m for m in list_models() if m not in HEADS and m not in PER_FRAME]  # heads take features
EXPECTED = {"videomae": ROLLOUT, "timesformer": ROLLOUT, "vjepa2": ROLLOUT,
            "r3d_18": GRADCAM, "mc3_18": GRADCAM, "r2plus1d_18": GRADCAM, "r3d_18_inception": GRADCAM,
            "s3d": GRADCAM, "i3d_r50": GRADCAM, "tsm": GRADCAM, "tsn": GRADCAM, "cnn_rnn": GRADCAM,
            "mvit_v1_b": GRADCAM, "mvit_v2_s": GRADCAM, "swin3d_t": GRADCAM, "swin3d_s": GRADCAM, "swin3d_b": GRADCAM,
            "vivit": GRADCAM, "hf_video": GRADCAM, "videoprism": GRADCAM,  # their tubelet embedding is a 3D conv
            "r3d_18_late_fusion": GRADCAM,  # gradcam() means to show each segment's backbone call in time order
            "stack2d3d": GRADIENT}  # its conv outputs have T / stack frames: neither layout Grad-CAM reads
# Known: the segments now go through the backbone as one batch (b * segments), which conv_stage skips, so late
# fusion falls back to the input gradient. strict: the test turns red (remove the mark) once that is fixed.
KNOWN = {"r3d_18_late_fusion": pytest.mark.xfail(strict=True, reason="Grad-CAM skips the batched segments")}


def test_every_model_has_an_expected_method():
    assert sorted(EXPECTED) == CLIP_CLASSIFIERS


@pytest.mark.parametrize("name", [pytest.param(n, marks=KNOWN.get(n, ())) for n in CLIP_CLASSIFIERS])
def test_saliency_for_every_model(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **MODEL_ARGS[name])
    spec = model.input_spec
    rng = np.random.default_rng(0)
    clip = torch.from_numpy(rng.integers(0, 256, (spec.num_frames, spec.size, spec.size, 3), dtype=np.uint8))
    maps, method = saliency(model, clip, spec, target=1)  # a constant map is an error
    assert maps.shape == (spec.num_frames, spec.size, spec.size) and np.isfinite(maps).all()
    assert maps.min() == 0 and maps.max() == 1 and maps.std() > 0.01
    assert method == EXPECTED[name]
    moved = saliency(model, torch.roll(clip, shifts=spec.size // 2, dims=2), spec, target=1)[0]
    assert np.abs(moved - maps).mean() > 1e-3  # the map follows the input: another clip, another map
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
def test_explain_verb_writes_frames_with_heat_maps(tiny_run, tiny_comp, tmp_path, capsys):
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
    from vidkit.cli import main  # the same verb in this process: the bad class is refused before any model loads
    assert main(["explain", f"run={run}", f"video={video}", "class=sideways"]) == 2
    assert "class: 'sideways' is not one of " in capsys.readouterr().err
