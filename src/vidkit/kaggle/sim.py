"""A local stand-in for a Kaggle kernel's machine, for dry runs and tests of generated kernels.

- `restricted_python`: a virtual environment whose site-packages holds only the distributions of Kaggle's image
  (kernels/kaggle_image.txt) that are installed here, as symlinks: importing anything else fails as on Kaggle.
  Its sitecustomize installs an audit hook at interpreter start that refuses, and records, every network
  connection or name lookup and every write under the read-only inputs (chmod does not bind root).
- `kaggle_tree`: /kaggle/input with only what Kaggle mounts (the competition files named, the bundle dataset
  read-only) and /kaggle/working.
- `run_script` / `execute_notebook`: a kernel's code through that Python, as a script or through a real
  Jupyter kernel (nbclient + ipykernel); `guard_violations` lists what the audit hook refused.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import venv
from importlib import metadata
from pathlib import Path

from vidkit.choices import check_choice
from vidkit.errors import VidkitError

KAGGLE_IMAGE = Path(__file__).resolve().parents[3] / "kernels" / "kaggle_image.txt"
ROOT_ENV = "VIDKIT_KAGGLE_ROOT"
GUARD_LOG = "VIDKIT_GUARD_LOG"
READONLY = "VIDKIT_READONLY"
DEAD_PROXY = "http://127.0.0.1:9"
KERNEL_NAME = "vidkit-kaggle"

# Installed first thing in every interpreter of the restricted environment (kernel, pip, DataLoader workers).
SITECUSTOMIZE = r'''
import os, socket, sys


def _vidkit_guard():
    log = os.environ.get("VIDKIT_GUARD_LOG")
    readonly = [os.path.realpath(p) for p in os.environ.get("VIDKIT_READONLY", "").split(os.pathsep) if p]
    writing_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    write_events = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.chmod", "os.chown", "os.truncate",
                    "os.symlink", "os.link", "os.utime", "shutil.rmtree", "shutil.copyfile"}
    to_second = {"os.symlink", "os.link", "shutil.copyfile"}  # (source, destination): only the destination

    def refuse(error, what):
        if log:
            with open(log, "a") as f:
                f.write(what.replace("\n", " ") + "\n")
        raise error

    def read_only(value):
        if not readonly or not isinstance(value, (str, bytes, os.PathLike)):
            return False
        path = os.path.realpath(os.fsdecode(value))
        return any(path == r or path.startswith(r + os.sep) for r in readonly)

    def hook(event, args):
        if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
            refuse(ConnectionRefusedError(f"network blocked (Kaggle stand-in): connect to {args[1]!r}"),
                   f"network: connect {args[1]!r}")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
            refuse(socket.gaierror(f"network blocked (Kaggle stand-in): lookup of {args[0]!r}"),
                   f"network: lookup {args[0]!r}")
        elif event == "open" and read_only(args[0]):
            mode, flags = args[1], args[2]
            if (any(c in mode for c in "wax+") if isinstance(mode, str) else flags & writing_flags):
                refuse(PermissionError(13, "read-only input (Kaggle stand-in)", os.fsdecode(args[0])),
                       f"write: open {os.fsdecode(args[0])} ({mode or flags})")
        elif event in write_events and any(map(read_only, args[1:2] if event in to_second else args[:2])):
            refuse(PermissionError(13, f"read-only input (Kaggle stand-in): {event}", os.fsdecode(args[0])),
                   f"write: {event} {args[:2]!r}")

    sys.addaudithook(hook)


_vidkit_guard()
del _vidkit_guard
'''


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: Path = KAGGLE_IMAGE) -> set[str]:
    """The distribution names of kernels/kaggle_image.txt (comments and versions stripped)."""
    if not Path(path).is_file():
        raise VidkitError(f"{path}: Kaggle's package list not found (it ships with the vidkit repository)")
    names = {re.split(r"[=<>@\s\[]", line.strip(), maxsplit=1)[0] for line in Path(path).read_text().splitlines()}
    return {_norm(n) for n in names if n and not n.startswith("#")}


# an image package -> the distribution here that installs the same import (a prebuilt wheel of it)
SAME_PACKAGE = {"dlib": "dlib-bin"}


def allowed_distributions(listed: set[str]) -> dict[str, metadata.Distribution]:
    """Installed distributions on the list, plus what they require here: a listed package's local version may
    need a dependency under another name than Kaggle's (e.g. huggingface_hub 1.x: httpx2); the image ships
    its own version with its own dependencies."""
    from packaging.requirements import Requirement
    installed = {_norm(d.metadata["Name"]): d for d in metadata.distributions()}
    listed = listed | {local for image, local in SAME_PACKAGE.items() if image in listed}
    todo, allowed = [n for n in listed if n in installed], {}
    while todo:
        name = todo.pop()
        if name in allowed:
            continue
        allowed[name] = installed[name]
        for text in installed[name].requires or []:
            req = Requirement(text)
            if (req.marker is None or req.marker.evaluate({"extra": ""})) and _norm(req.name) in installed:
                todo.append(_norm(req.name))
    return allowed


def _top_levels(dist: metadata.Distribution) -> dict[str, list]:
    tops: dict[str, list] = {}
    for f in dist.files or []:
        if f.parts and f.parts[0] != "..":
            tops.setdefault(f.parts[0], []).append(f)
    return tops


def populate_site(site_dir: Path, allowed: dict[str, metadata.Distribution]) -> None:
    """Symlink every file of the allowed distributions into `site_dir`: whole top-level folders where no
    other installed distribution shares them (namespace packages), else file by file."""
    owners: dict[str, set] = {}
    for dist in metadata.distributions():
        for top in _top_levels(dist):
            owners.setdefault(top, set()).add(_norm(dist.metadata["Name"]))
    for dist in allowed.values():
        for top, files in _top_levels(dist).items():
            target = site_dir / top
            if owners[top] <= set(allowed):
                if not target.exists() and Path(dist.locate_file(top)).exists():
                    target.symlink_to(dist.locate_file(top))
                continue
            for f in files:
                source, link = Path(dist.locate_file(f)), site_dir / Path(*f.parts)
                if source.exists() and not link.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(source)


def restricted_python(dest: Path, image: Path = KAGGLE_IMAGE) -> Path:
    """A virtual environment at `dest` that sees only Kaggle's packages (and not vidkit); its python."""
    venv.EnvBuilder(symlinks=True, with_pip=False, clear=True).create(dest)
    site_dir = next(Path(dest).glob("lib/python*/site-packages"))
    populate_site(site_dir, allowed_distributions(image_packages(image)))
    (site_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return Path(dest) / "bin" / "python"


# ---------------------------------------------------------------- the /kaggle tree

def chmod_tree(top: Path, writable: bool) -> None:
    for p in [top, *top.rglob("*")]:
        if not p.is_symlink():
            mode = 0o755 if p.is_dir() else 0o644
            os.chmod(p, mode if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def kaggle_tree(root: Path, data: Path, mounts: list[str], competition: str, datasets: dict[str, Path],
                layout: str = "new") -> dict[str, Path]:
    """root/input as Kaggle mounts a code competition's kernel: of the competition's folder `data`, only the
    relative paths `mounts` (symlinks: test media and sample submission for inference), and copies of the
    `datasets` ({"owner/slug": folder}); root/working. Returns where each dataset landed.
    layout new: input/competitions/<slug>/, input/datasets/<owner>/<slug>/; old: input/<slug>/ for both."""
    check_choice("input_layout", layout, key="layout")
    new = layout == "new"
    comp_dir = root / "input" / ("competitions" if new else "") / competition
    for rel in mounts:
        source = Path(data) / rel
        if not source.exists():
            raise VidkitError(f"{source}: not found (the competition's data to mount)")
        (comp_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (comp_dir / rel).symlink_to(source.resolve(), target_is_directory=source.is_dir())
    landed = {}
    for ref, folder in datasets.items():
        owner, slug = ref.split("/")
        landed[ref] = root / "input" / (f"datasets/{owner}" if new else "") / slug
        shutil.copytree(folder, landed[ref], ignore=shutil.ignore_patterns("dataset-metadata.json"))
    (root / "working").mkdir(parents=True)
    return landed


def kernel_env(root: Path, readonly: list[Path], guard_log: Path) -> dict:
    """The kernel process's environment: a clean one, offline, its /kaggle at `root`."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OMP_NUM_THREADS")
           if k in os.environ}
    env.update({ROOT_ENV: str(root), GUARD_LOG: str(guard_log),
                READONLY: os.pathsep.join(str(p) for p in readonly),
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_PROXY": "", "no_proxy": "",
                **{k: DEAD_PROXY for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")}})
    return env


def guard_violations(guard_log: Path) -> list[str]:
    return Path(guard_log).read_text().splitlines() if Path(guard_log).is_file() else []


# ---------------------------------------------------------------- running a kernel's code

def run_script(python: Path, code: Path, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """A script through the restricted Python; -I: no PYTHONPATH, no user site, no script folder on sys.path."""
    return subprocess.run([str(python), "-I", str(code)], cwd=cwd, env=env, capture_output=True, text=True)


def write_kernelspec(folder: Path, python: Path, env: dict) -> Path:
    """folder/<KERNEL_NAME>/kernel.json: an ipykernel on the restricted Python, with `env`."""
    spec = folder / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-I", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Kaggle stand-in", "language": "python", "env": env}, indent=1))
    return folder


def execute_notebook(path: Path, python: Path, env: dict, cwd: Path, timeout: int = 600):
    """Execute the notebook at `path` through a real Jupyter kernel on the restricted Python (the kernelspec is
    written next to it); returns the executed notebook. A failing cell raises VidkitError with its error."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    nb = nbformat.read(str(path), as_version=4)
    specs = write_kernelspec(Path(path).parent / ".kernelspec", python, env)
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]))
    client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    except CellExecutionError as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise VidkitError(f"notebook {path.name} failed: {lines[-1] if lines else e}") from None
    return nb


def notebook_output(nb) -> str:
    """The text a notebook's code cells printed (stdout and stderr streams)."""
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")
