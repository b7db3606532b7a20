import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vidkit.cli import Export
from vidkit.errors import VidkitError
from vidkit.flows.export import example_clips, run_export
from vidkit.flows.infer import load_run
from vidkit.engine.runtime import build_model

ATOL = Export.atol  # the verb's default


def _pytorch_logits(run, clips):
    cfg, classes, checkpoints = load_run(run)
    model = build_model(cfg, len(classes))
    model.load_state_dict(load_file(str(checkpoints[0])))
    with torch.no_grad():
        return model.eval()(clips).numpy()


def test_torchscript_runs_without_vidkit_and_matches(tiny_run, tmp_path):
    path = run_export(tiny_run, "torchscript", ATOL, out=tmp_path)
    meta = json.loads((tmp_path / "export.json").read_text())
    assert meta["classes"] == ["down", "left", "right", "up"] and meta["max_abs_diff"] <= 1e-4
    spec = meta["input_spec"]
    clips = torch.randn(3, 3, spec["num_frames"], spec["size"], spec["size"],
                        generator=torch.Generator().manual_seed(1))
    torch.save(clips, tmp_path / "clips.pt")
    script = ("import sys, torch; m = torch.jit.load(sys.argv[1]); x = torch.load(sys.argv[2]); "
              "torch.save(m(x).detach(), sys.argv[3]); "
              "assert not [k for k in sys.modules if k.startswith('vidkit')], 'vidkit was imported'")
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "clips.pt"), str(tmp_path / "y.pt")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(torch.load(tmp_path / "y.pt").numpy(), _pytorch_logits(tiny_run, clips), atol=1e-4)


def test_onnx_matches_pytorch(tiny_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = run_export(tiny_run, "onnx", ATOL, fold=1, out=tmp_path)
    meta = json.loads((tmp_path / "export.json").read_text())
    assert meta["checkpoint"].endswith("fold1/model.safetensors")
    cfg, classes, _ = load_run(tiny_run)
    model = build_model(cfg, len(classes))
    model.load_state_dict(load_file(str(tiny_run / "fold1" / "model.safetensors")))
    clips = example_clips(model.input_spec, n=3, seed=5)
    with torch.no_grad():
        want = model.eval()(clips).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"clip": clips.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_export_errors(tiny_run, tmp_path, monkeypatch):
    with pytest.raises(VidkitError, match="format: 'tflite'"):
        run_export(tiny_run, "tflite", ATOL, out=tmp_path)
    with pytest.raises(VidkitError, match="fold7"):
        run_export(tiny_run, "torchscript", ATOL, fold=7, out=tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(VidkitError, match="needs the onnxruntime package"):
        run_export(tiny_run, "onnx", ATOL, out=tmp_path)


@pytest.mark.slow
def test_export_cli(tiny_run, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vidkit", "export", f"run={tiny_run}", "format=torchscript",
                           f"out={tmp_path}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "model.pt").is_file() and "max |diff|" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "vidkit", "export", "format=onnx"], capture_output=True, text=True)
    assert proc.returncode == 2 and "run=RUN_DIR is required" in proc.stderr
