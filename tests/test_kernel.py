"""The Kaggle kernel builder: metadata, manifest, tamper detection, isolation and the offline dry run."""
import hashlib
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
from vidkit import kaggle_sim
from vidkit.kernel import TEMPLATE, build, dry_run, kaggle_settings, push, slugify
from vidkit.submit import run_submit

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
    manifest = json.loads((bundle / "manifest.json").read_text())
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json", "dataset-metadata.json"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((bundle / rel).read_bytes()).hexdigest() == digest, rel
    assert "src/vidkit/submit.py" in manifest["files"] and manifest["competition"]["slug"] == "tiny-videos"
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
    assert kaggle_settings(comp, user="alice", competition="some-comp", gpu=False)["gpu"] is False
    proc = subprocess.run([sys.executable, "-m", "vidkit", "kernel", f"comp={tiny_comp}", f"runs={tiny_run}"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "no Kaggle username; pass user=NAME or set kaggle_user" in proc.stderr


def test_push_without_cli_prints_the_commands(built, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert push(*built) is False
    out = capsys.readouterr().out
    assert f"kaggle datasets create -p {built[0]} -r zip" in out and f"kaggle kernels push -p {built[1]}" in out


def test_push_with_cli_versions_or_creates_then_pushes(built, monkeypatch, tmp_path):
    log = tmp_path / "calls.txt"
    fake = tmp_path / "kaggle"  # a stand-in CLI: no dataset yet, so `datasets version` fails
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n[ "$2" = version ] && exit 1\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert push(*built) is True
    calls = [line.split()[:2] for line in log.read_text().splitlines()]
    assert calls == [["datasets", "version"], ["datasets", "create"], ["kernels", "push"]]
    assert "-r zip" in log.read_text()


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
