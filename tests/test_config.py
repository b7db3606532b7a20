import pytest

from vidkit.config import Config, load_competition, load_config, parse_overrides
from vidkit.errors import VidkitError


def test_overrides_are_typed():
    cfg = load_config("r3d18", parse_overrides(["epochs=3", "lr=1e-3", "mixed_precision=bf16",
                                                "pretrained=none", "model_args.width=16"]))
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.lr == pytest.approx(1e-3) and isinstance(cfg.lr, float)
    assert cfg.pretrained is None
    assert cfg.model_args["width"] == 16
    assert cfg.name == "r3d18"


def test_base_config_is_inherited():
    cfg = load_config("configs/r3d18_demo.yaml")
    assert cfg.model == "r3d_18" and cfg.num_frames == 8 and cfg.model_args["width"] == 16
    assert cfg.tta_clips == 2 and cfg.frame_stride == 2


@pytest.mark.parametrize("arg, message", [
    ("epoch=3", "unknown key 'epoch'"),
    ("epochs=three", "epochs: expected int"),
    ("lr=fast", "lr: expected float"),
    ("mixed_precision=fp8", "mixed_precision: 'fp8' is not one of"),
    ("batch_size=0", "batch_size: must be >= 1"),
    ("train_sampler=multi", "train_sampler: 'multi' is not one of random, uniform"),  # multi is TTA's
    ("pad_mode=mirror", "pad_mode: 'mirror' is not one of repeat, loop"),
])
def test_bad_overrides_name_the_key(arg, message):
    with pytest.raises(VidkitError, match=message):
        load_config("r3d18", parse_overrides([arg]))


def test_a_registered_sampler_is_a_config_choice(monkeypatch):
    from vidkit.choices import CHOICES
    from vidkit.data import make_sampler, sampling
    def backwards(n_frames, clip, clip_index, rng):
        return sampling.uniform_indices(n_frames, clip.num_frames, clip.pad_mode)[::-1]
    monkeypatch.setitem(sampling.SAMPLERS, "backwards", sampling.Sampler(backwards, train=True))
    with pytest.raises(VidkitError, match="train_sampler: 'backwards' is not one of random, uniform"):
        load_config("r3d18", {"train_sampler": "backwards"})  # not yet in its choice list
    monkeypatch.setitem(CHOICES, "train_sampler", (*CHOICES["train_sampler"], "backwards"))
    cfg = load_config("r3d18", {"train_sampler": "backwards"})
    assert make_sampler(cfg.train_sampler, 4)(8).tolist() == [7, 5, 3, 1]


def test_contract_keys_always_work():
    keys = ["comp", "out_dir", "fold", "epochs", "batch_size", "lr", "num_frames", "image_size", "tta_clips",
            "seed", "mixed_precision", "pretrained"]
    assert set(keys) <= set(Config.__dataclass_fields__)


def test_competition_paths_resolve_relative_to_yaml(tiny_comp):
    comp = load_competition(tiny_comp)
    assert comp.resolve(comp.train_dir).is_dir()
    assert comp.n_folds == 3


def test_competition_unknown_field(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("name: x\ntrain_dir: t\nmetrics: accuracy\n")
    with pytest.raises(VidkitError, match=r"c.yaml: unknown key 'metrics'"):
        load_competition(bad)


@pytest.mark.parametrize("name, config", [("r3d_18", "r3d18"), ("configs/r3d_18.yaml", "r3d18"),  # make MODEL=r3d_18
                                          ("r2plus1d_18", "r2plus1d18"), ("mc3_18", "mc3_18"), ("r3d18", "r3d18"),
                                          ("cnn_rnn", "cnn_rnn"), ("r3d18_demo", "r3d18_demo")])
def test_a_model_name_names_its_config(name, config):
    cfg = load_config(name)
    assert cfg.name == config and load_config(config).model == cfg.model


def test_unknown_or_ambiguous_config_names_the_candidates(tmp_path):
    with pytest.raises(VidkitError, match=r"r3d_81.*configs: .*r3d18.*models: .*r3d_18"):
        load_config("r3d_81")
    (tmp_path / "a.yaml").write_text("model: tsn\n")
    (tmp_path / "b.yaml").write_text("model: tsn\nlr: 0.1\n")
    (tmp_path / "b_demo.yaml").write_text("_base_: b.yaml\n")
    with pytest.raises(VidkitError, match=r"several configs .* for model 'tsn' \(a, b\)"):
        load_config(str(tmp_path / "tsn.yaml"))
