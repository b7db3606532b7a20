"""Distillation on the demo competition: a small R3D-18 student (configs/r3d18_student_demo.yaml: half the width,
half the frames) cross-validated with a wider R3D-18 teacher's out-of-fold probabilities as soft targets
(`cv ... teacher=RUN`), against the teacher's OOF accuracy, with both models' inference speed (each on its own
input) measured side by side (interleaved rounds, one core).
Target (issue 18): student OOF accuracy >= teacher's - 0.02, student >= 3x faster at inference.

    .venv/bin/python benchmarks/bench_distill.py [--teacher configs/r3d18_demo.yaml] [--student ...] [--alpha 0.7]
        [--no-baseline] [--smoke]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from common import add_smoke, one_core, race, table

from vidkit.config import load_config
from vidkit.flows.cv import run_cv
from vidkit.data import normalize
from vidkit.demo import make_demo
from vidkit.engine.runtime import build_model


# --smoke: a 16-video demo in 2 folds, 1 epoch of 4 frames at 32 px (it runs every step; the figures mean nothing)
SMOKE = {"epochs": "1", "num_frames": "4", "image_size": "32", "num_workers": "0"}


def cv(comp: Path, out: Path, config: str, **extra) -> tuple[float, Path]:
    run = run_cv(load_config(config, {"comp": str(comp), "out_dir": str(out), **extra}))
    return json.loads((run / "cv_report.json").read_text())["score"], run


def forward_speed(configs: dict, n: int = 32, overrides: dict | None = None) -> dict:
    """Clips/s of each model's forward on normalised clips of its own input (batch 16)."""
    one_core()
    inputs = {}
    for name, config in configs.items():
        model = build_model(load_config(config, overrides or {}), 4).eval()
        spec = model.input_spec
        clips = torch.randint(0, 256, (n, spec.num_frames, spec.size, spec.size, 3), dtype=torch.uint8)
        inputs[name] = (model, normalize(clips, spec.mean, spec.std, spec.layout))

    def run(model, video):
        with torch.no_grad():
            for i in range(0, n, 16):
                model(video[i:i + 16])
    for m, v in inputs.values():
        run(m, v)  # warm-up
    return race({k: (lambda m=m, v=v: run(m, v)) for k, (m, v) in inputs.items()}, n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="configs/r3d18_demo.yaml")
    ap.add_argument("--student", default="configs/r3d18_student_demo.yaml")
    ap.add_argument("--alpha", default="0.7")
    ap.add_argument("--temperature", default="2")
    ap.add_argument("--no-baseline", action="store_true", help="skip the student trained without a teacher")
    args = add_smoke(ap).parse_args()
    work = Path(tempfile.mkdtemp())
    small = dict(n_groups=4, per_group=4, n_test=4, size=48, n_folds=2) if args.smoke else {}
    extra = SMOKE if args.smoke else {}
    args.no_baseline |= args.smoke
    comp = make_demo(work / "data", work / "competition" / "demo.yaml", **small)
    teacher_score, teacher = cv(comp, work / "teacher", args.teacher, **extra)
    student_score, _ = cv(comp, work / "student", args.student, teacher=str(teacher), alpha=args.alpha,
                          temperature=args.temperature, **extra)
    speed = forward_speed({"teacher": args.teacher, "student": args.student}, 16 if args.smoke else 32, extra)
    rows = [("teacher", args.teacher, f"{teacher_score:.4f}", f"{speed['teacher']:.1f}"),
            (f"student + teacher (alpha {args.alpha}, T {args.temperature})", args.student, f"{student_score:.4f}",
             f"{speed['student']:.1f}")]
    if not args.no_baseline:
        alone, _ = cv(comp, work / "alone", args.student)
        rows.append(("student alone", args.student, f"{alone:.4f}", f"{speed['student']:.1f}"))
    table(rows, ("model", "config", "OOF accuracy", "forward clips/s (1 core)"))
    print(f"student - teacher OOF accuracy: {student_score - teacher_score:+.4f} (target >= -0.02); "
          f"student speed: {speed['student'] / speed['teacher']:.2f}x the teacher's (target >= 3x)")


if __name__ == "__main__":
    main()
