"""Multi-label downstream of cv: per-class ensemble weights and temperatures (ensemble -> submit), the error
gallery, explain, app, tune and the training kernel on a multi-label run."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import TINY, copy_run
from multilabel_data import CUES, make_multilabel_comp
from vidkit import metrics
from vidkit.config import load_ensemble, load_config, parse_overrides
from vidkit.errors import VidkitError
from vidkit.flows.ensemble import blend, calibrate, fit_blend, run_ensemble

CLASSES = list(CUES)


@pytest.fixture(scope="module")
def ml_comp(tmp_path_factory) -> Path:
    return make_multilabel_comp(tmp_path_factory.mktemp("mldown"), n_groups=6, n_test=4, n_folds=2)


@pytest.fixture(scope="module")
def ml_run(ml_comp, tmp_path_factory) -> Path:
    """A one-epoch multi-label cv run (2 folds, 24 clips): cheap, for what reads a run, not for learning."""
    from vidkit.flows.cv import run_cv
    overrides = {**parse_overrides(TINY), "comp": str(ml_comp), "epochs": "1", "tta_clips": "1", "val_clips": "1",
                 "out_dir": str(tmp_path_factory.mktemp("mldown_run"))}
    return run_cv(load_config("configs/r3d18_demo.yaml", overrides))


def _specialists(n=120, seed=0):
    """Member A sees class 0 well and guesses class 1; member B the reverse."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 2)) < 0.4).astype(float)
    sharp = lambda c: np.clip(0.25 + 0.5 * y[:, c] + rng.normal(0, 0.15, n), 0.01, 0.99)  # noqa: E731
    noise = lambda: rng.uniform(0.05, 0.95, n)  # noqa: E731
    return y, np.stack([sharp(0), noise()], 1), np.stack([noise(), sharp(1)], 1)


def test_per_class_weights_beat_global_weights_on_oof():
    y, a, b = _specialists()
    spec = fit_blend(y, [a, b], "map", temperature=True)
    table = np.asarray(spec["class_weights"])
    assert table[0, 0] > table[1, 0] and table[1, 1] > table[0, 1]  # A leads class 0, B class 1
    per_class = metrics.score("map", y, blend([a, b], table, "mean", True))
    global_ = metrics.score("map", y, blend([a, b], [0.5, 0.5], "mean", True))
    best_global = max(metrics.score("map", y, blend([a, b], [w, 1 - w], "mean", True)) for w in np.linspace(0, 1, 21))
    assert per_class >= best_global and per_class > global_ + 0.05, (per_class, best_global)
    assert spec["blend_score"] == pytest.approx(per_class)
    assert len(spec["per_class_temperature"]) == 2 and spec["temperature"] == 1.0
    one = fit_blend(y[:, :1], [a[:, :1], a[:, :1] * 0.9], "map")  # identical rankings: global weights suffice
    assert "class_weights" not in one


def test_a_class_with_few_positives_keeps_the_global_weights():
    from vidkit.flows.ensemble import search_class_weights
    y, a, b = _specialists()
    y[:, 1] = 0
    y[:3, 1] = 1  # 3 positives < MIN_CLASS_POSITIVES
    table = search_class_weights(y, [a, b], "mean", [0.3, 0.7])
    assert table[:, 1].tolist() == [0.3, 0.7] and table[0, 0] > table[1, 0]


def _fake_run(folder: Path, y: np.ndarray, probs: np.ndarray, classes: list[str]) -> str:
    folder.mkdir(parents=True)
    labels = [" ".join(c for c, on in zip(classes, row) if on) for row in y]
    pd.DataFrame(probs, columns=classes).assign(video_id=[f"v{i}" for i in range(len(y))], fold=np.arange(len(y)) % 3,
                                                label=labels).to_csv(folder / "oof.csv", index=False)
    (folder / "run.json").write_text(json.dumps({"competition": "ml", "classes": classes, "task": "multilabel",
                                                 "label_sep": " "}))
    return str(folder)


def test_ensemble_yaml_holds_per_class_weights_and_temperatures(ml_comp, tmp_path, capsys):
    y, a, b = _specialists()
    classes = ["red", "green"]
    runs = [_fake_run(tmp_path / n, y, p, classes) for n, p in (("a", a), ("b", b))]
    spec = yaml.safe_load(run_ensemble(str(ml_comp), runs, out=str(tmp_path / "e.yaml"), temperature=True).read_text())
    assert set(spec["per_class_weights"]) == set(classes) and set(spec["per_class_temperature"]) == set(classes)
    assert spec["per_class_weights"]["red"][0] > spec["per_class_weights"]["red"][1]
    assert "(weights per class)" in capsys.readouterr().out
    loaded = load_ensemble(tmp_path / "e.yaml")
    assert sum(loaded["per_class_weights"]["green"]) == pytest.approx(1)
    bad = {**spec, "per_class_weights": {"red": [1.0], "green": [0.5, 0.5]}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(VidkitError, match=r"bad\.yaml: per_class_weights: red: expected 2 weights"):
        load_ensemble(tmp_path / "bad.yaml")


def _shift_head(run: Path, shift: list[float]) -> None:
    """Move the classifier bias of every checkpoint: another member, predicting differently per class."""
    import torch
    from safetensors.torch import load_file, save_file
    for ckpt in run.glob("fold*/*.safetensors"):
        state = load_file(str(ckpt))
        key = [k for k, v in state.items() if k.endswith("bias") and v.shape == (len(CLASSES),)][-1]
        state[key] = state[key] + torch.tensor(shift, dtype=torch.float32)
        save_file(state, str(ckpt))


@pytest.mark.slow  # the module's one-epoch run
def test_submit_applies_per_class_weights_and_temperatures(ml_comp, ml_run, tmp_path):
    """The submission's probabilities equal the members' own, blended per class and tempered per class by hand;
    a member listed with weight 0 is dropped and its per-class weights with it."""
    from vidkit.flows.infer import resolve_members
    from vidkit.flows.submit import run_submit
    from vidkit.config import load_competition
    a, b, c = ml_run, copy_run(ml_run, tmp_path / "b"), copy_run(ml_run, tmp_path / "c")
    _shift_head(b, [2.0, -2.0, 1.0, -1.0])
    probs = {}
    for name, run in (("a", a), ("b", b)):
        run_submit(str(ml_comp), [str(run)], str(tmp_path / f"{name}.csv"))
        probs[name] = pd.read_csv(tmp_path / f"{name}_probs.csv").set_index("video_id")[CLASSES]
    weights = {"red": [0.9, 0.1, 0.0], "green": [0.2, 0.8, 0.0], "blue": [0.5, 0.5, 0.0], "white": [0.0, 1.0, 0.0]}
    temps = {"red": 2.0, "green": 0.5, "blue": 1.0, "white": 1.5}
    spec = {"metric": "map", "method": "mean", "temperature": 1.0, "per_class_weights": weights,
            "per_class_temperature": temps, "thresholds": {c: 0.5 for c in CLASSES},
            "members": [{"run": str(a), "weight": 0.4}, {"run": str(b), "weight": 0.6}, {"run": str(c), "weight": 0}]}
    (tmp_path / "ensemble.yaml").write_text(yaml.safe_dump(spec))
    members, resolved = resolve_members(load_competition(ml_comp), None, ensemble_yaml=tmp_path / "ensemble.yaml")
    assert len(members) == 2 and resolved["per_class_weights"]["green"] == pytest.approx([0.2, 0.8])
    from vidkit.kaggle.kernel import ensemble_spec  # the kernel bundle's ensemble.yaml: the same blend
    bundled = ensemble_spec(load_competition(ml_comp), members, resolved, [str(a), str(b)])
    (tmp_path / "bundle.yaml").write_text(yaml.safe_dump(bundled))
    assert load_ensemble(tmp_path / "bundle.yaml")["per_class_weights"] == resolved["per_class_weights"]
    run_submit(str(ml_comp), None, str(tmp_path / "sub.csv"), ensemble_yaml=tmp_path / "ensemble.yaml")
    got = pd.read_csv(tmp_path / "sub_probs.csv").set_index("video_id")[CLASSES]
    table = np.array([[weights[k][i] for k in CLASSES] for i in range(2)])
    want = calibrate(blend([probs["a"].to_numpy(), probs["b"].loc[probs["a"].index].to_numpy()], table, "mean", True),
                     {"per_class_temperature": temps}, True, CLASSES)
    assert not np.allclose(probs["a"].to_numpy(), probs["b"].to_numpy(), atol=0.05)
    assert np.allclose(got.loc[probs["a"].index].to_numpy(), want, atol=1e-5)


# ---------------------------------------------------------------- gallery, explain, app, tune, training kernel

def test_gallery_picks_per_class_false_positives_and_negatives():
    from vidkit.analysis.gallery import pick_multilabel
    oof = pd.DataFrame({"video_id": ["a", "b", "c"], "fold": [0, 1, 0], "label": ["red", "", "red green"],
                        "red": [0.2, 0.9, 0.7], "green": [0.1, 0.3, 0.6]})
    picks = pick_multilabel(oof, ["red", "green"], " ")
    assert picks["text"].tolist()[:2] == ["b (fold 1): false positive of red p=0.90; labels: (none)",
                                          "a (fold 0): false negative of red p=0.20; labels: red"]
    assert picks["wrong"].tolist() == [True, True, False, False]  # green: b at .3 is no error at 0.5, c at .6
    assert set(picks["pred"][2:]) == {"green"}


@pytest.mark.slow
def test_gallery_explain_and_app_on_a_multilabel_run(ml_comp, ml_run, tmp_path):
    """cv wrote the per-class gallery; explain shows each predicted class (or the one asked for) from sigmoids;
    the app's /predict returns predict's per-class sigmoids."""
    import torch
    from vidkit.analysis.explain import explain_video, explained_classes, load_fold_model
    from vidkit.analysis.gallery import run_gallery
    from vidkit.app import make_predict
    from vidkit.flows.predict import predict_video
    assert (ml_run / "errors.png").stat().st_size > 1000 and "false " in (ml_run / "errors.html").read_text()
    png, page = run_gallery(ml_run, n=4)
    assert page.read_text().count("<div class=\"v\">") == 4
    probs = torch.tensor([0.7, 0.2, 0.9, 0.4])
    assert explained_classes(probs, CLASSES, None, True) == [2, 0]
    assert explained_classes(probs * 0.5, CLASSES, None, True) == [2]  # none >= 0.5: the most probable
    assert explained_classes(probs, CLASSES, "green", True) == [1]
    video = ml_comp.parent.parent / "data" / "test" / "t00"
    loaded = load_fold_model(ml_run, 0)
    assert loaded[0].multilabel
    path, maps, _, frames = explain_video(ml_run, video, "blue", out=tmp_path / "blue.png", loaded=loaded)
    assert path.stat().st_size > 1000 and maps.shape[0] == len(frames)
    with pytest.raises(VidkitError, match="class: 'purple' is not one of"):
        explain_video(ml_run, video, "purple", loaded=loaded)
    label, frames, heat = make_predict([str(ml_run)], 4, loaded, tmp_path, None)(str(video))
    want = predict_video([ml_run], video)
    assert label == pytest.approx({c: float(p) for c, p in want.items()}, abs=1e-5)
    assert abs(sum(label.values()) - 1) > 0.05 and Path(heat).stat().st_size > 1000  # sigmoids, not a softmax


@pytest.mark.slow
def test_tune_optimises_map_on_a_multilabel_competition(ml_comp, tmp_path, monkeypatch):
    import shutil
    from vidkit.flows.tune import run_tune
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "configs").mkdir()
    for name in ("r3d18.yaml", "r3d18_demo.yaml"):
        shutil.copy(repo / "configs" / name, tmp_path / "configs" / name)
    (tmp_path / "configs" / "tune.yaml").write_text("lr: {log: [1.0e-3, 1.0e-2]}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("configs/r3d18_demo.yaml", {**parse_overrides(TINY), "comp": str(ml_comp), "epochs": "1",
                                                  "tta_clips": "1", "val_clips": "1"})
    tuned = run_tune(cfg, Path("configs/r3d18_demo.yaml"), trials=1)
    trials = pd.read_csv(tmp_path / "weights" / "ml" / "tune" / "r3d18_demo_trials.csv")
    assert trials["state"].tolist() == ["COMPLETE"] and 0 < trials["value"][0] <= 1  # a map, maximised
    assert "maximize score" in tuned.read_text().splitlines()[0]


@pytest.mark.slow  # one config trained inside the Kaggle stand-in
def test_training_kernel_on_a_multilabel_competition(ml_comp, kaggle_python, tmp_path):
    """kernel mode=train, dry run: the notebook cross-validates on the multi-label data (map, sigmoids), blends
    with per-class thresholds and writes an inference bundle."""
    from helpers import tiny_overrides
    from vidkit.config import load_competition
    from vidkit.kaggle.kernel_train import build_train, dry_run_train
    overrides = {k: v for k, v in tiny_overrides(epochs=1, tta_clips=1, val_clips=1).items()}
    code, nb = build_train(str(ml_comp), ["r3d18_demo"], overrides, out=str(tmp_path / "k"), gpu=False,
                           user="alice", competition="ml-videos", slug="vidkit-ml")
    assert dry_run_train(code, nb, load_competition(ml_comp), tmp_path / "v1", python=kaggle_python) == []
    runs = tmp_path / "v1" / "kaggle" / "working" / "vidkit" / "weights" / "ml"
    report = json.loads((runs / "r3d18_demo" / "cv_report.json").read_text())
    assert report["metric"] == "map" and len(report["fold_scores"]) == 2
    blend = yaml.safe_load((runs / "ensemble.yaml").read_text())
    assert blend["task"] == "multilabel" and set(blend["thresholds"]) == set(CLASSES)
    assert (tmp_path / "v1" / "kaggle" / "working" / "vidkit-ml" / "manifest.json").is_file()


def test_per_class_temperatures_of_one_are_the_identity():
    p = np.array([[0.2, 0.9], [0.6, 0.4]])
    assert calibrate(p, {"per_class_temperature": {"a": 1.0, "b": 1.0}}, True, ["a", "b"]) == pytest.approx(p)
    tempered = calibrate(p, {"per_class_temperature": {"b": 2.0, "a": 1.0}}, True, ["a", "b"])
    assert tempered[:, 0] == pytest.approx(p[:, 0]) and tempered[0, 1] == pytest.approx(0.75)  # 9:1 -> 3:1
    with pytest.raises(VidkitError, match="per_class_temperature: names classes"):
        calibrate(p, {"per_class_temperature": {"a": 1.0}}, True, ["a", "b"])
