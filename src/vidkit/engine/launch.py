"""A verb on every GPU, from a notebook: one process per GPU through torchrun (Kaggle's "T4 x2": 2), one plain
process otherwise. A Jupyter kernel cannot host the worker processes itself, so the verb runs as a subprocess
of this same interpreter, on the same import path, its output streamed into the notebook's."""
from __future__ import annotations

import os
import subprocess
import sys

from vidkit.errors import VidkitError

PROCESSES_ENV = "VIDKIT_PROCESSES"  # forces the count (e.g. 2 CPU processes in tests; 1 to use one GPU)


def num_processes(requested: int | None = None) -> int:
    """`requested`, else $VIDKIT_PROCESSES, else one per visible GPU, else 1."""
    if requested:
        return int(requested)
    if os.environ.get(PROCESSES_ENV):
        return int(os.environ[PROCESSES_ENV])
    import torch
    return max(1, torch.cuda.device_count())


def python_command() -> list[str]:
    """This interpreter with its no-site flags: a child given this sys.path as PYTHONPATH imports exactly
    what this process can (the bundle's vidkit, the same packages), nothing more."""
    flags = [flag for flag, on in (("-S", sys.flags.no_site), ("-s", sys.flags.no_user_site)) if on]
    return [sys.executable, *flags, "-u"]


def command(verb: str, args: list[str], processes: int) -> list[str]:
    vidkit = ["-m", "vidkit", verb, *args]
    if processes == 1:
        return [*python_command(), *vidkit]
    # --no-python: torchrun starts `python_command() -m vidkit ...`, keeping the flags
    return [*python_command(), "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "--no-python", *python_command(), *vidkit]


def launch(verb: str, args: list[str], processes: int | None = None, env: dict | None = None) -> None:
    """`python -m vidkit <verb> <args>` on `processes` processes; its output printed as it comes."""
    n = num_processes(processes)
    cmd = command(verb, args, n)
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "PYTHONUNBUFFERED": "1"}
    print(f"vidkit: {verb} {' '.join(args)} ({n} process{'es' if n > 1 else ''})", flush=True)
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
    if proc.returncode:
        raise VidkitError(f"`vidkit {verb}` failed (exit {proc.returncode}); its output is above")

