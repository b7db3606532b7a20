"""The training kernel (`kernel mode=train`): its code dataset and notebook, the Kaggle-side helpers, and a dry
run on the Kaggle stand-in: a first version stopped by its time budget, a second that resumes and finishes, then
the inference kernel reading that notebook's output."""
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from vidkit import cli
from vidkit.config import load_competition
from vidkit.errors import VidkitError
from vidkit.kaggle.kernel_train import (MARKER, build_train, dry_run_from_notebook, dry_run_train, infer_from_notebook,
                                 previous_output, weight_roots, weight_sources)
from vidkit.flows.submit import run_submit
from helpers import manifest_of, tiny_overrides

# TINY for every config of the kernel (videomae_demo has no width), 1 epoch, 1 TTA clip
TINY_TRAIN = {k: v for k, v in tiny_overrides(epochs=1, tta_clips=1).items() if not k.startswith("model_args.")}
KAGGLE = {"user": "alice", "competition": "tiny-videos", "slug": "vidkit-tinyprobs"}


@pytest.fixture(scope="module")
def built(probs_comp, tmp_path_factory):
    out = tmp_path_factory.mktemp("kernels")
    return build_train(str(probs_comp), ["r3d18_demo", "configs/videomae_demo.yaml"], TINY_TRAIN, out=str(out),
                       weights="bob/video-weights,model:bob/videomae/transformers/base/1", resume=True, **KAGGLE)


def test_train_kernel_metadata(built):
    code_dir, kernel_dir = built
    text = (kernel_dir / "kernel-metadata.json").read_text()
    meta = json.loads(text)
    assert '"enable_internet": false' in text and meta["enable_gpu"] is True
    assert meta["id"] == "alice/vidkit-tinyprobs-train" and kernel_dir.name == "vidkit-tinyprobs-train"
    assert meta["competition_sources"] == ["tiny-videos"]
    assert meta["dataset_sources"] == ["alice/vidkit-tinyprobs-code", "bob/video-weights"]
    assert meta["model_sources"] == ["bob/videomae/transformers/base/1"]
    assert meta["kernel_sources"] == ["alice/vidkit-tinyprobs-train"]  # resume=true: its own last output
    about = json.loads((code_dir / "dataset-metadata.json").read_text())
    assert about["id"] == meta["dataset_sources"][0] and 6 <= len(about["title"]) <= 50


def test_train_notebook_is_strict_nbformat_and_runs_the_training_cell(built):
    _, kernel_dir = built
    raw = json.loads((kernel_dir / "vidkit-tinyprobs-train.ipynb").read_text())
    nbformat.validate(raw)  # the schema as written: nothing read through nbformat's repairs
    nb = nbformat.from_dict(raw)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5) and [c.id for c in nb.cells] == ["about", "helpers", "train"]
    code = "\n".join("".join(c.source) for c in nb.cells if c.cell_type == "code")
    compile(code, "notebook", "exec")
    assert 'BUNDLE = "vidkit-tinyprobs-code"' in code and 'KERNEL = "vidkit-tinyprobs-train"' in code
    assert "\nmain()" not in code and code.rstrip().endswith("train_main()")  # not the inference kernel's main


def test_code_dataset_holds_resolved_configs_and_hashes_everything(built):
    code_dir, _ = built
    manifest = manifest_of(code_dir)
    assert manifest["configs"] == ["r3d18_demo", "videomae_demo"] and manifest["train"]["time_budget"] == 11 * 3600
    assert manifest["competition"]["train_dir"] == "train" and "src/vidkit/kaggle/kernel_train.py" in manifest["files"]
    r3d = yaml.safe_load((code_dir / "configs" / "r3d18_demo.yaml").read_text())
    assert r3d["model_args"]["width"] == 16 and r3d["epochs"] == 1 and r3d["num_frames"] == 4  # base + overrides
    assert not {"comp", "out_dir", "resume", "max_time", "name"} & set(r3d)  # the notebook sets those


def test_bad_train_kernel_arguments_are_one_line_errors(probs_comp, tmp_path, capsys):
    with pytest.raises(VidkitError, match="weights: 'bob' is neither OWNER/DATASET nor model:"):
        weight_sources("bob")
    assert weight_sources("") == ([], [])
    with pytest.raises(VidkitError, match="configs=A,B is required"):
        build_train(str(probs_comp), [], {}, out=str(tmp_path), **KAGGLE)
    assert cli.main(["kernel", "mode=train", f"comp={probs_comp}", "configs=r3d18_demo", "epoch=1",
                     f"out={tmp_path}", "user=alice", "competition=tiny-videos"]) == 2
    assert "unknown key 'epoch'" in capsys.readouterr().err
    assert cli.main(["kernel", "mode=tune", f"comp={probs_comp}"]) == 2
    assert "mode: 'tune' is not one of infer, train" in capsys.readouterr().err


def test_inference_kernel_from_the_training_notebook(probs_comp, tmp_path):
    kernel_dir = infer_from_notebook(str(probs_comp), "notebook", out=str(tmp_path), **KAGGLE)
    meta = json.loads((kernel_dir / "kernel-metadata.json").read_text())
    assert meta["kernel_sources"] == ["alice/vidkit-tinyprobs-train"] and meta["dataset_sources"] == []
    assert meta["id"] == "alice/vidkit-tinyprobs-infer" and meta["enable_internet"] is False


def test_previous_output_and_weight_inputs(tmp_path):
    inputs = tmp_path / "input"
    data, code = inputs / "competitions" / "tiny-videos", inputs / "datasets" / "alice" / "vidkit-x-code"
    weights, model = inputs / "datasets" / "bob" / "video-weights", inputs / "models" / "bob" / "videomae"
    mine, other = inputs / "notebooks" / "alice" / "vidkit-x-train", inputs / "notebooks" / "carol" / "vidkit-x-train"
    for folder in (data, code, weights, model, mine, other):
        folder.mkdir(parents=True)
    (other / MARKER).write_text(json.dumps({"kernel": "someone-else"}))
    assert previous_output(inputs, "vidkit-x-train") is None  # no version has finished yet
    (mine / MARKER).write_text(json.dumps({"kernel": "vidkit-x-train"}))
    assert previous_output(inputs, "vidkit-x-train") == mine
    assert weight_roots(inputs, [data, code, mine]) == [weights, model, other]


@pytest.mark.slow
def test_training_kernel_resumes_in_its_next_version_then_feeds_inference(probs_comp, kaggle_python, tmp_path,
                                                                          monkeypatch):
    """On the Kaggle stand-in (Kaggle's packages only, inputs read-only, network refused), with the training
    data mounted: version 1 (a 1 s budget, one step) stops inside the first config's first fold; version 2 (resume=true)
    copies that output in, finishes both configs, ensembles them and writes the bundle; the inference kernel
    built with runs_from=notebook then reads that output and writes what `submit` writes from those runs."""
    comp, configs = load_competition(probs_comp), ["r3d18_demo", "videomae_demo"]
    # max_steps=1 too: on a fast machine 1 s covers the whole 2-step fold, leaving version 2 nothing to go on with
    code, nb = build_train(str(probs_comp), configs, {**TINY_TRAIN, "max_steps": "1"}, out=str(tmp_path / "k1"),
                           time_budget="1s", gpu=False, **KAGGLE)
    assert dry_run_train(code, nb, comp, tmp_path / "v1", python=kaggle_python) == configs
    first = tmp_path / "v1" / "kaggle" / "working"
    runs = first / "vidkit" / "weights" / "tinyprobs"
    # where the 1 s budget runs out depends on the machine's speed: somewhere inside the first config, resumable
    states = list((runs / "r3d18_demo").glob("fold*/state/progress.json"))
    assert len(states) == 1 and not (runs / "videomae_demo").exists()
    stopped, step = states[0].parents[1].name, json.loads(states[0].read_text())["step"]
    assert step >= 1 and not (runs / "r3d18_demo" / "cv_report.json").exists()

    code, nb = build_train(str(probs_comp), configs, TINY_TRAIN, out=str(tmp_path / "k2"), time_budget="1h",
                           gpu=False, resume=True, **KAGGLE)
    assert dry_run_train(code, nb, comp, tmp_path / "v2", previous=first, python=kaggle_python) == []
    second = tmp_path / "v2" / "kaggle" / "working"
    records = (second / "vidkit" / "weights" / "tinyprobs" / "r3d18_demo" / stopped / "metrics.jsonl").read_text()
    assert json.loads(records.splitlines()[-1])["step"] > step  # went on from where version 1 stopped
    for config in configs:
        assert len(json.loads((second / "vidkit" / "weights" / "tinyprobs" / config / "cv_report.json")
                              .read_text())["fold_scores"]) == 3
    blend = yaml.safe_load((second / "vidkit" / "weights" / "tinyprobs" / "ensemble.yaml").read_text())
    assert sorted(Path(m["run"]).name for m in blend["members"]) == configs  # both blended (a weight may be 0)
    manifest = json.loads((second / "vidkit-tinyprobs" / "manifest.json").read_text())
    kept = [m for m in manifest["members"]]  # the bundle holds the members with weight > 0
    assert kept and {Path(m).name for m in kept} <= set(configs)
    assert all(f"{m}/fold2/model.safetensors" in manifest["files"] for m in kept)

    infer = infer_from_notebook(str(probs_comp), "notebook", out=str(tmp_path / "k3"), gpu=False, **KAGGLE)
    sub = pd.read_csv(dry_run_from_notebook(infer, second, comp, tmp_path / "v3", python=kaggle_python))
    monkeypatch.chdir(second / "vidkit")  # the output's runs and ensemble.yaml, as `make submit` would use them
    want = pd.read_csv(run_submit(str(second / "vidkit" / "competition.yaml"), None, str(tmp_path / "local.csv")))
    assert sub["id"].tolist() == want["id"].tolist() and list(sub.columns) == list(want.columns)
    assert (sub.drop(columns="id") - want.drop(columns="id")).abs().to_numpy().max() < 1e-5
