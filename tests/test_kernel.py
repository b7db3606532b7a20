"""The Kaggle kernel builder: metadata, manifest, tamper detection, isolation and the offline dry run."""
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from vidkit.config import load_competition
from vidkit.errors import VidkitError
from vidkit.kaggle import sim as kaggle_sim
from vidkit.kaggle.kernel import TEMPLATE, build, dry_run, kaggle_settings, push, slugify
from vidkit.flows.submit import run_submit
from helpers import manifest_of

CLASSES = ["down", "left", "right", "up"]


@pytest.fixture(scope="module")
def prob_comp(tiny_comp, tmp_path_factory):
    """tiny_comp's videos as a `probabilities` competition (one column per class) with its Kaggle names set."""
    root = tmp_path_factory.mktemp("prob")
    data = tiny_comp.parent.parent / "data"
    (root / "data").mkdir()
    for name in ("train", "test"):
        (root / "data" / name).symlink_to(data / name, target_is_directory=True)
    sample = pd.read_csv(data / "sample_submission.csv")[["id"]].assign(**{f"prob_{c}": 0.25 for c in CLASSES})
    sample.to_csv(root / "data" / "sample.csv", index=False)
    spec = {**yaml.safe_load(tiny_comp.read_text()), "name": "tinyprob", "train_dir": "data/train",
            "test_dir": "data/test", "sample_submission": "data/sample.csv", "submission": "probabilities",
            "kaggle_user": "alice", "kaggle_competition": "tiny-videos", "kernel_gpu": False}
    (root / "tinyprob.yaml").write_text(yaml.safe_dump(spec))
    return root / "tinyprob.yaml"


@pytest.fixture(scope="module")
def built(prob_comp, tiny_run, tmp_path_factory):
    return build(str(prob_comp), [str(tiny_run)], out=str(tmp_path_factory.mktemp("kernels")))


def test_metadata_fields(built):
    bundle, kernel_dir = built
    text = (kernel_dir / "kernel-metadata.json").read_text()
    meta = json.loads(text)
    assert '"enable_internet": false' in text and meta["enable_internet"] is False  # written, not defaulted
    assert meta["id"] == "alice/vidkit-tinyprob-infer" and slugify(meta["title"]) == meta["id"].split("/")[1]
    assert meta["language"] == "python" and meta["kernel_type"] == "notebook" and meta["enable_gpu"] is False
    assert meta["dataset_sources"] == ["alice/vidkit-tinyprob"] and meta["competition_sources"] == ["tiny-videos"]
    nb = json.loads((kernel_dir / meta["code_file"]).read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3" and nb["nbformat"] == 4
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    compile(code, "kernel", "exec")
    assert 'BUNDLE = "vidkit-tinyprob"' in code and "HF_HUB_OFFLINE" in code
    data = json.loads((bundle / "dataset-metadata.json").read_text())
    assert data["id"] == meta["dataset_sources"][0] and 6 <= len(data["title"]) <= 50
    assert len(data["licenses"]) == 1 and bundle.name == "vidkit-tinyprob"


def test_manifest_hashes_every_file(built, tiny_run):
    bundle, _ = built
    manifest = manifest_of(bundle)
    assert "src/vidkit/flows/submit.py" in manifest["files"] and manifest["competition"]["slug"] == "tiny-videos"
    for k in range(3):  # the checkpoints, byte for byte
        ckpt = f"runs/{tiny_run.name}/fold{k}/model.safetensors"
        assert (bundle / ckpt).read_bytes() == (tiny_run / f"fold{k}" / "model.safetensors").read_bytes()
    ensemble = yaml.safe_load((bundle / "ensemble.yaml").read_text())
    assert [m["run"] for m in ensemble["members"]] == [f"runs/{tiny_run.name}"]
    assert (bundle / ensemble["members"][0]["run"] / "config.yaml").is_file()
    comp = yaml.safe_load((bundle / "competition.yaml").read_text())
    assert (comp["train_dir"], comp["test_dir"], comp["sample_submission"]) == ("train", "test", "sample.csv")


def test_dry_run_matches_submit(built, prob_comp, tiny_run, kaggle_python, tmp_path):
    bundle, kernel_dir = built
    comp = load_competition(prob_comp)
    sub = pd.read_csv(dry_run(kernel_dir, bundle, comp, tmp_path / "fake", python=kaggle_python))
    assert (tmp_path / "fake" / "kaggle" / "working" / "submission.csv").is_file()
    want = pd.read_csv(run_submit(str(prob_comp), [str(tiny_run)], str(tmp_path / "local" / "sub.csv")))
    assert list(sub.columns) == list(want.columns) == ["id"] + [f"prob_{c}" for c in CLASSES]
    assert sub["id"].tolist() == want["id"].tolist()
    probs = sub.drop(columns="id").to_numpy()
    assert np.allclose(probs, want.drop(columns="id").to_numpy(), atol=1e-5)
    assert np.allclose(probs.sum(1), 1, atol=1e-5) and probs.std() > 0  # a real prediction, not the prior


def test_tampered_file_fails_clearly(built, prob_comp, kaggle_python, tmp_path):
    bundle, kernel_dir = built
    copy = shutil.copytree(bundle, tmp_path / bundle.name)
    ckpt = next(copy.glob("runs/*/fold1/model.safetensors"))
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 1
    ckpt.write_bytes(bytes(data))
    with pytest.raises(VidkitError, match=r"sha256 mismatch for runs/.+/fold1/model\.safetensors"):
        dry_run(kernel_dir, copy, load_competition(prob_comp), tmp_path / "fake", layout="old", python=kaggle_python)
    assert not (tmp_path / "fake" / "kaggle" / "working" / "submission.csv").exists()


def test_kernel_python_is_isolated_and_offline(kaggle_python, tmp_path):
    """The stand-in's interpreter has torch but neither the repo's vidkit nor packages Kaggle's image lacks;
    a connect is refused even to a listening port, a write under the read-only input fails (even as root),
    and both are recorded for the dry run to fail on."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "f.txt").write_text("bundle")
    (tmp_path / "k.py").write_text(
        "import importlib.util, os, socket, torch\n"
        "print('found', [m for m in ('vidkit', 'simplejpeg', 'onnxruntime', 'torch', 'cv2') if importlib.util.find_spec(m)])\n"
        "for attempt in (lambda: open(os.environ['RO'], 'a'), lambda: os.remove(os.environ['RO'])):\n"
        "    try:\n        attempt()\n    except PermissionError as e:\n        print('refused', e)\n"
        f"socket.create_connection(('127.0.0.1', {port}), timeout=5)\n")
    env = kaggle_sim.kernel_env(tmp_path, [tmp_path / "ro"], tmp_path / "guard.log")
    proc = kaggle_sim.run_script(kaggle_python, tmp_path / "k.py", {**env, "RO": str(tmp_path / "ro" / "f.txt")},
                                 tmp_path)
    server.close()
    assert "found ['torch', 'cv2']" in proc.stdout and proc.stdout.count("refused") == 2, proc.stdout + proc.stderr
    assert proc.returncode != 0 and "network blocked" in proc.stderr
    assert (tmp_path / "ro" / "f.txt").read_text() == "bundle"
    refused = kaggle_sim.guard_violations(tmp_path / "guard.log")
    assert [r.split()[0] for r in refused] == ["write:", "write:", "network:"], refused


def test_kernel_finds_its_bundle_past_a_decoy(tmp_path):
    spec = importlib.util.spec_from_file_location("kernel_code", TEMPLATE)
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)  # defines functions only: main() runs under __main__
    code.BUNDLE = "vidkit-x"
    (tmp_path / "decoy").mkdir()
    (tmp_path / "decoy" / "manifest.json").write_text('{"other": 1}')
    ours = tmp_path / "datasets" / "bob" / "vidkit-x"
    ours.mkdir(parents=True)
    (ours / "manifest.json").write_text(json.dumps({"vidkit_bundle": "vidkit-x", "files": {}}))
    assert code.find_bundle(tmp_path)[0] == ours
    (ours / "manifest.json").write_text('{"vidkit_bundle": "vidkit-y"}')
    with pytest.raises(SystemExit, match="no bundle dataset 'vidkit-x'"):
        code.find_bundle(tmp_path)


def test_missing_kaggle_names_are_one_line_errors(tiny_comp, tiny_run):
    comp = load_competition(tiny_comp)
    with pytest.raises(VidkitError, match="pass competition=SLUG or set kaggle_competition"):
        kaggle_settings(comp, user="alice")
    with pytest.raises(VidkitError, match="becomes the slug 'my-kernel'"):
        kaggle_settings(comp, user="alice", competition="some-comp", title="My Kernel")
    assert kaggle_settings(comp, user="alice", competition="some-comp", gpu=False).gpu is False
    proc = subprocess.run([sys.executable, "-m", "vidkit", "kernel", f"comp={tiny_comp}", f"runs={tiny_run}"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "no Kaggle username; pass user=NAME or set kaggle_user" in proc.stderr


def test_push_without_cli_prints_the_commands(built, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert push(*built) is False
    out = capsys.readouterr().out
    assert f"kaggle datasets create -p {built[0]} -r zip" in out and f"kaggle kernels push -p {built[1]}" in out


# A stand-in for the kaggle CLI, printing what kaggle 2.2 prints: `datasets status` of a missing dataset is a 404
# on stderr (exit 1); `datasets version` of a missing dataset prints the server's error and exits 0.
FAKE_KAGGLE = r"""#!/bin/sh
echo "$@" >> "$KAGGLE_FAKE/calls.txt"
case "$1 $2" in
"datasets status")
  [ -f "$KAGGLE_FAKE/exists" ] && { echo ready; exit 0; }
  echo "404 Client Error: Not Found for url: https://api.kaggle.com/v1/datasets.DatasetApiService/GetDatasetStatus" >&2
  exit 1;;
"datasets version")
  [ -f "$KAGGLE_FAKE/exists" ] && echo "Dataset version is being created. Please check progress at https://www.kaggle.com/x" \
    || echo "Dataset version creation error: Dataset not found"
  exit 0;;
"datasets create")
  touch "$KAGGLE_FAKE/exists"
  echo "Your private Dataset is being created. Please check progress at https://www.kaggle.com/x"; exit 0;;
"kernels push")
  echo "Kernel version 3 successfully pushed.  Please check progress at https://www.kaggle.com/code/x"; exit 0;;
esac
"""


def test_push_asks_the_cli_then_creates_or_versions(built, monkeypatch, tmp_path, capsys):
    fake = tmp_path / "bin" / "kaggle"
    fake.parent.mkdir()
    fake.write_text(FAKE_KAGGLE)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KAGGLE_FAKE", str(tmp_path))
    assert push(*built) is True  # first push: no dataset yet -> create
    assert "push: created dataset alice/vidkit-tinyprob; Kernel version 3 successfully pushed" in capsys.readouterr().out
    assert push(*built) is True  # then: a new version
    assert "push: new version of dataset alice/vidkit-tinyprob" in capsys.readouterr().out
    calls = [line.split()[:2] for line in (tmp_path / "calls.txt").read_text().splitlines()]
    assert calls == [["datasets", "status"], ["datasets", "create"], ["kernels", "push"]] * 1 + \
        [["datasets", "status"], ["datasets", "version"], ["kernels", "push"]]
    (tmp_path / "exists").unlink()  # a CLI that says "exists" but whose version fails: the error, not success
    fake.write_text(FAKE_KAGGLE.replace('[ -f "$KAGGLE_FAKE/exists" ] && { echo ready', '{ echo ready'))
    with pytest.raises(VidkitError, match="did not succeed: Dataset version creation error: Dataset not found"):
        push(*built)


def test_kernel_shows_licences_and_refuses_members_outside_allowed_licenses(prob_comp, tiny_run, tmp_path, capsys):
    run = tmp_path / "nc_run"
    shutil.copytree(tiny_run, run)
    meta = json.loads((run / "run.json").read_text())
    assert meta["pretrained"] == {"source": None, "license": None}  # tiny_run trained from scratch
    meta["pretrained"] = {"source": "MCG-NJU/videomae-base", "license": "cc-by-nc-4.0"}
    (run / "run.json").write_text(json.dumps(meta))
    comp = tmp_path / "strict.yaml"
    spec = yaml.safe_load(prob_comp.read_text())
    spec.update({k: str(prob_comp.parent / spec[k]) for k in ("train_dir", "test_dir", "sample_submission")})
    comp.write_text(yaml.safe_dump({**spec, "allowed_licenses": ["MIT", "Apache-2.0"]}))
    with pytest.raises(VidkitError, match=r"nc_run/run.json: pretrained weights MCG-NJU/videomae-base are licensed "
                                          r"'cc-by-nc-4.0', not one of allowed_licenses \['MIT', 'Apache-2.0'\]"):
        build(str(comp), [str(run)], out=str(tmp_path / "k1"))
    assert "nc_run: pretrained MCG-NJU/videomae-base (licence: cc-by-nc-4.0)" in capsys.readouterr().out
    meta["pretrained"]["license"] = "mit"  # case-insensitive match; scratch runs always pass
    (run / "run.json").write_text(json.dumps(meta))
    build(str(comp), [str(run), str(tiny_run)], out=str(tmp_path / "k2"))
    assert f"{tiny_run.name}: pretrained - (licence: scratch)" in capsys.readouterr().out


def test_notebook_is_valid_nbformat_without_repair(built):
    """nbformat's own schema, strict: no warning, nothing added (4.5 needs cell ids; nbformat would add them)."""
    import copy
    import warnings

    import nbformat
    from nbformat.validator import normalize
    _, kernel_dir = built
    raw = json.loads(next(kernel_dir.glob("*.ipynb")).read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        untouched = copy.deepcopy(raw)
        nbformat.validate(raw, relax_add_props=False)
        assert normalize(copy.deepcopy(raw))[0] == 0 and raw == untouched
        nb = nbformat.reads(json.dumps(raw), as_version=nbformat.NO_CONVERT)
        nbformat.validate(nb)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5) and all(c.get("id") for c in nb.cells)
    for cell in raw["cells"]:  # the same notebook without ids is what nbformat repairs: the check can fail
        cell.pop("id")
    assert normalize(copy.deepcopy(raw))[0] > 0


@pytest.fixture
def kaggle_api(monkeypatch):
    """The official kaggle CLI's API object with dummy credentials; reaching its network layer raises
    `Reached` (every metadata check comes before it)."""
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0" * 32)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", os.environ.get("TMPDIR", "/tmp"))
    from kaggle.api.kaggle_api_extended import KaggleApi

    class Reached(Exception):
        pass

    def offline(*args, **kwargs):
        raise Reached("network")
    monkeypatch.setattr(KaggleApi, "dataset_status", offline)
    monkeypatch.setattr(KaggleApi, "build_kaggle_client", offline)
    api = KaggleApi()
    api.authenticate()
    return api, Reached


def test_kaggle_cli_accepts_the_metadata(built, kaggle_api, prob_comp, tmp_path, capsys):
    api, reached = kaggle_api
    bundle, kernel_dir = built
    for upload in (lambda: api.dataset_create_new(str(bundle), dir_mode="zip"),
                   lambda: api.dataset_create_version(str(bundle), "notes", dir_mode="zip"),
                   lambda: api.kernels_push(str(kernel_dir))):
        with pytest.raises(reached):  # past every check the CLI makes before the network
            upload()
    assert "does not resolve to the specified id" not in capsys.readouterr().out
    bad = shutil.copytree(bundle, tmp_path / "bad")  # a 5-character slug: what the CLI refuses ...
    meta = json.loads((bad / "dataset-metadata.json").read_text())
    (bad / "dataset-metadata.json").write_text(json.dumps({**meta, "id": "alice/vidkt"}))
    with pytest.raises(ValueError, match="slug must be between 6 and 50 characters"):
        api.dataset_create_new(str(bad), dir_mode="zip")
    with pytest.raises(VidkitError, match="6 to 44 characters"):  # ... and `vidkit kernel` refuses it first
        kaggle_settings(load_competition(prob_comp), slug="vidkt")


def test_slug_title_and_licence_follow_the_cli(tiny_comp):
    comp = load_competition(tiny_comp)
    settings = kaggle_settings(comp, user="alice", competition="c-1", slug="vidkit-tiny",
                               title="Vidkit Tiny Infér")  # python-slugify transliterates, as the CLI does
    assert settings.kernel_slug == "vidkit-tiny-infer" and slugify(settings.title) == "vidkit-tiny-infer"
    with pytest.raises(VidkitError, match="6 to 44"):
        kaggle_settings(comp, user="alice", competition="c-1", slug="abc")
    with pytest.raises(VidkitError, match="at least 5 characters"):
        kaggle_settings(comp, user="alice", competition="c-1", slug="vidkit-tiny", title="V-i")
    from vidkit.kaggle.kernel import check_license
    assert check_license("CC-BY-SA-4.0") == "CC-BY-SA-4.0"
    with pytest.raises(VidkitError, match="not a licence name Kaggle datasets accept"):
        check_license("MIT")


def test_kernel_reports_bad_test_media_and_writes_every_id(prob_comp, tiny_run, kaggle_python, tmp_path):
    """Only test media + sample mounted: an undecodable test video, a sample id without media and a test video
    the sample does not list each get a warning naming the file; every sample id is written (the prior where
    there is nothing to read, from the bundled class counts: no training data on the stand-in)."""
    spec = yaml.safe_load(prob_comp.read_text())
    source = prob_comp.parent / "data"
    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    for video in (source / "test").iterdir():
        (data / "test" / video.name).symlink_to(video.resolve(), target_is_directory=True)
    (data / "test" / "test_bad").mkdir()
    for k in range(4):
        (data / "test" / "test_bad" / f"{k}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    shutil.copytree(next((source / "test").iterdir()).resolve(), data / "test" / "test_extra")
    sample = pd.read_csv(source / "sample.csv", dtype=str)
    sample = pd.concat([sample, sample.head(2).assign(id=["test_bad", "test_gone"])], ignore_index=True)
    sample.to_csv(data / "sample.csv", index=False)
    (data / "train").symlink_to((source / "train").resolve(), target_is_directory=True)  # for the build only
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**spec, "train_dir": "data/train", "test_dir": "data/test",
                                                       "sample_submission": "data/sample.csv"}))
    bundle, kernel_dir = build(str(tmp_path / "bad.yaml"), [str(tiny_run)], out=str(tmp_path / "kernels"))
    sub = pd.read_csv(dry_run(kernel_dir, bundle, load_competition(tmp_path / "bad.yaml"), tmp_path / "fake",
                              python=kaggle_python), dtype={"id": str})
    assert sub["id"].tolist() == sample["id"].tolist()
    counts = json.loads((tiny_run / "run.json").read_text())["class_counts"]
    prior = np.array([counts[c] for c in CLASSES], float) / sum(counts.values())
    for vid in ("test_bad", "test_gone"):
        assert np.allclose(sub.set_index("id").loc[vid].to_numpy(float), prior, atol=1e-6)
    out = (tmp_path / "fake" / "kernel_output.txt").read_text()
    assert "/test/test_bad/0.jpg: corrupt frame" in out and "/test/test_bad: cannot be read" in out
    assert "/test/test_gone: a sample id without media" in out
    assert "/test: 1 test videos are not in the sample submission and will not be written: test_extra" in out


def test_kernel_names_a_missing_bundle_file(tmp_path):
    spec = importlib.util.spec_from_file_location("kernel_code", TEMPLATE)
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a.txt").write_text("a")
    manifest = {"files": {"runs/a.txt": code.sha256(tmp_path / "runs" / "a.txt"), "runs/fold0/model.safetensors": "0"}}
    with pytest.raises(SystemExit, match=r"bundle file missing: runs/fold0/model\.safetensors"):
        code.verify(tmp_path, manifest)
