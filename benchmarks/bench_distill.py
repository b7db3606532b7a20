"""Distillation on the demo competition: a narrow R3D-18 student cross-validated with a wider R3D-18 teacher's
out-of-fold probabilities as soft targets (`cv ... teacher=RUN`), against the teacher's OOF accuracy, with both
models' inference speed measured side by side (interleaved rounds, one core).
Target (issue 18): student OOF accuracy >= teacher's - 0.02, student >= 3x faster at inference.

    .venv/bin/python benchmarks/bench_distill.py [--teacher-width 16] [--student-width 8] [--no-baseline]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from common import one_core, race, table

from vidkit.config import load_config
from vidkit.cv import run_cv
from vidkit.data import normalize
from vidkit.demo import make_demo
from vidkit.runtime import build_model


def cv(comp: Path, out: Path, width: int, **extra) -> tuple[float, Path]:
    overrides = {"comp": str(comp), "out_dir": str(out), "model_args.width": str(width), **extra}
    run = run_cv(load_config("configs/r3d18_demo.yaml", overrides))
    return json.loads((run / "cv_report.json").read_text())["score"], run


def forward_speed(widths: dict, n: int = 32) -> dict:
    """Clips/s of each model's forward on the same normalised clips (batch 16)."""
    one_core()
    models = {k: build_model(load_config("configs/r3d18_demo.yaml", {"model_args.width": str(w)}), 4).eval()
              for k, w in widths.items()}
    spec = next(iter(models.values())).input_spec
    clips = torch.randint(0, 256, (n, spec.num_frames, spec.size, spec.size, 3), dtype=torch.uint8)
    video = normalize(clips, spec.mean, spec.std, spec.layout)

    def run(model):
        with torch.no_grad():
            for i in range(0, n, 16):
                model(video[i:i + 16])
    for m in models.values():
        run(m)  # warm-up
    return race({k: (lambda m=m: run(m)) for k, m in models.items()}, n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher-width", type=int, default=16)
    ap.add_argument("--student-width", type=int, default=8)
    ap.add_argument("--no-baseline", action="store_true", help="skip the student trained without a teacher")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    comp = make_demo(work / "data", work / "competition" / "demo.yaml")
    teacher_score, teacher = cv(comp, work / "teacher", args.teacher_width)
    student_score, _ = cv(comp, work / "student", args.student_width, teacher=str(teacher), alpha="0.7")
    rows = [("teacher", args.teacher_width, f"{teacher_score:.4f}"),
            ("student + teacher", args.student_width, f"{student_score:.4f}")]
    if not args.no_baseline:
        alone, _ = cv(comp, work / "alone", args.student_width)
        rows.append(("student alone", args.student_width, f"{alone:.4f}"))
    speed = forward_speed({"teacher": args.teacher_width, "student": args.student_width})
    table([(*r, f"{speed['teacher' if r[0] == 'teacher' else 'student']:.1f}") for r in rows],
          ("model", "width", "OOF accuracy", "forward clips/s (1 core)"))
    print(f"student - teacher OOF accuracy: {student_score - teacher_score:+.4f} (target >= -0.02); "
          f"student speed: {speed['student'] / speed['teacher']:.2f}x the teacher's (target >= 3x)")


if __name__ == "__main__":
    main()
