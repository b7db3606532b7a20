"""Heads at submit time and in the offline kernel: the test videos' features extracted once per backbone for all its
heads, the backbone's weights bundled once (sha256), the kernel's submission == a local `submit`, the budget
counting the extraction once, and a features_dir competition reading its test features from the competition's data."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY
from vidkit.config import load_competition, load_config, parse_overrides
from vidkit.data import index_test
from vidkit.data.features import feature_path
from vidkit.kaggle.template.kernel_code import sha256

KAGGLE = {"user": "alice", "competition": "tiny-videos", "gpu": False}


def head_run(comp, store, config, out, epochs="1"):
    from vidkit.flows.cv import run_cv
    overrides = {"comp": str(comp), "epochs": epochs, "out_dir": str(out)}
    return run_cv(load_config(config, {**overrides, **({"features": str(store)} if store else {})}))


@pytest.fixture(scope="module")
def aligned(probs_comp, tiny_run, tmp_path_factory):
    """tiny_run's fold checkpoints as the backbone (a fold-aligned float32 store of probs_comp), and two heads on it."""
    from vidkit.flows.embed import run_embed
    root = tmp_path_factory.mktemp("aligned")
    cfg = load_config("configs/r3d18_demo.yaml", {**parse_overrides(TINY), "comp": str(probs_comp), "tta_clips": "1"})
    store = run_embed(cfg, str(probs_comp), run=str(tiny_run), out=str(root / "store"), dtype="float32")
    return store, [head_run(probs_comp, store, f"configs/{h}.yaml", root / h) for h in ("linear_probe", "mlp_head")]


def without_test_features(comp, store, dest):
    """A copy of `store` without the test videos' features (as a store embedded before the test set came)."""
    shutil.copytree(store, dest)
    test = index_test(load_competition(comp))
    for source in json.loads((dest / "manifest.json").read_text())["sources"]:
        for vid in test["video_id"]:
            feature_path(dest, source, vid).unlink()
    return test


def test_heads_on_one_backbone_share_one_extraction_at_submit(probs_comp, aligned, tmp_path, monkeypatch):
    from vidkit.flows import embed
    from vidkit.flows.submit import run_submit
    store, heads = aligned
    want = pd.read_csv(run_submit(str(probs_comp), [str(h) for h in heads], str(tmp_path / "want.csv")))
    test = without_test_features(probs_comp, store, tmp_path / "store")
    moved = []
    for h in heads:  # the same heads, reading the store that lacks the test videos
        moved.append(shutil.copytree(h, tmp_path / h.name))
        cfg = yaml.safe_load((moved[-1] / "config.yaml").read_text())
        (moved[-1] / "config.yaml").write_text(yaml.safe_dump({**cfg, "features": str(tmp_path / "store")}))
    forwards = []
    real = embed.backbone_tokens
    monkeypatch.setattr(embed, "backbone_tokens", lambda m, x, n: forwards.append(len(x)) or real(m, x, n))
    embed.EXTRACTIONS.clear()
    got = pd.read_csv(run_submit(str(probs_comp), [str(m) for m in moved], str(tmp_path / "got.csv")))
    n_views = json.loads((store / "manifest.json").read_text())["n_views"]
    assert embed.EXTRACTIONS == [(str(tmp_path / "store"), len(test))]  # once, for both heads
    assert sum(forwards) == 3 * len(test) * n_views  # 3 fold sources x each test video's views, once
    assert not any(feature_path(tmp_path / "store", "fold0", v).exists() for v in test["video_id"])  # left as it was
    assert np.allclose(got.drop(columns="id"), want.drop(columns="id"), atol=1e-5)


def test_budget_counts_the_extraction_once_and_drops_members_to_fit(probs_comp, aligned, tmp_path, monkeypatch):
    from vidkit.flows import embed, infer
    from vidkit.flows.submit import fit_to_budget
    from vidkit.flows.infer import load_member
    store, heads = aligned
    test = without_test_features(probs_comp, store, tmp_path / "store")
    members = []
    for h in heads:
        members.append(load_member(h))
        members[-1].cfg.features = str(tmp_path / "store")
    monkeypatch.setattr(embed, "extraction_speed", lambda *a: 2.0)  # seconds per video, per backbone
    monkeypatch.setattr(infer, "head_video_s", lambda *a: 0.5)
    table = index_test(load_competition(probs_comp)).assign(n_frames=lambda t: t["n_frames"].fillna(1))
    n = len(test)
    kept, plan = fit_to_budget(members, table, budget_s=n * (2.0 + 0.5 + 0.5) + 0.1)
    assert len(kept) == 2 and plan["estimate_s"] == pytest.approx(n * 3.0, abs=0.1) and not plan["dropped"]
    kept, plan = fit_to_budget(members, table, budget_s=n * 2.6)  # one head must go, the extraction stays
    assert len(kept) == 1 and plan["estimate_s"] == pytest.approx(n * 2.5, abs=0.1)
    assert plan["dropped"] == [f"member {heads[1].name} (weight 1)"]


@pytest.fixture(scope="module")
def bundled(probs_comp, tiny_run, aligned, tmp_path_factory):
    from vidkit.kaggle.kernel import build
    store, heads = aligned
    runs = [str(tiny_run), *map(str, heads)]
    return build(str(probs_comp), runs, out=str(tmp_path_factory.mktemp("kernels")), **KAGGLE)


def test_bundle_holds_each_backbone_weight_once(bundled, tiny_run, aligned):
    bundle, _ = bundled
    weights = sorted(bundle.rglob("*.safetensors"))
    digests = [sha256(p) for p in weights]
    assert len(set(digests)) == len(digests) == 3 + 3 + 3  # tiny_run's folds (the backbone too), two heads' folds
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["backbones"] == ["backbones/b0"] and not list((bundle / "backbones").rglob("*.safetensors"))
    recipe = json.loads((bundle / "backbones" / "b0" / "manifest.json").read_text())["recipe"]
    assert recipe["checkpoints"] == {f"fold{k}": f"../../runs/{tiny_run.name}/fold{k}/model.safetensors"
                                     for k in range(3)}
    assert not list((bundle / "backbones").rglob("*.npy"))  # no arrays: the kernel extracts the test videos
    for h in aligned[1]:
        config = yaml.safe_load((bundle / "runs" / h.name / "config.yaml").read_text())
        assert config["features"] == "../../backbones/b0"  # resolved against the run folder


@pytest.mark.slow
def test_kernel_with_heads_and_an_end_to_end_run_writes_the_local_submission(
        bundled, probs_comp, tiny_run, aligned, kaggle_python, tmp_path):
    from vidkit.flows.submit import run_submit
    from vidkit.kaggle.kernel import dry_run
    bundle, kernel_dir = bundled
    runs = [str(tiny_run), *map(str, aligned[1])]
    got = pd.read_csv(dry_run(kernel_dir, bundle, load_competition(probs_comp), tmp_path / "fake",
                              python=kaggle_python))
    want = pd.read_csv(run_submit(str(probs_comp), runs, str(tmp_path / "local" / "sub.csv")))
    assert got["id"].tolist() == want["id"].tolist()
    assert np.allclose(got.drop(columns="id"), want.drop(columns="id"), atol=1e-5)
    assert got.drop(columns="id").to_numpy().std() > 0  # a prediction, not the prior
    output = (tmp_path / "fake" / "kernel_output.txt").read_text()
    assert output.count("test videos extracted by r3d_18") == 1  # one backbone, one extraction for both heads


@pytest.mark.slow
def test_pretrained_backbone_is_saved_once_for_its_heads(probs_comp, tmp_path):
    from vidkit.flows.embed import run_embed
    from vidkit.kaggle.kernel import build
    cfg = load_config("configs/r3d18_demo.yaml", {**parse_overrides(TINY), "comp": str(probs_comp),
                                                  "tta_clips": "1"})
    store = run_embed(cfg, str(probs_comp), out=str(tmp_path / "store"))
    heads = [head_run(probs_comp, store, "configs/linear_probe.yaml", tmp_path / "h0")]
    heads.append(shutil.copytree(heads[0], tmp_path / "h1"))  # a second head on the same store
    bundle, _ = build(str(probs_comp), list(map(str, heads)), out=str(tmp_path / "kernels"), **KAGGLE)
    assert [p.relative_to(bundle).as_posix() for p in bundle.glob("backbones/**/*.safetensors")] == \
        ["backbones/b0/all.safetensors"]
    from vidkit.flows.embed import load_recipe_backbones
    manifest = json.loads((bundle / "backbones" / "b0" / "manifest.json").read_text())
    load_recipe_backbones(bundle / "backbones" / "b0", manifest, "cpu")  # the weights the store was embedded with


@pytest.fixture(scope="module")
def features_comp(tmp_path_factory):
    """A YouTube-8M-like competition (no media: one (8, 16) file per video) laid out as Kaggle mounts it."""
    root = tmp_path_factory.mktemp("fdir")
    rng, classes, rows = np.random.default_rng(0), ["a", "b", "c"], []
    (root / "feats").mkdir()
    centres = 2 * rng.normal(size=(3, 16)).astype(np.float32)
    for g in range(6):
        for k, c in enumerate(classes):
            for j in range(2):
                rows.append({"video_id": f"v{g}_{c}_{j}", "label": c, "group": f"g{g}"})
                np.save(root / "feats" / f"v{g}_{c}_{j}.npy", (centres[k] + rng.normal(size=(8, 16))).astype("f4"))
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    for i in range(5):  # t5 has no feature file
        np.save(root / "feats" / f"t{i}.npy", (centres[i % 3] + rng.normal(size=(8, 16))).astype(np.float32))
    pd.DataFrame({"id": [f"t{i}" for i in range(6)], **{c: 1 / 3 for c in classes}}).to_csv(root / "sample.csv",
                                                                                           index=False)
    spec = {"name": "fdir", "train_csv": "train.csv", "features_dir": "feats", "sample_submission": "sample.csv",
            "submission": "probabilities", "n_folds": 3}
    (root / "fdir.yaml").write_text(yaml.safe_dump(spec))
    return root / "fdir.yaml"


@pytest.mark.slow
def test_kernel_on_a_features_dir_competition_reads_the_competitions_test_features(
        features_comp, kaggle_python, tmp_path):
    from vidkit.flows.submit import run_submit
    from vidkit.kaggle.kernel import build, dry_run
    run = head_run(features_comp, None, "configs/linear_probe.yaml", tmp_path / "run")
    bundle, kernel_dir = build(str(features_comp), [str(run)], out=str(tmp_path / "kernels"), kernel_type="script",
                               **KAGGLE)  # a script: no Jupyter kernel to start (the notebook: the test above)
    assert not list(bundle.rglob("*.npy")) and not (bundle / "backbones").exists()  # nothing but the head
    assert json.loads((bundle / "manifest.json").read_text())["competition"]["test_dir"] == "feats"
    got = pd.read_csv(dry_run(kernel_dir, bundle, load_competition(features_comp), tmp_path / "fake",
                              python=kaggle_python))
    want = pd.read_csv(run_submit(str(features_comp), [str(run)], str(tmp_path / "local" / "sub.csv")))
    assert got["id"].tolist() == [f"t{i}" for i in range(6)]
    assert np.allclose(got.drop(columns="id"), want.drop(columns="id"), atol=1e-5)
    probs = got.drop(columns="id").to_numpy()
    assert probs[:5].std() > 0 and np.allclose(probs[5], 1 / 3, atol=1e-3)  # t5: no features, the prior


def test_check_on_a_features_dir_names_each_bad_feature_file(features_comp, tmp_path, capsys):
    from vidkit import cli
    root = shutil.copytree(features_comp.parent, tmp_path / "c")
    comp = root / "fdir.yaml"
    assert cli.main(["check", f"comp={comp}"]) == 1
    out = capsys.readouterr().out
    assert "scanned 36 training and 5 test videos: 1 problems" in out  # t5, a sample id without a feature file
    assert f"{root / 'feats' / 't5'} (a sample id without a feature file; it gets the training prior)" in out
    np.save(root / "feats" / "v0_a_0.npy", np.zeros((8, 7), np.float32))                 # another width
    np.save(root / "feats" / "v1_b_1.npy", np.full((8, 16), np.nan, np.float32))         # NaN
    np.save(root / "feats" / "t2.npy", np.zeros((8, 16), np.int64))                      # not floats
    np.save(root / "feats" / "v2_c_0.npy", np.zeros((8, 16), np.float16))                # another float dtype
    (root / "feats" / "v3_a_1.npy").unlink()                                             # a training id without
    assert cli.main(["check", f"comp={comp}", f"exclude_out={tmp_path / 'bad.csv'}"]) == 1
    out = capsys.readouterr().out
    feats = root / "feats"
    assert f"{feats / 'v0_a_0.npy'} (7 dims, the others 16)" in out
    assert f"{feats / 'v1_b_1.npy'} (features contain NaN or inf)" in out
    assert f"{feats / 't2.npy'} (features must be floats, got dtype int64)" in out
    assert f"{feats / 'v2_c_0.npy'} (float16, the others float32)" in out and "feature_dtype: 1" in out
    assert "no feature file for video_id 'v3_a_1'" in out
    bad = pd.read_csv(tmp_path / "bad.csv")
    assert set(bad["video_id"]) == {"v0_a_0", "v1_b_1", "v3_a_1"}


def test_videomae_stores_one_position_per_tubelet_step(tiny_comp, tmp_path):
    import torch
    from vidkit.data.features import read_features
    from vidkit.flows.embed import load_backbone, run_embed
    from vidkit.models.heads import backbone_tokens
    cfg = load_config("configs/videomae_demo.yaml", {
        "comp": str(tiny_comp), "tta_clips": "1", "num_workers": "0", "model_args.hidden_size": "32",
        "model_args.num_hidden_layers": "1", "model_args.num_attention_heads": "2",
        "model_args.intermediate_size": "64"})
    store = run_embed(cfg, str(tiny_comp), out=str(tmp_path / "store"), shard="0/6", dtype="float32")
    manifest = json.loads((store / "manifest.json").read_text())
    assert (manifest["positions"], manifest["dims"]) == (8 // 2, 32)  # num_frames / tubelet_size, hidden size
    assert read_features(store, "all", next((store / "all").glob("*.npy")).stem).shape == (1, 4, 32)
    model = load_backbone(cfg, 4, None, "cpu")
    seen = {}
    model.hf.classifier.register_forward_pre_hook(lambda m, args: seen.update(pooled=args[0]))
    x = torch.randn(2, 8, 3, 32, 32)
    with torch.no_grad():
        positions = backbone_tokens(model, x, 4)
        assert positions.shape == (2, 4, 32) and positions.std(1).mean() > 0  # positions differ over time
        assert torch.allclose(model.hf.fc_norm(positions.mean(1)), seen["pooled"], atol=1e-5)  # how VideoMAE pools


def test_kernel_refuses_a_head_whose_backbone_licence_is_not_allowed(probs_comp, tiny_run, aligned, tmp_path):
    from vidkit.errors import VidkitError
    from vidkit.kaggle.kernel import build
    store, heads = aligned
    run = shutil.copytree(tiny_run, tmp_path / "backbone_run")  # as if fine-tuned from non-commercial weights
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "pretrained": {"source": "weights/videomae",
                                                                     "license": "CC-BY-NC-4.0"}}))
    copy = shutil.copytree(store, tmp_path / "store")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["recipe"]["checkpoints"] = {s: str(run / s / "model.safetensors") for s in manifest["sources"]}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    head = shutil.copytree(heads[0], tmp_path / "head")
    cfg = yaml.safe_load((head / "config.yaml").read_text())
    (head / "config.yaml").write_text(yaml.safe_dump({**cfg, "features": str(copy)}))
    comp = probs_comp.with_name("tinyprobs_cc0.yaml")
    comp.write_text(yaml.safe_dump({**yaml.safe_load(probs_comp.read_text()), "allowed_licenses": ["CC0-1.0"]}))
    with pytest.raises(VidkitError, match=r"backbone's pretrained weights weights/videomae are licensed "
                                          r"'CC-BY-NC-4.0', not one of allowed_licenses \['CC0-1.0'\]"):
        build(str(comp), [str(head)], out=str(tmp_path / "kernels"), **KAGGLE)
    assert not (tmp_path / "kernels").exists()


def test_a_store_without_a_recipe_cannot_be_bundled_and_says_why(probs_comp, aligned, tmp_path):
    from vidkit.errors import VidkitError
    from vidkit.kaggle.kernel import build
    store, heads = aligned
    copy = shutil.copytree(store, tmp_path / "store")  # as embedded by an older vidkit
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "recipe"}))
    head = shutil.copytree(heads[0], tmp_path / "head")
    cfg = yaml.safe_load((head / "config.yaml").read_text())
    (head / "config.yaml").write_text(yaml.safe_dump({**cfg, "features": str(copy)}))
    with pytest.raises(VidkitError, match=rf"^{copy / 'manifest.json'}: no backbone recipe \(embedded by an older "
                                          r"vidkit\); re-run `vidkit embed`"):
        build(str(probs_comp), [str(head)], out=str(tmp_path / "kernels"), **KAGGLE)
