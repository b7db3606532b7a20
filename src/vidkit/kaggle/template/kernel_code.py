# vidkit offline inference kernel, written by `python -m vidkit kernel`: finds the bundle dataset and the
# competition data under <root>/input, verifies every bundled file's sha256, then runs the same inference as
# `make submit` with internet off and writes <root>/working/submission.csv.
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

BUNDLE = "__VIDKIT_BUNDLE__"                                  # slug of the bundle dataset (manifest.json)
ROOT = Path(os.environ.get("VIDKIT_KAGGLE_ROOT", "/kaggle"))  # a local dry run points this at a fake tree
# set before anything imports them: no hub downloads, and no PyPI version check when albumentations is imported
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "NO_ALBUMENTATIONS_UPDATE": "1"}


def fail(message: str):
    raise SystemExit(f"vidkit kernel: {message}")


def shallowest(top: Path, name: str, keep=lambda p: True, max_depth: int = 6) -> list:
    """Files called `name` under `top` that `keep` accepts, at the shallowest depth that has any: breadth
    first, so big training folders further down are never walked."""
    level = [top]
    for _ in range(max_depth):
        found, deeper = [], []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if e.is_dir():
                    deeper.append(Path(e.path))
                elif e.name == name and keep(Path(e.path)):
                    found.append(Path(e.path))
        if found:
            return found
        level = deeper
    return []


def is_our_manifest(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("vidkit_bundle") == BUNDLE
    except (OSError, ValueError, AttributeError):
        return False


def is_manifest(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), dict)
    except (OSError, ValueError):
        return False


def find_bundle(inputs: Path) -> tuple:
    """(bundle folder, manifest) in the new layout (input/datasets/<owner>/<slug>/) or the old (input/<slug>/)."""
    found = shallowest(inputs, "manifest.json", is_our_manifest)
    if not found:
        broken = shallowest(inputs, "manifest.json", lambda p: not is_manifest(p))
        fail(f"{broken[0]}: not a readable bundle manifest (empty, cut short or not JSON); upload the bundle again"
             if broken else f"no bundle dataset {BUNDLE!r} (a manifest.json) under {inputs}; add it to the "
             "notebook's inputs")
    if len(found) > 1:
        fail(f"several copies of the bundle {BUNDLE!r}: {', '.join(map(str, found))}; keep one input")
    manifest = json.loads(found[0].read_text())
    if not isinstance(manifest.get("files"), dict):
        fail(f"{found[0]}: the manifest has no 'files' mapping; rebuild with `make kernel` and upload again")
    return found[0].parent, manifest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(bundle: Path, manifest: dict) -> None:
    """Every file the manifest lists must be there with its sha256, before any of them is used."""
    for rel, want in sorted(manifest["files"].items()):
        path = bundle / rel
        if not path.is_file():
            fail(f"bundle file missing: {rel} (in {bundle}); rebuild with `make kernel` and upload again")
        if sha256(path) != want:
            fail(f"sha256 mismatch for {rel} (in {bundle}): the file changed after `make kernel`; "
                 f"rebuild the bundle and upload it again")
    print(f"vidkit kernel: verified {len(manifest['files'])} files of {bundle}")


def find_data(inputs: Path, bundle: Path, spec: dict) -> Path:
    """The competition's folder: the one holding the sample submission and the test folder."""
    def keep(p: Path) -> bool:
        return bundle not in p.parents and (p.parent / spec["test_dir"]).exists()
    found = shallowest(inputs, spec["sample_submission"], keep)
    if not found:
        fail(f"no competition data under {inputs}: no {spec['sample_submission']} next to {spec['test_dir']}/; "
             f"add the competition {spec['slug']!r} to the notebook's inputs")
    by_slug = [p for p in found if spec["slug"] in p.parts]
    return (by_slug or found)[0].parent


def install_wheels(bundle: Path, work: Path) -> None:
    """Bundled wheels for packages the Kaggle image lacks: installed from the bundle only, never the internet."""
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    if not wheels:
        return
    target = work / "vidkit_packages"
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                           "--find-links", str(bundle / "wheels"), "--target", str(target), *map(str, wheels)])
    sys.path.insert(0, str(target))
    print(f"vidkit kernel: installed {len(wheels)} bundled wheels into {target}")


def main() -> None:
    os.environ.update(OFFLINE)  # before transformers is imported
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    inputs, work = ROOT / "input", ROOT / "working"
    bundle, manifest = find_bundle(inputs)
    verify(bundle, manifest)
    install_wheels(bundle, work)
    sys.dont_write_bytecode = True  # the bundle is read-only: no __pycache__ beside its sources
    sys.path.insert(0, str(bundle / "src"))
    import vidkit
    if bundle.resolve() not in Path(vidkit.__file__).resolve().parents:
        fail(f"vidkit was imported from {vidkit.__file__}, not from the bundle {bundle}")
    from vidkit.config import load_competition
    from vidkit.rundir import ensemble_file
    from vidkit.flows.submit import submit_on_every_gpu

    spec = manifest["competition"]
    data = find_data(inputs, bundle, spec)
    print(f"vidkit kernel: bundle {bundle}, competition data {data}")
    comp = load_competition(bundle / "competition.yaml")
    for key in ("train_dir", "train_csv", "test_dir", "sample_submission", "features_dir"):
        if getattr(comp, key):
            setattr(comp, key, str(data / getattr(comp, key)))
    settings = manifest.get("submit", {})
    # the bundle's own blend (member runs relative to the bundle): no weights/ folder to rebuild, no chdir
    # one process per GPU (Kaggle's T4 x2: each predicts a shard of the test set), else in this process
    out = submit_on_every_gpu(comp, None, work / "vidkit" / "submission.csv", settings.get("tta_clips"),
                              settings.get("budget"), ensemble_yaml=ensemble_file(bundle))
    shutil.copyfile(out, work / "submission.csv")
    print(f"vidkit kernel: wrote {work / 'submission.csv'}")


if __name__ == "__main__":
    main()
