import shutil
import subprocess
import sys

import pandas as pd
import pytest

from helpers import TINY, tiny_overrides
from vidkit.engine.train import Progress


def test_early_stopping_follows_metric_direction():
    higher = Progress()
    assert [higher.improved(s, True) for s in (0.5, 0.7, 0.6, 0.7)] == [True, True, False, False]
    assert higher.best == 0.7 and higher.bad_epochs == 2
    lower = Progress()  # e.g. logloss
    assert [lower.improved(s, False) for s in (0.9, 0.5, 0.6, float("nan"))] == [True, True, False, False]
    assert lower.best == 0.5 and lower.bad_epochs == 2


@pytest.mark.slow
def test_two_processes_predict_every_validation_video_once(tiny_comp, tmp_path):
    """torchrun starts two CPU processes (gloo); gather_for_metrics must drop the padding duplicates."""
    torchrun = shutil.which("torchrun", path=str(sys.executable).rsplit("/", 1)[0])
    if torchrun is None:
        pytest.skip("torchrun not found")
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "vidkit", "train", "r3d18_demo",
                           f"comp={tiny_comp}", f"out_dir={tmp_path}", "fold=0", "epochs=1", *TINY,
                           "batch_size=3", "tta_clips=3"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("fold 0 epoch 0:") == 1  # only the main process prints and writes
    oof = pd.read_csv(tmp_path / "fold0" / "oof.csv")
    folds = pd.read_csv(tmp_path / "folds.csv")
    assert sorted(oof["video_id"]) == sorted(folds.loc[folds["fold"] == 0, "video_id"])
    probs = oof[["down", "left", "right", "up"]].sum(1)
    assert ((probs - 1).abs() < 1e-4).all()


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_one_fold_once(tiny_comp, tmp_path):
    """Two "machines" (two torchrun launchers meeting at a c10d rendezvous, one CPU process each) train one fold
    into one (shared) run folder: one checkpoint, one metrics.jsonl, every validation video scored once."""
    torchrun = shutil.which("torchrun", path=str(sys.executable).rsplit("/", 1)[0])
    if torchrun is None:
        pytest.skip("torchrun not found")
    node = [torchrun, "--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "vidkit-test", "-m", "vidkit", "train",
            "r3d18_demo", f"comp={tiny_comp}", f"out_dir={tmp_path}", "fold=0", "epochs=1", *TINY, "batch_size=3"]
    nodes = [subprocess.Popen(node, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [n.communicate(timeout=600) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert [out.count("fold 0 epoch 0:") for out, _ in outs] == [1, 1]  # each node's log: its local rank 0
    assert [p.name for p in (tmp_path / "fold0").glob("*.safetensors")] == ["model.safetensors"]
    assert len(list(tmp_path.rglob("metrics.jsonl"))) == 1
    assert len((tmp_path / "fold0" / "metrics.jsonl").read_text().splitlines()) == 1
    oof = pd.read_csv(tmp_path / "fold0" / "oof.csv")
    folds = pd.read_csv(tmp_path / "folds.csv")
    assert sorted(oof["video_id"]) == sorted(folds.loc[folds["fold"] == 0, "video_id"])  # each once


# --- training features (issue: model zoo and full training features) ---------------------------------------
import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from timm.data import Mixup  # noqa: E402

from vidkit.config import load_config  # noqa: E402
from vidkit.flows.cv import run_train  # noqa: E402
from vidkit.errors import VidkitError  # noqa: E402
from vidkit.models import create_model, registry  # noqa: E402
from vidkit.data.epochs import EpochSampler, balanced_weights  # noqa: E402
from vidkit.engine.optim import class_weights, layer_ids, param_groups  # noqa: E402
from vidkit.engine.train import mix  # noqa: E402


def _cfg(tiny_comp, out, **kw):
    overrides = tiny_overrides()
    overrides.update({"comp": str(tiny_comp), "out_dir": str(out), "fold": "0", "epochs": "2", "mixed_precision": "no"})
    overrides.update({k: str(v) for k, v in kw.items()})
    return load_config("r3d18_demo", overrides)


def _records(run_dir, fold="fold0"):
    return [json.loads(line) for line in (run_dir / fold / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fold", [0, -1])
def test_resume_mid_epoch_equals_uninterrupted(tiny_comp, tmp_path, fold):
    """fold 0: validation metrics and early-stopping state; fold -1: the last epoch's weights are saved."""
    name = "fold0" if fold == 0 else "full"
    run_train(_cfg(tiny_comp, tmp_path / "a", epochs=3, fold=fold, num_workers=1))
    # 16 (fold 0) or 24 (all) training videos at batch 8: step 3 stops in the middle of epoch 1
    run_train(_cfg(tiny_comp, tmp_path / "b", epochs=3, fold=fold, max_steps=3 if fold == 0 else 4))
    progress = json.loads((tmp_path / "b" / name / "state" / "progress.json").read_text())
    assert (progress["epoch"], progress["batch"]) == (1, 1) and len(_records(tmp_path / "b", name)) == 1
    run_train(_cfg(tiny_comp, tmp_path / "b", epochs=3, fold=fold, resume=True))
    a, b = load_file(str(tmp_path / "a" / name / "model.safetensors")), \
        load_file(str(tmp_path / "b" / name / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    ra, rb = _records(tmp_path / "a", name), _records(tmp_path / "b", name)
    assert [r["epoch"] for r in rb] == [0, 1, 2]
    for x, y in zip(ra, rb):
        assert x["step"] == y["step"] and abs(x["train_loss"] - y["train_loss"]) < 1e-4
        assert abs(x.get("val_loss", 0) - y.get("val_loss", 0)) < 1e-4
    assert not (tmp_path / "b" / name / "state").exists()  # a finished fold drops its optimiser state


def oom_probe(num_classes, pretrained=None, num_frames=None, image_size=None, **kw):
    """An r3d that fails like CUDA does when a training batch is larger than 2."""
    model = create_model("r3d_18", num_classes, num_frames=num_frames, image_size=image_size, **kw)
    forward = model.forward

    def guarded(x):
        if model.training and x.shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(x)
    model.forward = guarded
    return model


def test_oom_fallback_halves_batch_and_doubles_accumulation(tiny_comp, tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(registry._builders, "oom_probe", oom_probe)
    run_train(_cfg(tiny_comp, tmp_path, model="oom_probe", epochs=1, batch_size=8))
    assert "restarts with batch_size=4, grad_accum=2" in caplog.text
    assert "restarts with batch_size=2, grad_accum=4" in caplog.text
    assert (tmp_path / "fold0" / "model.safetensors").is_file() and _records(tmp_path)[0]["step"] == 2


def _init_file(tmp_path):
    model = create_model("r3d_18", num_classes=4, num_frames=4, image_size=32, width=8, layers=(1, 1, 1, 1))
    save_file(model.state_dict(), str(tmp_path / "init.safetensors"))
    return str(tmp_path / "init.safetensors"), model.state_dict()


def test_ema_is_what_gets_evaluated_and_saved(tiny_comp, tmp_path):
    init, state = _init_file(tmp_path)
    run_train(_cfg(tiny_comp, tmp_path / "ema", pretrained=init, ema=True, ema_decay=1.0, epochs=1))
    run_train(_cfg(tiny_comp, tmp_path / "raw", pretrained=init, epochs=1))
    ema, raw = (load_file(str(tmp_path / d / "fold0" / "model.safetensors")) for d in ("ema", "raw"))
    assert torch.equal(ema["layer1.0.conv1.0.weight"], state["layer1.0.conv1.0.weight"])  # decay 1: never moves
    assert not torch.equal(raw["layer1.0.conv1.0.weight"], state["layer1.0.conv1.0.weight"])


def test_progressive_unfreezing(tiny_comp, tmp_path):
    init, state = _init_file(tmp_path)
    # fold=-1 (no validation) saves the last epoch: epoch 0 trains the head only, epoch 1 adds layer4
    run_train(_cfg(tiny_comp, tmp_path, pretrained=init, fold=-1, freeze_epochs=1, unfreeze="layer4"))
    got = load_file(str(tmp_path / "full" / "model.safetensors"))
    assert torch.equal(got["stem.0.weight"], state["stem.0.weight"])
    assert torch.equal(got["layer3.0.conv1.0.weight"], state["layer3.0.conv1.0.weight"])
    assert not torch.equal(got["layer4.0.conv1.0.weight"], state["layer4.0.conv1.0.weight"])
    assert not torch.equal(got["fc.weight"], state["fc.weight"])


def test_mixup_and_cutmix_train_and_cut_one_box_for_all_frames(tiny_comp, tmp_path):
    video = torch.arange(4.0).view(4, 1, 1, 1, 1).expand(4, 3, 5, 16, 16).clone()
    original = video.clone()
    mixed, target = mix(Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, num_classes=3), video,
                        torch.tensor([0, 1, 2, 0]))
    assert target.shape == (4, 3) and torch.allclose(target.sum(1), torch.ones(4))
    assert all(torch.equal(mixed[:, :, t], mixed[:, :, 0]) for t in range(5))  # the same box in every frame
    assert not torch.equal(mixed, original) and mixed.shape == original.shape
    run_train(_cfg(tiny_comp, tmp_path, mixup=0.2, cutmix=1.0, epochs=1))
    assert np.isfinite(_records(tmp_path)[0]["train_loss"])


def test_class_weights_and_balanced_sampler():
    labels = np.array([0, 0, 0, 1])
    assert class_weights(labels, 2, "inverse").tolist() == pytest.approx([0.5, 1.5])
    assert class_weights(labels, 2, "sqrt").tolist() == pytest.approx([0.732, 1.268], abs=1e-3)
    assert class_weights(labels, 2, "none") is None
    skewed = np.array([0] * 90 + [1] * 10)
    sampler = EpochSampler(100, seed=3, weights=balanced_weights(skewed))
    drawn = skewed[list(sampler)]
    assert 0.35 < drawn.mean() < 0.65  # minority class drawn about half the time
    plain = EpochSampler(100, seed=3)
    first = list(plain)
    assert list(plain) == first and sorted(first) == list(range(100))  # same (seed, epoch): same order
    plain.set_epoch(1)
    assert list(plain) != first


def test_layer_decay_and_head_lr():
    model = create_model("videomae", num_classes=3, num_frames=4, image_size=32, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64)
    groups = param_groups(model, 0.05, lr=1.0, layer_decay=0.5, head_lr_scale=10.0)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["hf.videomae.embeddings.patch_embeddings.projection.weight"])] == pytest.approx(0.125)
    assert lr_of[id(named["hf.videomae.encoder.layer.0.attention.attention.query.weight"])] == pytest.approx(0.25)
    assert lr_of[id(named["hf.videomae.encoder.layer.1.output.dense.weight"])] == pytest.approx(0.5)
    assert lr_of[id(named["hf.classifier.weight"])] == pytest.approx(10.0)
    no_decay = [g for g in groups if g["weight_decay"] == 0.0]
    assert any(p is named["hf.classifier.bias"] for g in no_decay for p in g["params"])
    with pytest.raises(VidkitError, match="layer_decay: the model has no numbered transformer blocks"):
        param_groups(create_model("r3d_18", 3, width=8, layers=(1, 1, 1, 1)), 0.05, 1.0, layer_decay=0.5)


def test_layer_decay_counts_stacked_stages_in_order():
    """VideoPrism: spatial_layers.N, then temporal_layers.N (after its temporal_embeddings), then the head."""
    model = create_model("videoprism", num_classes=3, num_frames=4, image_size=32, hidden_size=32,
                         num_spatial_layers=2, num_temporal_layers=2, num_attention_heads=2, intermediate_size=64,
                         tubelet_size=[1, 16, 16])
    depth = layer_ids(model)
    v = "hf.vision_model."
    assert depth[v + "spatial_embeddings.patch_embeddings.projection.weight"] == 0
    assert [depth[f"{v}spatial_layers.{i}.mlp.fc1.weight"] for i in range(2)] == [1, 2]
    assert depth[v + "temporal_embeddings.position_embeddings"] == 2  # enters after the last spatial block
    assert [depth[f"{v}temporal_layers.{i}.mlp.fc1.weight"] for i in range(2)] == [3, 4]
    assert depth["hf.classifier.weight"] == depth[v + "layernorm2.weight"] == 5


def test_tensorboard_and_seed_ensemble(tiny_comp, tmp_path):
    run_train(_cfg(tiny_comp, tmp_path / "tb", epochs=1, log_with="tensorboard"))
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    run_train(_cfg(tiny_comp, tmp_path / "s", epochs=1, seed="1,2"))
    for s in (1, 2):
        assert (tmp_path / f"s-seed{s}" / "fold0" / "model.safetensors").is_file()
        assert f"seed: {s}" in (tmp_path / f"s-seed{s}" / "config.yaml").read_text()


def test_compiled_training_equals_eager_and_saves_plain_weights(tiny_comp, tmp_path):
    """compile=true goes through accelerate's dynamo plugin (aot_eager here: the graph capture without
    inductor's C++ build); checkpoints keep the plain keys that inference loads."""
    from torch._dynamo.utils import counters
    run_train(_cfg(tiny_comp, tmp_path / "eager", epochs=1))
    counters.clear()
    run_train(_cfg(tiny_comp, tmp_path / "compiled", epochs=1, compile=True, compile_backend="aot_eager"))
    assert counters["stats"]["unique_graphs"] >= 1  # the model really ran as a captured graph
    a, b = (load_file(str(tmp_path / d / "fold0" / "model.safetensors")) for d in ("eager", "compiled"))
    assert a.keys() == b.keys() and not any(k.startswith("_orig_mod") for k in b)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)
    assert abs(_records(tmp_path / "eager")[0]["val_loss"] - _records(tmp_path / "compiled")[0]["val_loss"]) < 1e-4


def test_max_time_stops_cv_cleanly(tiny_comp, tmp_path, capsys):
    """A deadline that has passed at the first step: fold 0 saves a resumable state after one step and the
    later folds do not start, as a kill would leave it (the training-kernel test resumes such a run)."""
    from vidkit.flows.cv import run_cv
    run_cv(_cfg(tiny_comp, tmp_path, epochs=1, max_time="0.01s"))
    progress = json.loads((tmp_path / "fold0" / "state" / "progress.json").read_text())
    assert (progress["epoch"], progress["step"]) == (0, 1)
    assert not (tmp_path / "fold1").exists() and not (tmp_path / "cv_report.json").exists()
    assert "stopped in fold 0 at max_time=0.01s; run again with resume=true" in capsys.readouterr().out
    with pytest.raises(VidkitError, match="max_time: expected a duration"):
        _cfg(tiny_comp, tmp_path, max_time="soon")


def test_each_epoch_records_and_prints_its_data_wait(cli_run):
    """metrics.jsonl has the fraction of each epoch's training loop spent waiting for batches; the epoch line
    prints it (it is what tells a user to raise num_workers or use the frame cache)."""
    import json
    records = [json.loads(line) for f in sorted(cli_run.glob("fold*/metrics.jsonl")) for line in f.read_text().splitlines()]
    assert records and all(0.0 <= r["data_wait"] <= 1.0 for r in records)
    assert any(r["data_wait"] > 0 for r in records)  # decoding JPEG clips in the loop takes measurable time
    assert "data wait" in (cli_run.parent / "cli_stdout.txt").read_text()
