"""`export`: one checkpoint of a run as TorchScript or ONNX, runnable without vidkit, checked against PyTorch.

Next to the model, `export.json` says how to feed it: classes, frames, size, mean/std and layout.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from vidkit.choices import check_choice
from vidkit.errors import VidkitError
from vidkit.files import load_checkpoint, write_json
from vidkit.flows.infer import load_run
from vidkit.rundir import RunDir
from vidkit.engine.runtime import build_model

FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}


def example_clips(spec, n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (3, spec.num_frames) if spec.layout == "CTHW" else (spec.num_frames, 3)
    return torch.randn(n, *shape, spec.size, spec.size, generator=g)


def export_torchscript(model, clips: torch.Tensor, path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export; it still works
        traced = torch.jit.trace(model, clips[:1])
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path))
        with torch.no_grad():
            return loaded(clips).numpy()


def export_onnx(model, clips: torch.Tensor, path: Path) -> np.ndarray:
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise VidkitError(f"format=onnx needs the {e.name} package: pip install onnx onnxruntime "
                          "(or use format=torchscript)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter warns that it is the legacy one
        torch.onnx.export(model, (clips[:1],), str(path), dynamo=False, input_names=["clip"],
                          output_names=["logits"], dynamic_axes={"clip": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"clip": clips.numpy()})[0]


def run_export(run: str | Path, fmt: str, atol: float, fold: int | None = None, out: str | Path | None = None) -> Path:
    """The `export` verb (its keys' defaults: cli.Export): write `<out>/model.pt|model.onnx` and `export.json`;
    raise if it differs from PyTorch by more than atol."""
    check_choice("export_format", fmt, FORMATS, key="format")
    run = Path(run)
    cfg, classes, checkpoints = load_run(run)
    checkpoint = checkpoints[0]
    if fold is not None:
        checkpoint = RunDir(run).checkpoint(fold)
    if not checkpoint.is_file():
        have = ", ".join(str(c.parent.relative_to(run)) for c in checkpoints)
        raise VidkitError(f"{checkpoint}: no such checkpoint (have: {have})")
    model = build_model(cfg, len(classes))
    load_checkpoint(model, checkpoint)
    model.eval()
    spec = model.input_spec
    out = Path(out) if out else run / "export"
    out.mkdir(parents=True, exist_ok=True)
    path = out / FORMATS[fmt]
    clips = example_clips(spec)
    with torch.no_grad():
        expected = model(clips).numpy()
    got = (export_onnx if fmt == "onnx" else export_torchscript)(model, clips, path)
    diff = float(np.abs(got - expected).max())
    if not diff <= atol:
        raise VidkitError(f"{path}: exported model differs from PyTorch by {diff:.2e} (> {atol:g})")
    meta = {"format": fmt, "file": path.name, "checkpoint": str(checkpoint), "classes": classes,
            "input_spec": asdict(spec), "input": f"float32 (batch, {', '.join(spec.layout)}) normalised with mean/std",
            "output": "logits (batch, n_classes); softmax for probabilities", "max_abs_diff": diff}
    write_json(out / "export.json", meta)
    print(f"wrote {path} ({fmt}; max |diff| vs PyTorch on 2 clips: {diff:.2e})")
    return path
