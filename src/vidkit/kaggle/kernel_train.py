"""Training kernels (`kernel mode=train configs=A,B`): a Kaggle notebook that cross-validates each config on the
competition's own data on Kaggle's GPUs (all of them: `launch`), internet off, writing the runs under
/kaggle/working/vidkit/.

Built here: the code dataset `<slug>-code` (vidkit's source, the resolved configs, the competition spec, a sha256
manifest) and the notebook `<slug>-train`. On Kaggle, `train_on_kaggle` (imported from the code dataset) copies a
previous version's output in, runs `cv` (resume=true) per config within the time budget, and once every config is
done blends them (`ensemble`) and writes the inference bundle `<slug>/` beside the runs, which an inference kernel
built with `runs_from=notebook` reads from this notebook's output.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

import vidkit
from vidkit.kaggle import kernel
from vidkit.config import Competition, load_competition, load_config, parse_duration
from vidkit.choices import check_choice
from vidkit.errors import VidkitError
from vidkit.files import read_json, write_text
from vidkit.rundir import RunDir

log = logging.getLogger(__name__)
TEMPLATE = Path(__file__).parent / "template" / "train_code.py"
MARKER = "vidkit-train.json"  # at the root of the notebook's output: which kernel wrote it, which configs are done
GUARD = 'if __name__ == "__main__":\n    main()\n'  # the inference template's last lines: not run in the notebook
RUN_KEYS = ("name", "comp", "out_dir", "fold", "resume", "max_time")  # the notebook sets these per run


# ---------------------------------------------------------------- built here

def train_settings(comp: Competition, user=None, competition=None, slug=None, gpu=None,
                   title=None) -> kernel.KaggleSettings:
    """kernel.kaggle_settings for this kernel's slug `<slug>-train` (its code dataset: `.code_slug`)."""
    return kernel.kaggle_settings(comp, user=user, competition=competition, slug=slug, gpu=gpu, title=title,
                                  suffix="train")


def weight_sources(text: str | None) -> tuple[list[str], list[str]]:
    """`weights=OWNER/DATASET,model:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION` -> (dataset_sources, model_sources)."""
    datasets, models = [], []
    for ref in [r.strip() for r in (text or "").split(",") if r.strip()]:
        if ref.startswith("model:") and len(ref[6:].split("/")) == 5:
            models.append(ref[6:])
        elif not ref.startswith("model:") and len(ref.split("/")) == 2:
            datasets.append(ref)
        else:
            raise VidkitError(f"weights: {ref!r} is neither OWNER/DATASET nor "
                              "model:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION")
    return datasets, models


def resolve_configs(names: list[str], overrides: dict) -> dict[str, dict]:
    """Each config with its `_base_` chain and the overrides applied, as the notebook will run it. A
    pretrained path of this machine becomes `auto`: the notebook looks in its weight inputs."""
    if not names:
        raise VidkitError("kernel mode=train: configs=A,B is required (config names or yaml paths)")
    configs = {}
    for name in names:
        cfg = load_config(name, overrides)
        if isinstance(cfg.seed, list):
            raise VidkitError(f"{name}: a training kernel runs one seed per config (seed={cfg.seed})")
        if cfg.pretrained not in (None, "auto"):
            log.warning("%s: pretrained=%s is a path on this machine; on Kaggle pretrained=auto looks for a "
                        "folder %s/ in the weight inputs (weights=)", name, cfg.pretrained, cfg.model)
            cfg.pretrained = "auto"
        if cfg.name in configs:
            raise VidkitError(f"configs: {cfg.name} is named twice")
        configs[cfg.name] = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_KEYS}
    return configs


def build_code_dataset(comp: Competition, configs: dict, settings: kernel.KaggleSettings, dest: Path, train: dict,
                       license: str = "CC0-1.0", pretrain: dict | None = None) -> Path:
    """kernels/<slug>-code/: configs/<name>.yaml (what to train, in the manifest too; `pretrain`: {<name>_pretrain:
    its config}), in a vidkit dataset (`kernel.write_dataset`: the source, the competition, the sha256 manifest,
    dataset-metadata.json)."""
    (dest / "configs").mkdir(parents=True)
    for name, data in {**configs, **(pretrain or {})}.items():
        write_text(dest / "configs" / f"{name}.yaml", yaml.safe_dump(data, sort_keys=False))
    return kernel.write_dataset(dest, comp, settings, settings.code_slug, f"{settings.code_slug[:45]} code",
                                license, {"configs": list(configs), "train": train}, ("train_dir", "train_csv"))


def _cell(kind: str, cell_id: str, text: str) -> dict:
    cell = {"cell_type": kind, "id": cell_id, "metadata": {}, "source": text.splitlines(keepends=True)}
    return {**cell, "execution_count": None, "outputs": []} if kind == "code" else cell


def train_notebook(settings: kernel.KaggleSettings) -> dict:
    """nbformat 4.5: an introduction, the inference kernel's helpers (find and verify a dataset by its
    manifest; its main() is not run) and the training cell."""
    helpers = kernel.TEMPLATE.read_text()
    if GUARD not in helpers:
        raise VidkitError(f"{kernel.TEMPLATE} no longer ends with its main() guard; update vidkit.kaggle.kernel_train")
    helpers = helpers.replace(GUARD, "").replace("__VIDKIT_BUNDLE__", settings.code_slug)
    code = TEMPLATE.read_text().replace("__VIDKIT_KERNEL__", settings.kernel_slug)
    intro = (f"# {settings.title}\n\nCross-validation on Kaggle's GPUs, written by `python -m vidkit kernel "
             f"mode=train`: verifies the code dataset `{settings.user}/{settings.code_slug}`, then runs `cv` "
             "for each config with the internet off. A version stopped by its time budget continues in the next "
             "(add this notebook's output as an input: `resume=true`). Once every config is done, the output holds "
             f"the runs (`vidkit/weights/`) and the inference bundle `{settings.slug}/`.")
    cells = [_cell("markdown", "about", intro), _cell("code", "helpers", helpers), _cell("code", "train", code)]
    return {"cells": cells, "metadata": {"kernelspec": kernel.KERNELSPEC, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def write_train_kernel(settings: kernel.KaggleSettings, dest: Path, weights: tuple[list, list], private: bool = True,
                       resume: bool = False) -> Path:
    """kernels/<slug>-train/: the notebook and kernel-metadata.json (internet off, GPU, the competition, the
    code dataset and the weight sources; with resume, this notebook's own output)."""
    dest.mkdir(parents=True)
    code_file = f"{settings.kernel_slug}.ipynb"
    write_text(dest / code_file, json.dumps(train_notebook(settings), indent=1))
    own = settings.ref(settings.kernel_slug)
    sources = {"dataset_sources": [settings.ref(settings.code_slug), *weights[0]],
               "competition_sources": [settings.competition], "kernel_sources": [own] if resume else [],
               "model_sources": weights[1]}
    meta = {"id": own, "title": settings.title, "code_file": code_file, "language": "python",
            "kernel_type": "notebook", "is_private": private, "enable_gpu": settings.gpu,
            "enable_internet": False, **sources}
    write_text(dest / "kernel-metadata.json", json.dumps(meta, indent=1))
    return dest


def build_train(comp_path: str, configs: list[str], overrides: dict | None = None, out: str = "kernels",
                weights: str | None = None, time_budget: str = "11h", processes: int | None = None,
                resume: bool = False, private: bool = True, license: str = "CC0-1.0", pretrain: str | None = None,
                **kaggle) -> tuple[Path, Path]:
    """The code dataset and the training notebook for `configs` (names or paths), each with `overrides`;
    `pretrain`: a config that `vidkit pretrain` runs first, whose folder the configs of its model fine-tune from."""
    comp = load_competition(comp_path)
    settings, license = train_settings(comp, **kaggle), kernel.check_license(license)
    sources = weight_sources(weights)
    resolved = resolve_configs(configs, overrides or {})
    train = {key: getattr(settings, key) for key in ("user", "competition", "slug", "kernel_slug", "gpu")}
    train.update(time_budget=parse_duration(time_budget, "time_budget"), processes=processes)
    pretrained = {f"{name}_pretrain": data for name, data in resolve_configs([pretrain], overrides or {}).items()} \
        if pretrain else None
    if pretrained:
        train["pretrain"] = next(iter(pretrained))
    code_dir = kernel._fresh(Path(out) / settings.code_slug, "dataset-metadata.json")
    kernel_dir = kernel._fresh(Path(out) / settings.kernel_slug, "kernel-metadata.json")
    build_code_dataset(comp, resolved, settings, code_dir, train, license, pretrained)
    write_train_kernel(settings, kernel_dir, sources, private, resume)
    print(f"code dataset {code_dir} ({len(resolved)} configs: {', '.join(resolved)}); training kernel {kernel_dir} "
          f"(GPU {'on' if settings.gpu else 'off'}, internet off, budget {time_budget}"
          f"{', resumes its previous output' if resume else ''})")
    return code_dir, kernel_dir


def infer_from_notebook(comp_path: str, runs_from: str, out: str = "kernels", kernel_type: str = "notebook",
                        private: bool = True, user=None, competition=None, slug=None, title=None, gpu=None,
                        **unused) -> Path:
    """`kernel runs_from=notebook`: the inference kernel alone, reading the bundle that the training kernel
    `<slug>-train` left in its output (kernel_sources) instead of a bundle dataset."""
    check_choice("runs_from", runs_from, ("notebook",))
    if unused:
        log.warning("runs_from=notebook: %s do not apply (the training kernel builds the bundle)", ", ".join(unused))
    settings = kernel.kaggle_settings(load_competition(comp_path), user=user, competition=competition, slug=slug,
                                      gpu=gpu, title=title)
    kernel_dir = kernel._fresh(Path(out) / settings.kernel_slug, "kernel-metadata.json")
    kernel.write_kernel(settings, kernel_dir, kernel_type, private)
    meta = json.loads((kernel_dir / "kernel-metadata.json").read_text())
    meta.update(dataset_sources=[], kernel_sources=[settings.ref(f"{settings.slug}-train")])
    write_text(kernel_dir / "kernel-metadata.json", json.dumps(meta, indent=1))
    print(f"kernel {kernel_dir}: runs and bundle from the output of the notebook {meta['kernel_sources'][0]}")
    return kernel_dir


def run_train_kernel(comp: str, configs: str | None, overrides: dict, dry_run: bool = False, push: bool = False,
                     weights: str | None = None, time_budget: str = "11h", processes: int | None = None,
                     resume: bool = False, private: bool = True, gpu: bool | None = None,
                     pretrain: str | None = None, **options) -> tuple[Path, Path]:
    """The `kernel mode=train` verb: build, then optionally dry-run the first version locally and push."""
    other = sorted(set(options) - {"user", "competition", "slug", "title", "out", "license"})
    if other:
        raise VidkitError(f"kernel mode=train: {other[0]}= belongs to the inference kernel")
    code_dir, kernel_dir = build_train(comp, [c for c in (configs or "").split(",") if c], overrides,
                                       weights=weights, time_budget=time_budget, processes=processes, resume=resume,
                                       private=private, gpu=gpu, pretrain=pretrain, **options)
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="vidkit-kaggle-") as tmp:
            left = dry_run_train(code_dir, kernel_dir, load_competition(comp), Path(tmp))
        print("dry run ok: the training kernel ran offline on a stand-in /kaggle"
              + (f"; unfinished (time budget): {', '.join(left)}" if left else ", every config cross-validated"))
    if push:
        kernel.push(code_dir, kernel_dir)
    return code_dir, kernel_dir


# ---------------------------------------------------------------- on Kaggle

def previous_output(inputs: Path, kernel_slug: str) -> Path | None:
    """This notebook's last output, mounted as one of its inputs: input/notebooks/<owner>/<slug>/ (or the old
    input/<slug>/), recognised by its marker file."""
    for folder in [*sorted(inputs.glob(f"notebooks/*/{kernel_slug}")), inputs / kernel_slug]:
        marker = folder / MARKER
        if marker.is_file() and json.loads(marker.read_text()).get("kernel") == kernel_slug:
            return folder
    return None


def copy_writable(source: Path, dest: Path) -> None:
    """A copy of a read-only input that training can write to (copytree would keep the read-only modes)."""
    for path in sorted(source.rglob("*")):
        target = dest / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def weight_roots(inputs: Path, skip: list[Path]) -> list[Path]:
    """Every input but the competition's data, the code dataset and the previous output: pretrained=auto
    looks in these (datasets/<owner>/<slug>/, models/<owner>/<model>/, or the old input/<slug>/)."""
    skipped = {p.resolve() for p in skip if p is not None}
    roots = []
    for top in sorted(p for p in inputs.iterdir() if p.is_dir() and p.name != "competitions"):
        if top.name in ("datasets", "models", "notebooks"):
            roots += sorted(q for owner in top.iterdir() if owner.is_dir() for q in owner.iterdir() if q.is_dir())
        else:
            roots.append(top)
    return [r for r in roots if r.resolve() not in skipped]


def local_competition(code: Path, data: Path, run: Path) -> Path:
    """The competition yaml with its paths pointing into the mounted data, in the run folder."""
    spec = yaml.safe_load((code / "competition.yaml").read_text())
    for key in kernel.PATH_KEYS:
        if spec.get(key):
            spec[key] = str(data / spec[key])
    run.mkdir(parents=True, exist_ok=True)
    write_text(run / "competition.yaml", yaml.safe_dump(spec, sort_keys=False))
    return run / "competition.yaml"


def pretrain_first(code: Path, manifest: dict, comp_path: Path, env: dict, deadline: float) -> Path | bool | None:
    """`kernel pretrain=CONFIG`: `pretrain` (resume=true) until done or the deadline; its save_pretrained folder,
    False while unfinished, None without one."""
    from vidkit.engine.launch import launch
    from vidkit.flows.pretrain import finished, pretrained_folder
    config = manifest["train"].get("pretrain")
    if not config:
        return None
    out = comp_path.parent / "weights" / manifest["competition"]["name"] / config
    if not finished(out):  # every version makes progress, even on a spent budget
        launch("pretrain", [str(code / "configs" / f"{config}.yaml"), f"comp={comp_path}", f"out_dir={out}",
                            "resume=true", f"max_time={max(1, int(deadline - time.time()))}s",
                            f"cache_dir={Path(tempfile.gettempdir()) / 'vidkit-cache'}"],
               manifest["train"].get("processes"), env)
    return pretrained_folder(out) if finished(out) else False


def _model_of(code: Path, config: str) -> str | None:
    return yaml.safe_load((code / "configs" / f"{config}.yaml").read_text()).get("model")


def train_configs(code: Path, manifest: dict, comp_path: Path, env: dict, deadline: float) -> list[str]:
    """`cv` (resume=true) for every config without a cv_report.json, until the deadline; the configs left.
    With a `pretrain` config, it runs first, and the configs of its model fine-tune from its folder."""
    from vidkit.engine.launch import launch
    name, left, launched = manifest["competition"]["name"], [], False
    folder = pretrain_first(code, manifest, comp_path, env, deadline)
    if folder is False:
        return list(manifest["configs"])
    own = _model_of(code, manifest["train"]["pretrain"]) if folder else None
    for config in manifest["configs"]:
        out = comp_path.parent / "weights" / name / config
        if RunDir(out).finished():
            print(f"vidkit kernel: {config}: cross-validated by an earlier version")
            continue
        seconds = deadline - time.time()
        if seconds <= 0 and launched:  # every version makes progress, even on a spent budget
            left.append(config)
            continue
        launch("cv", [str(code / "configs" / f"{config}.yaml"), f"comp={comp_path}", f"out_dir={out}",
                      "resume=true", f"max_time={max(1, int(seconds))}s",
                      f"cache_dir={Path(tempfile.gettempdir()) / 'vidkit-cache'}",  # not in the output
                      *([f"pretrained={folder}"] if folder and _model_of(code, config) == own else [])],
               manifest["train"].get("processes"), env)
        launched = True
        if not RunDir(out).finished():
            left.append(config)
    return left


def finish(manifest: dict, comp_path: Path, work: Path) -> None:
    """Every config done: blend them (ensemble.yaml) and write the inference bundle `<slug>/` into the output."""
    from vidkit.flows.ensemble import run_ensemble
    train, name = manifest["train"], manifest["competition"]["name"]
    runs = [str(comp_path.parent / "weights" / name / c) for c in manifest["configs"]]
    run_ensemble(str(comp_path), runs)
    kernel.build(str(comp_path), None, out=str(work), user=train["user"], competition=train["competition"],
                 slug=train["slug"], gpu=train["gpu"])


def train_on_kaggle(code: Path, manifest: dict, data: Path, inputs: Path, work: Path, kernel_slug: str,
                    started: float) -> list[str]:
    """The training notebook's work, after it found and verified the code dataset; the configs left unfinished."""
    if Path(code).resolve() not in Path(vidkit.__file__).resolve().parents:
        raise VidkitError(f"vidkit was imported from {vidkit.__file__}, not from the code dataset {code}")
    run, previous = work / "vidkit", previous_output(inputs, kernel_slug)
    if previous is not None:
        copy_writable(previous / "vidkit", run)
        print(f"vidkit kernel: resuming from the previous version's output {previous}")
    comp_path = local_competition(code, data, run)
    roots = weight_roots(inputs, [data, code, previous])
    env = {"VIDKIT_PRETRAINED_ROOTS": os.pathsep.join(map(str, roots))}
    os.chdir(run)
    left = train_configs(code, manifest, comp_path, env, started + manifest["train"]["time_budget"])
    if not left:
        finish(manifest, comp_path, work)
    status = {c: "unfinished" if c in left else "done" for c in manifest["configs"]}
    write_text(work / MARKER, json.dumps({"kernel": kernel_slug, "configs": status, "finished": not left}))
    if left:
        print(f"vidkit kernel: time budget spent; unfinished: {', '.join(left)}. Save a new version with this "
              "notebook's output as an input (`kernel mode=train ... resume=true`, then push) to continue")
    else:
        print(f"vidkit kernel: every config cross-validated; inference bundle {work / manifest['train']['slug']}")
    return left


# ---------------------------------------------------------------- local dry run

def mount_output(root: Path, output: Path, ref: str) -> Path:
    """A notebook's output as Kaggle mounts it for a notebook that lists it in kernel_sources."""
    owner, slug = ref.split("/")
    shutil.copytree(output, root / "input" / "notebooks" / owner / slug)
    return root / "input" / "notebooks" / owner / slug


def dry_run_train(code_dir: Path, kernel_dir: Path, comp: Competition, workdir: Path, previous: Path | None = None,
                  python: Path | None = None) -> list[str]:
    """Run the training notebook on a stand-in /kaggle under `workdir` (kaggle_sim: only Kaggle's packages, the
    code dataset read-only, no network) with the competition's training data mounted too; `previous`: an
    earlier version's output, mounted as this notebook's own input. Returns the configs left unfinished; the
    output stays in workdir/kaggle/working."""
    from vidkit.kaggle import sim as kaggle_sim
    manifest = read_json(code_dir / "manifest.json", "code manifest", {"competition": dict, "train": dict})
    where, train = manifest["competition"], manifest["train"]
    mounts = kernel._mounts(manifest) + [where[k] for k in ("train_dir", "train_csv") if where.get(k)]
    root, ref = Path(workdir) / "kaggle", f"{train['user']}/{code_dir.name}"
    python = python or kaggle_sim.restricted_python(Path(workdir) / "python")
    sample = kernel.local_path(comp, comp.sample_submission)
    readonly = [kaggle_sim.kaggle_tree(root, sample.parent, mounts, where["slug"], {ref: code_dir})[ref]]
    if previous is not None:
        readonly.append(mount_output(root, previous, f"{train['user']}/{train['kernel_slug']}"))
    kernel.on_stand_in(kernel_dir, root, python, readonly, Path(workdir) / "guard.log")
    marker = read_json(root / "working" / MARKER, "training marker", {"configs": dict})
    return [config for config, state in marker["configs"].items() if state != "done"]


def dry_run_from_notebook(kernel_dir: Path, output: Path, comp: Competition, workdir: Path,
                          python: Path | None = None) -> Path:
    """The inference kernel of `runs_from=notebook` on the stand-in, the training notebook's `output` mounted
    read-only as its kernel source; its submission, validated against the sample."""
    from vidkit.kaggle import sim as kaggle_sim
    from vidkit.flows.submit import validate_file
    meta = json.loads((kernel_dir / "kernel-metadata.json").read_text())
    found = sorted(Path(output).glob("*/manifest.json"))
    if not found:
        raise VidkitError(f"{output}: no <bundle>/manifest.json in the training notebook's output; is it finished?")
    manifest = read_json(found[0], "bundle manifest", {"competition": dict})
    root, sample = Path(workdir) / "kaggle", kernel.local_path(comp, comp.sample_submission)
    python = python or kaggle_sim.restricted_python(Path(workdir) / "python")
    kaggle_sim.kaggle_tree(root, sample.parent, kernel._mounts(manifest), manifest["competition"]["slug"], {})
    mounted = mount_output(root, output, meta["kernel_sources"][0])
    kernel.on_stand_in(kernel_dir, root, python, [mounted], Path(workdir) / "guard.log")
    validate_file(str(root / "working" / "submission.csv"), str(sample), comp.id_column)
    return root / "working" / "submission.csv"
