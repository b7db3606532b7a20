"""Feature stores and heads: a head on cached features == the same head on the frozen backbone end to end; shards,
resume and rebuilds of `embed`; head cv/submit from the store; the bad inputs each a one-line error naming a file."""
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TINY
from vidkit.config import load_competition, load_config, parse_overrides
from vidkit.data.features import feature_path, load_feature_file, read_manifest
from vidkit.errors import VidkitError

HEADS = ["linear_probe", "mlp_head", "attentive_probe", "temporal_transformer", "netvlad"]


def backbone_cfg(comp, **more):
    return load_config("configs/r3d18_demo.yaml", {**parse_overrides(TINY), "comp": str(comp), **more})


def embed(comp, out, **kw):
    from vidkit.flows.embed import run_embed
    cfg = backbone_cfg(comp, **kw.pop("overrides", {}))
    return run_embed(cfg, str(comp), out=str(out), **kw)


def arrays(store):
    return {p.relative_to(store).as_posix(): np.load(p) for p in sorted(store.rglob("*.npy"))}


@pytest.fixture(scope="module")
def store32(tiny_comp, tmp_path_factory):
    """The tiny competition embedded whole, float32, by the seeded random-init tiny R3D (2 clips per video)."""
    return embed(tiny_comp, tmp_path_factory.mktemp("store32") / "store", dtype="float32")


@pytest.mark.parametrize("head", ["attentive_probe", "netvlad", "temporal_transformer"])
def test_head_on_cached_features_equals_head_on_frozen_backbone(head, tiny_comp, store32):
    from vidkit.data import index_train
    from vidkit.data.transforms import normalize
    from vidkit.engine.tta import eval_dataset, tta_spec
    from vidkit.flows.embed import load_backbone
    from vidkit.models import create_model
    from vidkit.models.heads import FrozenHead
    cfg, manifest = backbone_cfg(tiny_comp), read_manifest(store32)
    assert manifest["positions"] > 1 and manifest["n_views"] == 2 and manifest["complete"]
    torch.manual_seed(0)
    model = create_model(head, num_classes=4, in_dim=manifest["dims"], positions=manifest["positions"]).eval()
    backbone = load_backbone(cfg, 4, None, "cpu")
    table = index_train(load_competition(tiny_comp)).iloc[:3]
    views = eval_dataset(cfg, backbone.input_spec, table, tta=tta_spec(cfg))
    spec = backbone.input_spec
    with torch.no_grad():
        for i, vid in enumerate(table["video_id"]):
            end_to_end = FrozenHead(backbone, model, 4)(normalize(views[i]["video"], spec.mean, spec.std, spec.layout))
            cached = model(torch.from_numpy(np.load(feature_path(store32, "all", vid))))
            assert end_to_end.shape == (2, 4)
            torch.testing.assert_close(cached, end_to_end, atol=1e-5, rtol=0)


def test_two_shards_equal_one_whole_store(tiny_comp, store32, tmp_path):
    for k in range(2):
        embed(tiny_comp, tmp_path / "sharded", dtype="float32", shard=f"{k}/2")
    whole, sharded = arrays(store32), arrays(tmp_path / "sharded")
    assert whole.keys() == sharded.keys() and len(whole) == 30
    for name in whole:
        np.testing.assert_array_equal(whole[name], sharded[name])
    assert read_manifest(tmp_path / "sharded")["complete"]


def test_killed_embed_resumes_to_the_same_store(tiny_comp, store32, tmp_path, monkeypatch):
    from vidkit.flows import embed as embed_flow
    real, written = embed_flow.write_features, []

    def dies_after_7(path, array):
        if len(written) == 7:
            raise KeyboardInterrupt  # killed mid-store
        written.append(path)
        real(path, array)
    monkeypatch.setattr(embed_flow, "write_features", dies_after_7)
    with pytest.raises(KeyboardInterrupt):
        embed(tiny_comp, tmp_path / "s", dtype="float32", overrides={"eval_batch_size": "4"})
    assert len(arrays(tmp_path / "s")) == 7 and not read_manifest(tmp_path / "s")["complete"]
    monkeypatch.setattr(embed_flow, "write_features", real)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*.npy")}
    embed(tiny_comp, tmp_path / "s", dtype="float32", overrides={"eval_batch_size": "4"})
    resumed, whole = arrays(tmp_path / "s"), arrays(store32)
    assert resumed.keys() == whole.keys()
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name])
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # the 7 done are not redone
    assert read_manifest(tmp_path / "s")["complete"]


def test_changed_checkpoint_or_views_rebuild(tiny_comp, tiny_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    store = embed(tiny_comp, tmp_path / "aligned", run=str(run))
    manifest = read_manifest(store)
    assert set(manifest["sources"]) == {"fold0", "fold1", "fold2"}
    assert manifest["views"]["protocol"] == "4x2x1 video-level"
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*.npy")}
    again = embed(tiny_comp, store, run=str(run))  # nothing changed: nothing redone
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    weights = load_file(str(run / "fold1" / "model.safetensors"))
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()},
              str(run / "fold1" / "model.safetensors"))
    old_fold1 = arrays(store)
    embed(tiny_comp, again, run=str(run))
    new = arrays(store)
    for name, t in before.items():
        rebuilt = name.parent.name == "fold1"
        assert (name.stat().st_mtime_ns != t) == rebuilt, name
    assert not np.array_equal(new[f"fold1/{name_of(old_fold1)}"], old_fold1[f"fold1/{name_of(old_fold1)}"])
    assert read_manifest(store)["sources"]["fold1"] != manifest["sources"]["fold1"]
    embed(tiny_comp, store, run=str(run), overrides={"tta_clips": "3"})  # another view setting: all rebuilt
    assert read_manifest(store)["n_views"] == 3
    assert all(np.load(p).shape[0] == 3 for p in store.rglob("*.npy"))


def name_of(arrays_: dict) -> str:
    return next(k for k in arrays_ if k.startswith("fold1/")).split("/", 1)[1]


def test_store_of_another_competition_is_refused(tiny_comp, probs_comp, store32):
    from vidkit.engine.features import store_of
    cfg = load_config("configs/linear_probe.yaml", {"comp": str(probs_comp), "features": str(store32)})
    with pytest.raises(VidkitError, match="features of competition 'tiny'.*not of 'tinyprobs'"):
        store_of(cfg)


def test_head_run_on_a_store_of_another_backbone_is_refused(tmp_path, tiny_comp, store32):
    from vidkit.engine.features import check_run_store
    cfg = load_config("configs/linear_probe.yaml", {"comp": str(tiny_comp), "features": str(store32)})
    recorded = {"backbone": "videomae", "config": "videomae_demo", "sources": {"all": "abc"}}
    with pytest.raises(VidkitError) as e:
        check_run_store(tmp_path / "run", cfg, recorded)
    assert "run.json" in str(e.value) and "videomae" in str(e.value) and "r3d_18" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad, why", [
    (np.zeros((2, 3, 4), np.float32), "shape"), (np.zeros((4, 8), np.int64), "dtype"),
    (np.array([[0.0, np.nan]], np.float32), "NaN")])
def test_bad_feature_file_is_a_one_line_error_naming_it(tmp_path, bad, why):
    path = tmp_path / "vid1.npy"
    np.save(path, bad)
    with pytest.raises(VidkitError, match=why) as e:
        load_feature_file(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("ext", [".npy", ".npz", ".pt", ".safetensors"])
def test_feature_file_kinds(tmp_path, ext):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / f"v{ext}"
    if ext == ".npy":
        np.save(path, x)
    elif ext == ".npz":
        np.savez(path, x=x)
    elif ext == ".pt":
        torch.save(torch.from_numpy(x), path)
    else:
        save_file({"x": torch.from_numpy(x)}, str(path))
    np.testing.assert_array_equal(load_feature_file(path), x)
    np.save(tmp_path / "d.npy", x[0])
    assert load_feature_file(tmp_path / "d.npy").shape == (1, 4)


@pytest.mark.parametrize("head", HEADS + ["gbdt"])
def test_every_head_builds_from_its_config(head):
    from vidkit.engine.runtime import build_model
    cfg = load_config(f"configs/{head}.yaml")
    cfg.features, cfg.model_args = None, {**cfg.model_args, "in_dim": 16, "positions": 5}
    model = build_model(cfg, 3)
    assert model.input_spec.layout == "features" and model.input_spec.num_frames == 5
    if head != "gbdt":
        assert model(torch.randn(2, 5, 16)).shape == (2, 3)


@pytest.fixture(scope="module")
def features_comp(tmp_path_factory):
    """A YouTube-8M-like competition: no media, one (8, 16) feature file per video whose class moves its mean."""
    import yaml
    root = tmp_path_factory.mktemp("fdir")
    rng, classes, rows = np.random.default_rng(0), ["a", "b", "c"], []
    (root / "feats").mkdir()
    centres = 2 * rng.normal(size=(3, 16)).astype(np.float32)
    for g in range(6):
        for k, c in enumerate(classes):
            for j in range(3):
                vid = f"v{g}_{c}_{j}"
                rows.append({"video_id": vid, "label": c, "group": f"g{g}"})
                np.save(root / "feats" / f"{vid}.npy", (centres[k] + rng.normal(size=(8, 16))).astype(np.float32))
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    test = [f"t{i}" for i in range(6)]
    for i, vid in enumerate(test[:-1]):  # the last test id has no feature file
        np.save(root / "feats" / f"{vid}.npy", (centres[i % 3] + rng.normal(size=(8, 16))).astype(np.float32))
    pd.DataFrame({"id": test, "label": "a"}).to_csv(root / "sample.csv", index=False)
    spec = {"name": "fdir", "train_csv": "train.csv", "features_dir": "feats", "sample_submission": "sample.csv",
            "n_folds": 3}
    (root / "fdir.yaml").write_text(yaml.safe_dump(spec))
    return root / "fdir.yaml"


@pytest.mark.slow
def test_head_learns_on_a_features_dir_and_submits_every_id(features_comp, tmp_path, caplog):
    from vidkit.flows.cv import run_cv
    from vidkit.flows.submit import run_submit
    out = run_cv(load_config("configs/attentive_probe.yaml", {"comp": str(features_comp), "epochs": "5",
                                                              "batch_size": "8", "out_dir": str(tmp_path / "run")}))
    report = json.loads((out / "cv_report.json").read_text())
    assert report["score"] > 0.7, report["score"]  # 3 classes: chance is 1/3
    assert report["protocol"] == "8x1x1 precomputed"
    with caplog.at_level(logging.WARNING):
        run_submit(str(features_comp), runs=[str(out)], out=str(tmp_path / "sub.csv"))
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert sub["id"].tolist() == [f"t{i}" for i in range(6)] and sub["label"].notna().all()
    assert any("t5" in r.getMessage() and "prior" in r.getMessage() for r in caplog.records)


def test_features_dir_file_of_the_wrong_width_names_it(features_comp, tmp_path):
    import shutil
    import yaml
    root = tmp_path / "c"
    shutil.copytree(features_comp.parent, root)
    np.save(root / "feats" / "v3_b_1.npy", np.zeros((8, 7), np.float32))
    from vidkit.flows.cv import run_cv
    cfg = load_config("configs/linear_probe.yaml", {"comp": str(root / "fdir.yaml"), "epochs": "1",
                                                    "out_dir": str(tmp_path / "run")})
    with pytest.raises(VidkitError, match=r"v3_b_1\.npy: features have 7 dims, the others 16"):
        run_cv(cfg)
    assert yaml.safe_load((root / "fdir.yaml").read_text())["features_dir"] == "feats"


@pytest.mark.slow
def test_head_run_ensembles_and_submits_with_an_end_to_end_run(tiny_comp, tiny_run, store32, tmp_path):
    from vidkit.flows.cv import run_cv
    from vidkit.flows.ensemble import run_ensemble
    from vidkit.flows.submit import run_submit
    from vidkit.engine import tta
    head = run_cv(load_config("configs/gbdt.yaml", {"comp": str(tiny_comp), "features": str(store32),
                                                    "out_dir": str(tmp_path / "gbdt")}))
    meta = json.loads((head / "run.json").read_text())
    assert meta["features"]["backbone"] == "r3d_18" and meta["protocol"] == "4x2x1 video-level"
    oof = pd.read_csv(head / "oof.csv")
    assert len(oof) == 24 and np.allclose(oof[["down", "left", "right", "up"]].sum(1), 1, atol=1e-5)
    run_ensemble(str(tiny_comp), runs=[str(tiny_run), str(head)], out=str(tmp_path / "ensemble.yaml"))
    tta.DECODES.clear()
    run_submit(str(tiny_comp), runs=[str(tiny_run), str(head)], out=str(tmp_path / "sub.csv"))
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert len(sub) == 6 and sub["label"].isin(["down", "left", "right", "up"]).all()
    assert tta.DECODES and all(n == 1 for n in tta.DECODES.values())  # the head decoded nothing more


def test_embed_verb_prints_the_size_first_and_refuses_a_bad_dtype(tiny_comp, tmp_path, capsys):
    from vidkit import cli
    args = ["embed", "configs/r3d18_demo.yaml", f"comp={tiny_comp}", *TINY, "tta_clips=1"]
    assert cli.main([*args, f"out={tmp_path / 's'}", "shard=0/3"]) == 0
    out = capsys.readouterr().out
    n = len(list((tmp_path / "s" / "all").glob("*.npy")))
    assert out.startswith(f"embed: {n} videos x 1 source(s) x 1 views x 4 positions x 64 dims x 2 bytes")
    assert np.load(next((tmp_path / "s" / "all").glob("*.npy"))).dtype == np.float16
    assert not read_manifest(tmp_path / "s")["complete"]  # two shards to go
    assert cli.main([*args, f"out={tmp_path / 't'}", "dtype=int8"]) != 0
    assert "dtype: 'int8' is not one of float16, float32" in capsys.readouterr().err


@pytest.mark.slow
def test_a_training_video_without_features_is_left_out(tiny_comp, store32, tmp_path, caplog):
    import shutil
    from vidkit.flows.cv import run_cv
    store = tmp_path / "store"
    shutil.copytree(store32, store)
    (store / "all" / "v_up_g05_c03.npy").unlink()  # as if it could not be read when embedded
    with caplog.at_level(logging.WARNING):
        run = run_cv(load_config("configs/linear_probe.yaml", {"comp": str(tiny_comp), "features": str(store),
                                                               "epochs": "1", "out_dir": str(tmp_path / "run")}))
    oof = pd.read_csv(run / "oof.csv")
    assert len(oof) == 23 and "v_up_g05_c03" not in set(oof["video_id"])
    assert any("left out: v_up_g05_c03" in r.getMessage() for r in caplog.records)
