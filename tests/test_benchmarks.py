"""Every benchmarks/bench_*.py runs at its smallest size (`--smoke`) and finishes: an API change breaks the suite,
not the benchmark a month later. What cannot load here (shared data, CUDA, a decoder) is skipped with a reason.
All run one after another in one subprocess (as `python benchmarks/bench_X.py --smoke` would, via runpy), so torch
and vidkit are imported once."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SHARED

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("bench_*.py"))
RUNNER = """
import contextlib, io, json, os, runpy, sys, traceback
sys.path.insert(0, sys.argv[1])
results, root = {}, os.getcwd()
for path in sys.argv[2:]:
    os.chdir(root)  # a benchmark that changes folder does not move the next one
    sys.argv, out, code = [path, "--smoke"], io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as stop:
        code = stop.code or 0
    except BaseException:
        code = traceback.format_exc()[-3000:]
    results[path] = {"code": code, "stdout": out.getvalue()}
print(json.dumps(results))
"""


@pytest.mark.slow  # 8 benchmarks in one process: ~40 s of CPU
def test_every_benchmark_runs_at_its_smallest_size():
    assert len(BENCHMARKS) >= 8
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(ROOT / "benchmarks"), *map(str, BENCHMARKS)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    failed = {Path(p).name: r["code"] for p, r in results.items() if r["code"] != 0}
    assert not failed, failed
    for path, result in results.items():
        out = result["stdout"]
        skipped = [line for line in out.splitlines() if line.startswith("skipped:")]
        assert out.strip() and all(len(line) > len("skipped: ") + 10 for line in skipped), path  # a skip says why
        if SHARED.is_dir() and Path(path).stem != "bench_gpu":  # the data is here: it measured, it did not skip
            assert not skipped, (path, out)
