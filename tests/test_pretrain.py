"""Self-supervised pretraining (`vidkit pretrain`, issue 28): VideoMAE masked autoencoding on the competition's
own videos, through training's loop; its folder fine-tunes `videomae`; the licence record."""
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from helpers import TINY
from vidkit.analysis.report import licence_allowed, licence_label
from vidkit.config import load_competition, load_config
from vidkit.data import index_train, normalize
from vidkit.engine.pretrain import TubeMasks, build_pretraining_model, learned_little, reconstruct
from vidkit.engine.train import train_dataset
from vidkit.errors import VidkitError
from vidkit.flows.pretrain import pretrained_folder, run_pretrain
from vidkit.models import create_model
from vidkit.models.weights import pretrained_license

DEMO_ARGS = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512,
             "patch_size": 8, "initializer_range": 0.1}


def _cfg(comp, out, **kw):
    overrides = {"comp": str(comp), "out_dir": str(out), "num_workers": "0", "epochs": "3", "batch_size": "8"}
    overrides.update({k: str(v) for k, v in kw.items()})
    return load_config("videomae_demo", overrides)


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pretrain_run(tiny_comp, tmp_path_factory):
    """8 epochs of masked-autoencoding pretraining of the demo's tiny VideoMAE on tiny_comp's 24 videos."""
    return run_pretrain(_cfg(tiny_comp, tmp_path_factory.mktemp("pretrain") / "run", epochs=8))


def test_tube_masks_hide_the_same_patches_through_time_and_replay_from_their_state():
    masks = TubeMasks(0.75, frames=3, side=4, seed=7)
    first = masks.draw(5)
    assert first.shape == (5, 3 * 16) and (first.view(5, 3, 16).sum(-1) == 12).all()
    assert (first.view(5, 3, 16) == first.view(5, 3, 16)[:, :1]).all()  # a tube: every tubelet alike
    assert len({tuple(row.tolist()) for row in first}) > 1  # clips get different masks
    state, second = masks.state_dict(), masks.draw(5)
    again = TubeMasks(0.75, frames=3, side=4, seed=7)
    again.load_state_dict(state)
    assert torch.equal(again.draw(5), second) and not torch.equal(second, first)
    with pytest.raises(VidkitError, match="mask_ratio"):
        TubeMasks(1.0, 2, 4, 0)


@pytest.mark.slow
def test_pretraining_lowers_reconstruction_loss(pretrain_run):
    losses = [r["train_loss"] for r in _records(pretrain_run)]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0], losses
    for name in ("curves.png", "reconstruction.png", "config.yaml"):
        assert (pretrain_run / name).stat().st_size > 0
    meta = json.loads((pretrain_run / "run.json").read_text())
    assert meta["kind"] == "pretrain" and meta["videos"] == {"train": 24} and meta["provenance"]["finished"]
    assert 0.9 < meta["constant_baseline_loss"] <= 1.0 and meta["final_reconstruction_loss"] > 0
    assert not (pretrain_run / "state").exists()


@pytest.mark.slow
def test_pretrained_folder_fills_every_encoder_tensor_of_videomae(pretrain_run, tiny_comp):
    from transformers import VideoMAEForPreTraining
    folder = pretrained_folder(pretrain_run)
    saved = load_file(str(folder / "model.safetensors"))
    assert any(k.startswith("decoder.") for k in saved)
    # the reference: the pretraining model as transformers reloads it (it saves query/value biases as q_bias/v_bias)
    reloaded = VideoMAEForPreTraining.from_pretrained(str(folder)).state_dict()
    encoder = {k: v for k, v in reloaded.items() if k.startswith("videomae.")}
    assert len(encoder) == sum(k.startswith("videomae.") for k in saved) > 0
    assert torch.equal(encoder["videomae.embeddings.patch_embeddings.projection.weight"],
                       saved["videomae.embeddings.patch_embeddings.projection.weight"])
    for name, args in (("videomae", DEMO_ARGS), ("hf_video", {})):  # the demo config's model_args agree with it
        model = create_model(name, num_classes=4, pretrained=str(pretrained_folder(pretrain_run)), **args)
        own = {k: v for k, v in model.hf.state_dict().items() if k.startswith("videomae.")}
        assert own.keys() == encoder.keys()  # no encoder tensor missing on either side
        for k, v in encoder.items():
            assert own[k].shape == v.shape and torch.equal(own[k], v), k
        assert model.input_spec.num_frames == 8 and model.input_spec.size == 32
    record = pretrained_license(str(pretrained_folder(pretrain_run)), "videomae")
    assert record["license"] == "own data" and record["source"] == str(pretrain_run.resolve())
    assert licence_label(record) == "own data" and licence_allowed(record, ["mit"])


@pytest.mark.slow
def test_killed_pretraining_resumes_to_the_same_state(tiny_comp, tmp_path):
    run_pretrain(_cfg(tiny_comp, tmp_path / "a"))
    # 24 videos at batch 8: 3 steps an epoch; step 4 stops in the middle of epoch 1, as a kill after a save would
    run_pretrain(_cfg(tiny_comp, tmp_path / "b", max_steps=4))
    progress = json.loads((tmp_path / "b" / "state" / "progress.json").read_text())
    assert (progress["epoch"], progress["batch"]) == (1, 1) and not pretrained_folder(tmp_path / "b").exists()
    run_pretrain(_cfg(tiny_comp, tmp_path / "b", resume=True))
    a = load_file(str(pretrained_folder(tmp_path / "a") / "model.safetensors"))
    b = load_file(str(pretrained_folder(tmp_path / "b") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    ra, rb = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert [r["epoch"] for r in rb] == [0, 1, 2]
    assert all(x["step"] == y["step"] and abs(x["train_loss"] - y["train_loss"]) < 1e-5 for x, y in zip(ra, rb))


@pytest.mark.slow
def test_continued_pretraining_records_its_parent_licence(tiny_comp, tmp_path):
    outside = tmp_path / "outside"
    create_model("videomae", 4, num_frames=8, image_size=32, **DEMO_ARGS).hf.save_pretrained(str(outside))
    (outside / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\nA Kinetics checkpoint stand-in\n")
    run = run_pretrain(_cfg(tiny_comp, tmp_path / "run", epochs=1, pretrained=outside, model_args="{}"))
    record = pretrained_license(str(pretrained_folder(run)), "videomae")
    assert record["license"] == "own data" and record["parent"]["license"] == "cc-by-nc-4.0"
    assert licence_label(record) == "own data (from cc-by-nc-4.0)"
    assert not licence_allowed(record, ["mit"]) and licence_allowed(record, ["CC-BY-NC-4.0"])
    assert json.loads((run / "run.json").read_text())["pretrained"]["license"] == "cc-by-nc-4.0"


def test_licence_judgement_of_own_pretraining():
    own = {"source": "weights/x/videomae_pretrain", "license": "own data", "parent": None}
    assert licence_allowed(own, []) and licence_allowed({"source": None}, [])
    assert not licence_allowed({"source": "k400", "license": "cc-by-nc-4.0"}, ["mit"])
    assert licence_allowed({"source": "k400", "license": "cc-by-nc-4.0"}, None)
    nested = {**own, "parent": {**own, "parent": {"source": "k400", "license": "MIT"}}}
    assert licence_allowed(nested, ["mit"]) and not licence_allowed(nested, ["apache-2.0"])


def test_too_few_videos_for_one_batch_is_one_line_naming_the_competition(tiny_comp, tmp_path):
    with pytest.raises(VidkitError, match=rf"{tiny_comp}: only 24 readable videos; .* = 32"):
        run_pretrain(_cfg(tiny_comp, tmp_path / "run", batch_size=32))
    assert not (tmp_path / "run").exists()


def test_pretrained_folder_of_another_architecture_is_named(tiny_comp, tmp_path):
    from transformers import TimesformerConfig, TimesformerForVideoClassification
    other = tmp_path / "timesformer"
    config = TimesformerConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                               image_size=32, patch_size=8, num_frames=8, num_labels=4)
    TimesformerForVideoClassification(config).save_pretrained(str(other))
    with pytest.raises(VidkitError, match=rf"{other / 'config.json'} holds a timesformer, not a videomae"):
        run_pretrain(_cfg(tiny_comp, tmp_path / "run", pretrained=other, model_args="{}"))
    with pytest.raises(VidkitError, match=rf"{other}/config.json holds a timesformer, not a videomae \(videomae\)"):
        create_model("videomae", 4, pretrained=str(other))  # fine-tuning from it: the same one line
    with pytest.raises(VidkitError, match="no masked-autoencoding pretraining"):
        run_pretrain(load_config("r3d18_demo", {"comp": str(tiny_comp), "out_dir": str(tmp_path / "r")}))


def test_pretrain_verb_help_and_use_test(tiny_comp, tmp_path, caplog):
    from vidkit.cli import verb_help
    assert "mask_ratio=0.9" in verb_help("pretrain") and "use_test=False" in verb_help("pretrain")
    from vidkit.config import load_competition
    from vidkit.flows.pretrain import pretrain_videos
    table = pretrain_videos(load_competition(tiny_comp), use_test=True)
    assert table["split"].value_counts().to_dict() == {"train": 24, "test": 6}
    assert "use_test=true: 6 test videos join pretraining" in caplog.text


def test_training_kernel_pretrains_first_then_fine_tunes_the_same_model(probs_comp, tmp_path, monkeypatch):
    """`kernel mode=train pretrain=CONFIG`: the code dataset carries the pretraining config; on Kaggle `pretrain`
    runs (resumable) before any `cv`, and only the configs of its model get pretrained=<its folder>."""
    from conftest import manifest_of
    from vidkit.engine import launch
    from vidkit.kaggle.kernel_train import build_train, train_configs
    from vidkit.models.weights import OWN_PRETRAINING
    code, _ = build_train(str(probs_comp), ["r3d18_demo", "videomae_demo"], {"epochs": "1"}, out=str(tmp_path / "k"),
                          pretrain="videomae_demo", user="alice", competition="tiny-videos", slug="vidkit-pt")
    manifest = manifest_of(code)  # the pretraining config is hashed like the others
    assert manifest["configs"] == ["r3d18_demo", "videomae_demo"]
    assert manifest["train"]["pretrain"] == "videomae_demo_pretrain"
    assert yaml.safe_load((code / "configs" / "videomae_demo_pretrain.yaml").read_text())["model"] == "videomae"
    calls, finish = [], {"pretrain": False}

    def fake_launch(verb, args, processes=None, env=None):
        calls.append((verb, args))
        out = Path(next(a for a in args if a.startswith("out_dir=")).split("=", 1)[1])
        if verb == "pretrain" and finish["pretrain"]:
            (out / "pretrained").mkdir(parents=True)
            (out / "pretrained" / OWN_PRETRAINING).write_text("{}")
    monkeypatch.setattr(launch, "launch", fake_launch)
    comp_path = tmp_path / "work" / "competition.yaml"
    comp_path.parent.mkdir()
    assert train_configs(code, manifest, comp_path, {}, deadline=0) == ["r3d18_demo", "videomae_demo"]
    assert [verb for verb, _ in calls] == ["pretrain"]  # unfinished: no fine-tuning yet
    finish["pretrain"], calls[:] = True, []
    train_configs(code, manifest, comp_path, {}, deadline=time.time() + 3600)
    assert [verb for verb, _ in calls] == ["pretrain", "cv", "cv"] and "resume=true" in calls[0][1]
    folder = comp_path.parent / "weights" / "tinyprobs" / "videomae_demo_pretrain" / "pretrained"
    assert f"pretrained={folder}" in calls[2][1] and not any(a.startswith("pretrained=") for a in calls[1][1])


def test_kernel_passes_own_pretraining_and_judges_what_it_continued(tmp_path, capsys):
    from vidkit.config import Competition
    from vidkit.kaggle.kernel import check_licences

    def run(name, pretrained):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"pretrained": pretrained}))
        return tmp_path / name
    comp = Competition(allowed_licenses=["MIT"], path="mycomp.yaml")
    check_licences(comp, [run("scratch", {"source": None, "license": None}),
                          run("own", {"source": "w/videomae_pretrain", "license": "own data", "parent": None})])
    assert "own: pretrained w/videomae_pretrain (licence: own data)" in capsys.readouterr().out
    continued = run("continued", {"source": "w/v", "license": "own data",
                                  "parent": {"source": "MCG-NJU/videomae-base", "license": "cc-by-nc-4.0"}})
    with pytest.raises(VidkitError, match=r"continued/run.json: .* 'own data \(from cc-by-nc-4.0\)', not one of"):
        check_licences(comp, [continued])


def _clips(comp, spec, n=4):
    rows = index_train(load_competition(comp)).sample(n, random_state=0)
    dataset = train_dataset(load_config("videomae_demo", {"comp": str(comp)}), spec, rows, np.full(n, -1))
    dataset.seed = 0
    return torch.stack([dataset[i]["video"] for i in range(n)])


def test_classifier_from_own_pretraining_sees_what_the_pretraining_encoder_saw(tiny_comp, tmp_path):
    """Issue 28's finding (fine-tuning from own pretraining at chance) was not a loading fault: the classifier's
    encoder, fed the clips as the classifier's input spec normalises them, gives the pretraining encoder's pooled
    features (as pretraining normalised them) to 1e-5."""
    torch.manual_seed(0)
    mae = build_pretraining_model(_cfg(tiny_comp, tmp_path / "run"))
    with torch.no_grad():  # weights unlike any fresh init, so a re-initialised tensor would show
        for p in mae.hf.videomae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mae.hf.save_pretrained(str(tmp_path / "folder"))
    model = create_model("videomae", 4, pretrained=str(tmp_path / "folder"), **DEMO_ARGS).eval()
    clips = _clips(tiny_comp, model.input_spec)
    spec, own = model.input_spec, mae.input_spec
    with torch.no_grad():
        theirs = mae.hf.videomae(normalize(clips, own.mean, own.std, own.layout)).last_hidden_state.mean(1)
        ours = model.hf.videomae(normalize(clips, spec.mean, spec.std, spec.layout)).last_hidden_state.mean(1)
    assert (spec.num_frames, spec.size) == (own.num_frames, own.size)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    assert model.hf.config.use_mean_pooling and (model.hf.fc_norm.weight == 1).all()  # fresh head, mean pooling


@pytest.mark.parametrize("norm_pix", [True, False])
def test_reconstruction_reports_the_constant_prediction_baseline(tiny_comp, tmp_path, norm_pix):
    """A decoder that predicts a constant scores at least the baseline and is flagged as having learned little."""
    mae = build_pretraining_model(_cfg(tiny_comp, tmp_path / "run", norm_pix_loss=norm_pix))
    assert mae.hf.config.norm_pix_loss is norm_pix
    with torch.no_grad():
        mae.hf.decoder.head.weight.zero_()
        mae.hf.decoder.head.bias.fill_(0.0 if norm_pix else 0.4)
    views = reconstruct(mae, _clips(tiny_comp, mae.input_spec))
    assert views["loss"] >= views["baseline"] * 0.999 and learned_little(views["loss"], views["baseline"])
    assert 0.9 < views["baseline"] <= 1.0 if norm_pix else 0 < views["baseline"] < 0.2  # unit-variance patches
    assert not learned_little(0.5 * views["baseline"], views["baseline"])
    if not norm_pix:  # raw targets come back as predicted: grey 0.4 where hidden
        assert np.isclose(views["reconstruction"], 0.4).mean() > 0.5
