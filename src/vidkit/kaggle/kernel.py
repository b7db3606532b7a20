"""Offline Kaggle kernels: chosen runs -> a bundle dataset (vidkit source, configs, checkpoints, ensemble,
sha256 manifest) and a notebook that verifies it and runs the same inference as `make submit`, internet off.

`dry_run` lays out a fake /kaggle tree and runs the notebook's code there, with a Python that cannot import
vidkit from the repo and with the network blocked, before anything is uploaded.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

import vidkit
from vidkit.kaggle import sim as kaggle_sim
from vidkit.config import Competition, as_competition, load_competition, read_yaml
from vidkit.choices import check_choice
from vidkit.errors import VidkitError
from vidkit.files import read_json, write_text
from vidkit.rundir import BACKBONE_JSON, BACKBONE_WEIGHTS, RunDir, ensemble_file
from vidkit.kaggle.template.kernel_code import sha256
from vidkit.analysis.report import licence_allowed, licence_label, pretrained_of

log = logging.getLogger(__name__)
# the manifest is hashed with the very function the kernel verifies it with
TEMPLATE = Path(__file__).parent / "template" / "kernel_code.py"
# The official kaggle CLI's rules (kaggle 2.2 kaggle_api_extended.py): `datasets create` refuses dataset slugs and
# titles outside 6-50 characters; `kernels push` titles under 5 characters, and warns when python-slugify(title)
# is not the kernel's slug. The bundle slug stops at 44 so that "<slug>-infer" (and "-train") stay within 50.
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{4,42}[a-z0-9]")
USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
COMPETITION = re.compile(r"[a-z0-9][a-z0-9-]*[a-z0-9]")
# the licence names `dataset-metadata.json` accepts (Kaggle/kaggle-api docs/datasets_metadata.md @ 1bea7b41)
LICENSES = ("CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
            "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0",
            "CC-BY-3.0-IGO", "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0", "CDLA-Sharing-1.0",
            "CC-BY-ND-4.0", "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0", "FDL-1.3", "EU-ODP-Legal-Notice",
            "apache-2.0", "GPL-3.0")
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
PATH_KEYS = ("train_dir", "train_csv", "test_dir", "sample_submission", "features_dir")
NOT_HASHED = ("manifest.json", "dataset-metadata.json")


def slugify(text: str) -> str:
    """What Kaggle makes of a title: python-slugify, as the kaggle CLI calls it (non-ASCII transliterated)."""
    from slugify import slugify as python_slugify
    return python_slugify(text)


def check_license(license: str) -> str:
    if license not in LICENSES:
        raise VidkitError(f"license={license!r} is not a licence name Kaggle datasets accept: {', '.join(LICENSES)}")
    return license


def check_title(title: str, kernel_slug: str) -> str:
    if len(title) < 5:
        raise VidkitError(f"kernel: title={title!r} is too short (the kaggle CLI wants at least 5 characters)")
    if slugify(title) != kernel_slug:
        raise VidkitError(f"kernel: title={title!r} becomes the slug {slugify(title)!r} on Kaggle, not "
                          f"{kernel_slug!r}; pick a title whose words are {kernel_slug.replace('-', ' ')!r}")
    return title


@dataclasses.dataclass(frozen=True)
class KaggleSettings:
    """Who and what on Kaggle: the owner, the competition's slug, the dataset's slug, the kernel's slug and title."""
    user: str
    competition: str
    slug: str                   # the bundle dataset; the training kernel's code dataset is <slug>-code
    kernel_slug: str            # <slug>-infer or <slug>-train
    title: str
    gpu: bool = True

    @property
    def code_slug(self) -> str:
        return f"{self.slug}-code"

    def ref(self, slug: str) -> str:
        """`owner/slug`, as Kaggle names a dataset or a kernel."""
        return f"{self.user}/{slug}"


def kaggle_settings(comp: Competition, user=None, competition=None, slug=None, gpu=None, title=None,
                    suffix: str = "infer") -> KaggleSettings:
    """Username, competition slug, bundle slug, GPU and kernel title: options first, then the competition yaml.
    The kernel's slug is "<slug>-<suffix>"."""
    user = user or comp.kaggle_user
    competition = competition or comp.kaggle_competition
    if not user:
        raise VidkitError(f"kernel: no Kaggle username; pass user=NAME or set kaggle_user in {comp.path}")
    if not competition:
        raise VidkitError(f"kernel: no Kaggle competition slug; pass competition=SLUG or set kaggle_competition "
                          f"in {comp.path}")
    slug = slug or slugify(f"vidkit-{comp.name}")[:44].strip("-")
    for key, value, pattern in (("user", user, USER), ("competition", competition, COMPETITION),
                                ("slug", slug, SLUG)):
        if not pattern.fullmatch(value):
            raise VidkitError(f"kernel: {key}={value!r} is not a Kaggle slug (lowercase letters, digits, dashes"
                              + ("; 6 to 44 characters)" if key == "slug" else ")"))
    kernel_slug = f"{slug}-{suffix}"
    title = check_title(title or kernel_slug.replace("-", " "), kernel_slug)
    gpu = comp.kernel_gpu if gpu is None else gpu
    return KaggleSettings(user, competition, slug, kernel_slug, title, True if gpu is None else bool(gpu))


def hash_tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() not in NOT_HASHED}


# ---------------------------------------------------------------- the bundle dataset

def copy_run(member, dest: Path, counts: dict) -> None:
    """A run's config (pretrained and cache off: the checkpoints hold every weight, and there is no frame
    cache on Kaggle), run.json (with the class counts submit's prior needs), cv_report.json and its
    checkpoints, at the same relative paths."""
    run = member.run
    dest.mkdir(parents=True)
    src, out = RunDir(run), RunDir(dest)
    config = read_yaml(src.config_yaml)
    config.update(pretrained=None, cache=False, cache_dir=None)
    write_text(out.config_yaml, yaml.safe_dump(config, sort_keys=False))
    out.write_meta({**src.meta(), "class_counts": counts})
    if src.report_file.is_file():
        shutil.copyfile(src.report_file, out.report_file)
    for name in (BACKBONE_WEIGHTS, BACKBONE_JSON):  # a spotting head's backbone (vidkit.flows.spotfeatures)
        if (Path(run) / name).is_file():
            shutil.copyfile(Path(run) / name, dest / name)
    for ckpt in member.checkpoints:
        target = dest / ckpt.relative_to(run)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ckpt, target)


def local_path(comp: Competition, value: str) -> Path:
    """A yaml path made absolute without resolving symlinks (a data folder of symlinks keeps its layout)."""
    return Path(os.path.abspath(Path(comp.path).parent / value))


def competition_spec(comp: Competition) -> tuple[dict, dict]:
    """The competition yaml with its paths relative to the sample submission's folder (what Kaggle mounts
    as the competition's data), and what the kernel searches for: the sample's name and the test folder."""
    if not comp.sample_submission or not (comp.test_dir or comp.features_dir):
        raise VidkitError(f"{comp.path}: sample_submission and test_dir (or features_dir) are required for a kernel")
    local = lambda value: str(local_path(comp, value))  # noqa: E731
    data = os.path.dirname(local(comp.sample_submission))
    spec = {k: v for k, v in dataclasses.asdict(comp).items() if k != "path"}
    for key in PATH_KEYS:
        if spec[key]:
            spec[key] = os.path.relpath(local(spec[key]), data)
            if spec[key].startswith(".."):
                log.warning("%s: %s lies outside the sample submission's folder %s; the kernel expects the "
                            "competition's Kaggle data to have the same layout", comp.path, key, data)
    # precomputed features (features_dir:): the test videos' features are the competition's data, found and mounted
    # as the test media are
    return spec, {"sample_submission": spec["sample_submission"], "test_dir": spec["test_dir"] or spec["features_dir"]}


def member_folders(members) -> list[str]:
    names = []
    for m in members:
        name, k = m.run.name, 2
        while f"runs/{name}" in names:
            name, k = f"{m.run.name}-{k}", k + 1
        names.append(f"runs/{name}")
    return names


def ensemble_spec(comp: Competition, members, spec: dict, folders: list[str]) -> dict:
    """ensemble.yaml with member paths relative to the bundle; equal weights when submit would use them."""
    if spec:
        out = {k: v for k, v in spec.items() if k != "members"}
    else:
        out = {"metric": comp.metric, "method": "mean", "temperature": 1.0, "threshold": None, "clip": None}
    out["members"] = [{"run": f, "weight": round(m.weight, 6)} for f, m in zip(folders, members)]
    return {**out, "competition": comp.name}


def write_dataset(dest: Path, comp: Competition, settings: KaggleSettings, slug: str, title: str, license: str,
                  contents: dict, search_keys: tuple = ()) -> Path:
    """A dataset folder of vidkit's (the inference bundle, the training kernel's code): src/vidkit/ and
    competition.yaml, then manifest.json (the competition's paths, `contents`, the sha256 of every other file) and
    dataset-metadata.json. The caller wrote its own files into `dest` first; `search_keys`: more competition paths
    the kernel looks for (training data)."""
    spec, search = competition_spec(comp)
    shutil.copytree(Path(vidkit.__file__).parent, dest / "src" / "vidkit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    write_text(dest / "competition.yaml", yaml.safe_dump(spec, sort_keys=False))
    where = {**search, **{k: spec[k] for k in search_keys if spec.get(k)}}
    manifest = {"vidkit_bundle": slug, "vidkit_version": vidkit.__version__,
                "competition": {"slug": settings.competition, "name": comp.name, **where}, **contents,
                "files": hash_tree(dest)}
    write_text(dest / "manifest.json", json.dumps(manifest, indent=1))
    metadata = {"title": title, "id": settings.ref(slug), "licenses": [{"name": license}]}
    write_text(dest / "dataset-metadata.json", json.dumps(metadata, indent=1))
    return dest


def build_bundle(comp: Competition, members, spec: dict, settings: KaggleSettings, dest: Path, submit: dict,
                 wheels: str | None = None, license: str = "CC0-1.0") -> Path:
    """kernels/<slug>/: ensemble.yaml, runs/<run>/ and optional wheels/, in a vidkit dataset (`write_dataset`)."""
    dest.mkdir(parents=True, exist_ok=True)
    folders = member_folders(members)
    counts = None
    for folder, member in zip(folders, members):
        if member.class_counts is None and counts is None:  # a run from before run.json held them
            from vidkit.flows.cv import class_counts
            from vidkit.data import index_train
            counts = class_counts(index_train(comp), member.classes)
        copy_run(member, dest / folder, member.class_counts or counts)
    from vidkit.kaggle.heads import bundle_heads
    backbones = bundle_heads(members, folders, dest)  # each head's backbone once, its weights deduplicated
    blend = yaml.safe_dump(ensemble_spec(comp, members, spec, folders), sort_keys=False)
    header = "# written by `vidkit kernel`: the blend `make submit` would use; runs relative to this folder\n"
    write_text(ensemble_file(dest), header + blend)
    if wheels:
        found = sorted(Path(wheels).glob("*.whl"))
        if not found:
            raise VidkitError(f"wheels={wheels}: no .whl files there")
        (dest / "wheels").mkdir()
        for w in found:
            shutil.copyfile(w, dest / "wheels" / w.name)
    title = f"vidkit {comp.name} bundle"
    title = title if len(title) <= 50 else f"{settings.slug[:43]} bundle"
    return write_dataset(dest, comp, settings, settings.slug, title, license,
                         {"members": folders, "submit": submit, "backbones": backbones})


# ---------------------------------------------------------------- the kernel

def kernel_code(slug: str) -> str:
    return TEMPLATE.read_text().replace("__VIDKIT_BUNDLE__", slug)


def notebook(code: str, settings: KaggleSettings) -> dict:
    intro = (f"# {settings.title}\n\nOffline inference written by `python -m vidkit kernel`: verifies the "
             f"bundle `{settings.user}/{settings.slug}` (sha256 of every file), then runs the same "
             f"ensemble + TTA inference as `make submit` and writes `/kaggle/working/submission.csv`.")
    cell = {"cell_type": "code", "execution_count": None, "id": "vidkit-kernel", "metadata": {}, "outputs": [],
            "source": code.splitlines(keepends=True)}
    markdown = {"cell_type": "markdown", "id": "about", "metadata": {}, "source": intro.splitlines(keepends=True)}
    return {"cells": [markdown, cell],  # nbformat 4.5: every cell has an id
            "metadata": {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def write_kernel(settings: KaggleSettings, dest: Path, kernel_type: str = "notebook", private: bool = True) -> Path:
    """kernels/<slug>-infer/: kernel-metadata.json and the notebook (or script)."""
    check_choice("kernel_type", kernel_type)
    dest.mkdir(parents=True)
    code = kernel_code(settings.slug)
    code_file = f"{settings.kernel_slug}.{'ipynb' if kernel_type == 'notebook' else 'py'}"
    text = json.dumps(notebook(code, settings), indent=1) if kernel_type == "notebook" else code
    write_text(dest / code_file, text)
    metadata = {"id": settings.ref(settings.kernel_slug), "title": settings.title,
                "code_file": code_file, "language": "python", "kernel_type": kernel_type, "is_private": private,
                "enable_gpu": settings.gpu, "enable_internet": False,  # explicit: the CLI's default differs
                "dataset_sources": [settings.ref(settings.slug)],
                "competition_sources": [settings.competition], "kernel_sources": [], "model_sources": []}
    write_text(dest / "kernel-metadata.json", json.dumps(metadata, indent=1))
    return dest


def code_of(kernel_dir: Path) -> str:
    """The Python a kernel folder runs: its script, or its notebook's code cells."""
    meta = json.loads((kernel_dir / "kernel-metadata.json").read_text())
    path = kernel_dir / meta["code_file"]
    if meta["kernel_type"] == "script":
        return path.read_text()
    cells = json.loads(path.read_text())["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _fresh(path: Path, marker: str) -> Path:
    """Remove a folder a previous build wrote (it holds `marker`); refuse to touch anything else."""
    if path.exists():
        if not (path / marker).is_file():
            raise VidkitError(f"{path} exists and was not written by `vidkit kernel`; move it away or pass slug=")
        shutil.rmtree(path)
    return path


def check_licences(comp: Competition, runs: list[Path]) -> None:
    """Print each member's pretrained source and licence; refuse members outside `allowed_licenses`."""
    allowed = [str(a).lower() for a in comp.allowed_licenses] if comp.allowed_licenses is not None else None
    for run in runs:
        pretrained = pretrained_of(run)
        label = licence_label(pretrained)
        print(f"{Path(run).name}: pretrained {pretrained.get('source') or '-'} (licence: {label})")
        if not licence_allowed(pretrained, allowed):
            raise VidkitError(f"{RunDir(run).meta_file}: pretrained weights {pretrained.get('source')} are licensed "
                              f"{label!r}, not one of allowed_licenses {comp.allowed_licenses} ({comp.path})")


def build(comp: Competition | str, runs: list[str] | None = None, out: str = "kernels", tta_clips: int | None = None,
          budget: str | None = None, kernel_type: str = "notebook", private: bool = True,
          wheels: str | None = None, license: str = "CC0-1.0", **kaggle) -> tuple[Path, Path]:
    """The bundle dataset and the kernel folder for `runs` (default: what `make submit` would use)."""
    comp = as_competition(comp)
    settings = kaggle_settings(comp, **kaggle)
    check_license(license)
    from vidkit.flows.infer import resolve_members  # torch: imported after the quick checks above
    members, spec = resolve_members(comp, runs)
    check_licences(comp, [m.run for m in members])
    from vidkit.kaggle.heads import check_backbone_licences
    check_backbone_licences(comp, members)  # heads: the weights of the backbone their features come from
    bundle = _fresh(Path(out) / settings.slug, "dataset-metadata.json")
    kernel_dir = _fresh(Path(out) / settings.kernel_slug, "kernel-metadata.json")
    build_bundle(comp, members, spec, settings, bundle, {"tta_clips": tta_clips, "budget": budget}, wheels, license)
    write_kernel(settings, kernel_dir, kernel_type, private)
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    print(f"bundle {bundle} ({len(members)} runs, {size / 2**20:.1f} MiB); kernel {kernel_dir} "
          f"(GPU {'on' if settings.gpu else 'off'}, internet off, competition {settings.competition})")
    return bundle, kernel_dir


# ---------------------------------------------------------------- local dry run

def _mounts(manifest: dict) -> list[str]:
    """What a code competition mounts for inference: the test media and the sample submission."""
    mounts = [manifest["competition"]["sample_submission"], manifest["competition"]["test_dir"]]
    outside = [m for m in mounts if m.startswith("..") or os.path.isabs(m)]
    if outside:
        raise VidkitError(f"dry run: {outside[0]} lies outside the sample submission's folder; Kaggle mounts one "
                          f"competition folder, so lay the test media out beside the sample")
    return mounts


def run_kernel_on(kernel_dir: Path, root: Path, python: Path, env: dict) -> str:
    """Run the kernel folder's notebook (through a Jupyter kernel) or script on the stand-in; its output."""
    meta = json.loads((kernel_dir / "kernel-metadata.json").read_text())
    if meta["kernel_type"] == "notebook":
        nb_path = root.parent / meta["code_file"]
        shutil.copyfile(kernel_dir / meta["code_file"], nb_path)
        return kaggle_sim.notebook_output(kaggle_sim.execute_notebook(nb_path, python, env, root / "working"))
    code = root.parent / "kernel_code.py"
    write_text(code, code_of(kernel_dir))
    proc = kaggle_sim.run_script(python, code, env, root / "working")
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        log.error("kernel output (last lines):\n%s", "\n".join(lines[-20:]))
        raise VidkitError(f"dry run failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}")
    return proc.stdout


def on_stand_in(kernel_dir: Path, root: Path, python: Path, readonly: list[Path], guard: Path) -> str:
    """Run a kernel folder on the stand-in /kaggle at `root` with `readonly` inputs; its output. Any network
    call or write to an input the audit hook refused fails the run."""
    for folder in readonly:
        kaggle_sim.chmod_tree(folder, writable=False)  # binds non-root users; the audit hook binds root too
    try:
        output = run_kernel_on(kernel_dir, root, python, kaggle_sim.kernel_env(root, readonly, guard))
    finally:
        for folder in readonly:
            kaggle_sim.chmod_tree(folder, writable=True)
    refused = kaggle_sim.guard_violations(guard)
    if refused:
        raise VidkitError(f"dry run: {kernel_dir.name} tried {len(refused)} forbidden operations (no network, "
                          f"read-only inputs on Kaggle), first: {refused[0]}")
    return output


def dry_run(kernel_dir: Path, bundle: Path, comp: Competition, workdir: Path, layout: str = "new",
            python: Path | None = None) -> Path:
    """Run the kernel on a fake /kaggle under `workdir` (kaggle_sim: only Kaggle's packages, the bundle
    read-only, no network); its submission.csv, checked against the sample. `python`: a restricted Python
    made earlier (kaggle_sim.restricted_python), else one is made in `workdir`. What the kernel printed is
    kept in `workdir`/kernel_output.txt."""
    manifest = read_json(bundle / "manifest.json", "bundle manifest", {"files": dict, "competition": dict})
    ref = read_json(bundle / "dataset-metadata.json", "dataset metadata", {"id": str})["id"]
    sample = local_path(comp, comp.sample_submission)
    root, guard = Path(workdir) / "kaggle", Path(workdir) / "guard.log"
    python = python or kaggle_sim.restricted_python(Path(workdir) / "python")
    landed = kaggle_sim.kaggle_tree(root, sample.parent, _mounts(manifest), manifest["competition"]["slug"],
                                    {ref: bundle}, layout)[ref]
    output = on_stand_in(kernel_dir, root, python, [landed], guard)
    write_text(Path(workdir) / "kernel_output.txt", output)
    for line in output.splitlines():
        if line.startswith("vidkit kernel:"):
            log.info("dry run: %s", line[len("vidkit kernel: "):])
    out = root / "working" / "submission.csv"
    if not out.is_file():
        raise VidkitError(f"dry run: the kernel wrote no {out}")
    if comp.task == "spotting":  # an event list: vidkit.flows.spotting checks it
        from vidkit.flows.spotting import validate_file as validate_events_file
        validate_events_file(out, comp)
        return out
    from vidkit.flows.submit import validate_file
    validate_file(str(out), str(sample), comp.id_column)
    return out


# ---------------------------------------------------------------- upload

def kaggle_cli(args: list[str]) -> tuple[int, str]:
    """Run the kaggle CLI; (exit code, what it printed). It prints server errors and exits 0 for some of them
    (`datasets version` of a dataset that does not exist), so callers read the text, not only the code."""
    proc = subprocess.run(["kaggle", *args], capture_output=True, text=True)
    text = (proc.stdout + proc.stderr).strip()
    for line in text.splitlines():
        print(f"  kaggle: {line}")
    return proc.returncode, text


def _last_line(text: str) -> str:
    return text.splitlines()[-1] if text else "no output"


def dataset_exists(ref: str) -> bool:
    """Ask the CLI (`kaggle datasets status`): True when the dataset exists, False on a 404; anything else
    (credentials, network) is an error."""
    code, text = kaggle_cli(["datasets", "status", ref])
    if code == 0 and text and "error" not in text.lower():
        return True
    if "404" in text or "not found" in text.lower():
        return False
    raise VidkitError(f"`kaggle datasets status {ref}` failed: {_last_line(text)} (credentials in "
                      f"~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY?)")


def upload_bundle(bundle: Path, ref: str) -> str:
    """A new version of the bundle dataset when it exists, else a new dataset; what happened, in words."""
    exists = dataset_exists(ref)
    args = (["datasets", "version", "-p", str(bundle), "-r", "zip", "-m", "vidkit kernel bundle"] if exists
            else ["datasets", "create", "-p", str(bundle), "-r", "zip"])
    code, text = kaggle_cli(args)
    if code != 0 or "is being created" not in text:
        raise VidkitError(f"`kaggle {' '.join(args[:2])}` for {ref} did not succeed: {_last_line(text)}")
    return f"{'new version of dataset' if exists else 'created dataset'} {ref}"


def push_kernel(kernel_dir: Path, ref: str) -> str:
    code, text = kaggle_cli(["kernels", "push", "-p", str(kernel_dir)])
    if code != 0 or "successfully pushed" not in text:
        raise VidkitError(f"`kaggle kernels push -p {kernel_dir}` did not succeed: {_last_line(text)}")
    if "not valid dataset sources" in text:
        raise VidkitError(f"the kernel was pushed without its bundle {ref} (Kaggle: not a valid dataset source yet; "
                          f"a new dataset takes a minute): run `kaggle kernels push -p {kernel_dir}` again")
    return next((line for line in text.splitlines() if "successfully pushed" in line), "kernel pushed")


def push(bundle: Path, kernel_dir: Path) -> bool:
    """Upload the bundle (asking the CLI whether it exists: a new version, else a new dataset) and push the
    kernel, with the kaggle CLI when it is installed; otherwise print the commands."""
    ref = json.loads((bundle / "dataset-metadata.json").read_text())["id"]
    if shutil.which("kaggle") is None:
        print("the kaggle CLI is not installed (pip install kaggle; API token in ~/.kaggle/kaggle.json); then run:\n"
              f"  kaggle datasets create -p {bundle} -r zip    # the first time; later: kaggle datasets version "
              f"-p {bundle} -r zip -m 'vidkit kernel bundle'\n  kaggle kernels push -p {kernel_dir}")
        return False
    uploaded = upload_bundle(bundle, ref)
    print(f"push: {uploaded}; {push_kernel(kernel_dir, ref)}")
    return True


def run_kernel(comp_path: str, runs: list[str] | None = None, dry_run_: bool = False, push_: bool = False,
               layout: str = "new", **options) -> tuple[Path, Path]:
    """The `kernel` verb: build, then optionally dry-run (submission kept as kernels/<kernel>.dry-run.csv)
    and push."""
    comp = load_competition(comp_path)
    bundle, kernel_dir = build(comp, runs, **options)
    if dry_run_:
        with tempfile.TemporaryDirectory(prefix="vidkit-kaggle-") as tmp:
            out = dry_run(kernel_dir, bundle, comp, Path(tmp), layout)
            kept = kernel_dir.parent / f"{kernel_dir.name}.dry-run.csv"
            shutil.copyfile(out, kept)
        print(f"dry run ok: offline kernel wrote a valid submission ({kept})")
    if push_:
        push(bundle, kernel_dir)
    return bundle, kernel_dir
