"""Start-up time of the verbs that need no model: `python -m vidkit <verb> ...` on a tiny workspace (a 16-video
competition, two fake cross-validated runs, one 10-frame video): wall time and CPU time (user + sys of the
process, less sensitive to other load on the machine), best of N runs; Python's own import time (`-X importtime`,
the sum of every module's self time); and which heavy packages were imported at all.

    .venv/bin/python benchmarks/bench_startup.py [--rounds 3] [--smoke]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import add_smoke

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "transformers", "accelerate", "albumentations")


def fake_run(folder: Path, comp: str, train: Path, seed: int) -> None:
    """A cross-validated run as `report` and `ensemble` read it: oof.csv, folds.csv, cv_report.json."""
    rng = np.random.default_rng(seed)
    videos = sorted(p for p in train.glob("*/*") if p.is_dir())
    classes = sorted({v.parent.name for v in videos})
    probs = rng.dirichlet(np.ones(len(classes)), len(videos))
    oof = pd.DataFrame({"video_id": [v.name for v in videos], "fold": [i % 2 for i in range(len(videos))],
                        "label": [v.parent.name for v in videos], **dict(zip(classes, probs.T))})
    folder.mkdir(parents=True)
    oof.to_csv(folder / "oof.csv", index=False)
    oof[["video_id", "fold"]].assign(label=oof["label"], group=oof["video_id"]).to_csv(folder / "folds.csv", index=False)
    (folder / "run.json").write_text(json.dumps({"competition": comp, "classes": classes}))
    (folder / "cv_report.json").write_text(json.dumps({"metric": "accuracy", "score": float(rng.random()),
                                                       "fold_scores": [0.5, 0.6], "protocol": "4x1x1 video-level"}))


def workspace(root: Path) -> dict[str, list[str]]:
    """The tiny inputs; returns verb -> arguments (`folds (draw)`: the folds file is deleted before each run)."""
    import cv2
    from vidkit.demo import make_demo
    comp = make_demo(root / "data", root / "competition" / "tiny.yaml", n_groups=4, per_group=4, n_test=4, size=32,
                     n_folds=2)
    for name, seed in (("a", 0), ("b", 1)):
        fake_run(root / "weights" / "tiny" / name, "tiny", root / "data" / "train", seed)
    (root / "videos").mkdir()
    writer = cv2.VideoWriter(str(root / "videos" / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    for i in range(10):
        writer.write(np.full((32, 32, 3), i * 20, np.uint8))
    writer.release()
    sample = str(root / "data" / "sample_submission.csv")
    return {"--help": ["--help"], "train --help": ["train", "--help"],
            "validate": ["validate", sample, f"sample={sample}"], "report": ["report", f"comp={comp}"],
            "folds": ["folds", f"comp={comp}"], "folds (draw)": ["folds", f"comp={comp}"], "check": ["check", f"comp={comp}", "num_frames=4"],
            "frames": ["frames", f"videos={root / 'videos'}", f"out={root / 'frames'}", "size=16"],
            "ensemble": ["ensemble", f"comp={comp}", f"out={root / 'ens.yaml'}"]}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], cwd: Path, importtime: bool = False, redraw: Path | None = None) -> tuple[float, float, str]:
    """(wall s, CPU s, stderr) of one `python -m vidkit ...`; `redraw`: a file deleted first."""
    if redraw is not None:
        redraw.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "vidkit", *args]
    start, cpu = time.perf_counter(), cpu_s()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took, cpu = time.perf_counter() - start, cpu_s() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-1000:]}")
    return took, cpu, proc.stderr


def imports(stderr: str) -> tuple[float, set[str]]:
    """(total self import time in seconds, top-level packages imported) from `-X importtime` output."""
    rows = re.findall(r"^import time:\s+(\d+) \|\s+\d+ \|( *)(\S+)", stderr, re.M)
    return sum(int(us) for us, _, _ in rows) / 1e6, {name.split(".")[0] for _, _, name in rows}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = add_smoke(parser).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        verbs = workspace(root)
        if args.smoke:  # one light verb and one that reads runs, once each
            args.rounds, verbs = 1, {k: verbs[k] for k in ("--help", "report")}
        print(f"{'verb':14s} {'wall s':>7s} {'CPU s':>6s} {'import s':>9s}  heavy packages imported")
        for name, argv in verbs.items():
            redraw = (root / "competition" / "tiny.folds.csv") if name == "folds (draw)" else None
            runs = [run(argv, root, redraw=redraw) for _ in range(args.rounds)]
            total, packages = imports(run(argv, root, importtime=True, redraw=redraw)[2])
            heavy = ", ".join(p for p in HEAVY if p in packages) or "none"
            print(f"{name:14s} {min(r[0] for r in runs):7.2f} {min(r[1] for r in runs):6.2f} {total:9.2f}  {heavy}")


if __name__ == "__main__":
    main()
