import os

import pytest
import timm
import torch
from safetensors.torch import save_file
from transformers import (TimesformerConfig, TimesformerForVideoClassification, VideoMAEConfig,
                          VideoMAEForVideoClassification)

from helpers import CNN3D, MODEL_ARGS, TV_ZOO, VIT
from vidkit.errors import VidkitError
from vidkit.models import create_model, list_models
from vidkit.models.heads import HEADS


def clip_models() -> list[str]:
    """The models that take clips (heads take features: tests/test_features.py)."""
    return [m for m in list_models() if m not in HEADS]


def _clip(spec, batch=2):
    shape = (3, spec.num_frames) if spec.layout == "CTHW" else (spec.num_frames, 3)
    return torch.randn(batch, *shape, spec.size, spec.size)


def test_every_model_has_a_tiny_variant():
    assert sorted(MODEL_ARGS) == clip_models()


@pytest.mark.parametrize("name", clip_models())
def test_forward_backward_every_model(name):
    """timm's test_models pattern: output shape, and every trainable parameter gets a gradient."""
    model = create_model(name, num_classes=5, **MODEL_ARGS[name])
    spec = model.input_spec
    assert spec.num_frames == MODEL_ARGS[name]["num_frames"] and spec.size == 32 and len(spec.mean) == len(spec.std) == 3
    assert model.classifier_name in dict(model.named_modules())
    logits = model(_clip(spec))
    assert logits.shape == ((2, spec.num_frames, 5) if getattr(model, "per_frame", False) else (2, 5))
    logits.sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


def test_late_fusion_averages_segment_logits():
    model = create_model("r3d_18_late_fusion", num_classes=3, **{**CNN3D, "segments": 2}).eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        expected = (model.backbone(clip[:, :, :2]) + model.backbone(clip[:, :, 2:])) / 2
        assert torch.allclose(model(clip), expected, atol=1e-5)


def test_inception_single_logit_is_bce():
    model = create_model("r3d_18_inception", num_classes=2, single_logit=True, **CNN3D)
    logits = model(_clip(model.input_spec))
    assert (logits[:, 0] == 0).all()
    target = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(logits, target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 1], target.float())
    assert torch.allclose(ce, bce, atol=1e-6)
    with pytest.raises(VidkitError, match="single_logit needs 2 classes"):
        create_model("r3d_18_inception", num_classes=3, single_logit=True, **CNN3D)


def test_unknown_model_and_kwarg_are_clear_errors():
    with pytest.raises(VidkitError, match="unknown model 'r4d'"):
        create_model("r4d", num_classes=2)
    with pytest.raises(VidkitError, match="r3d_18 does not take depth"):
        create_model("r3d_18", num_classes=2, depth=3)
    with pytest.raises(VidkitError, match="backbone 'nope_net'"):
        create_model("tsn", num_classes=2, backbone="nope_net")


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_state_dict_round_trip(tmp_path, name, suffix, caplog):
    source = create_model(name, num_classes=400, **CNN3D)
    path = tmp_path / f"w{suffix}"
    state = source.state_dict()
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    model = create_model(name, num_classes=7, pretrained=str(path), **CNN3D)
    own = model.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key
    assert own["fc.weight"].shape == (7, 64)  # the head is resized, and that is reported
    assert "fc.weight" in caplog.text and "shape mismatch" in caplog.text


def test_torchvision_full_width_names_match_torchvision():
    from torchvision.models.video import r2plus1d_18
    ours = create_model("r2plus1d_18", num_classes=400).state_dict()
    theirs = r2plus1d_18().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("name", ["tsn", "cnn_rnn", "tsm"])
def test_timm_backbone_round_trip(tmp_path, name, caplog):
    source = timm.create_model("test_resnet", num_classes=1000)
    save_file(source.state_dict(), str(tmp_path / "test_resnet.safetensors"))
    model = create_model(name, num_classes=4, pretrained=str(tmp_path / "test_resnet.safetensors"), **MODEL_ARGS[name])
    got = getattr(model.backbone, "trunk", model.backbone).state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(got[key], value), key
    assert "unused from checkpoint: fc.bias, fc.weight" in caplog.text  # the ImageNet head is reported


@pytest.mark.parametrize("name, config_cls, model_cls", [
    ("videomae", VideoMAEConfig, VideoMAEForVideoClassification),
    ("timesformer", TimesformerConfig, TimesformerForVideoClassification),
])
def test_transformers_folder_round_trip(tmp_path, name, config_cls, model_cls):
    kwargs = {k: v for k, v in VIT.items()}
    config = config_cls(**kwargs, num_labels=10)
    source = model_cls(config)
    source.save_pretrained(tmp_path / name)
    model = create_model(name, num_classes=3, pretrained=str(tmp_path / name))
    got = model.hf.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("classifier"):
            assert torch.equal(got[key], value), key
    assert got["classifier.weight"].shape == (3, 32)
    assert model.input_spec.num_frames == 4 and model.input_spec.size == 32
    assert model(_clip(model.input_spec)).shape == (2, 3)


def test_videomae_checkpoint_runs_at_another_frame_count(tmp_path):
    VideoMAEForVideoClassification(VideoMAEConfig(**VIT, num_labels=10)).save_pretrained(tmp_path / "vm")
    model = create_model("videomae", num_classes=3, pretrained=str(tmp_path / "vm"), num_frames=8, image_size=48)
    assert model.input_spec.num_frames == 8 and model(_clip(model.input_spec)).shape == (2, 3)
    assert model.hf.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("name", clip_models())
def test_missing_pretrained_path_says_where(name, tmp_path):
    with pytest.raises(VidkitError, match=f"pretrained: {tmp_path / 'nope'} not found; {name} needs"):
        create_model(name, num_classes=2, pretrained=str(tmp_path / "nope"), **MODEL_ARGS[name])


def test_pretrained_auto_looks_in_weights_pretrained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VidkitError, match=r"pretrained=auto: put a torchvision r3d_18 state_dict .* in "
                                          r"weights/pretrained/r3d_18/"):
        create_model("r3d_18", num_classes=2, pretrained="auto", **CNN3D)
    (tmp_path / "weights" / "pretrained" / "r3d_18").mkdir(parents=True)
    save_file(create_model("r3d_18", num_classes=2, **CNN3D).state_dict(),
              str(tmp_path / "weights" / "pretrained" / "r3d_18" / "r3d.safetensors"))
    assert create_model("r3d_18", num_classes=2, pretrained="auto", **CNN3D).fc.weight.shape == (2, 64)


def test_pickled_code_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": object()}, path)
    with pytest.raises(VidkitError, match="not a plain tensor checkpoint"):
        create_model("r3d_18", num_classes=2, pretrained=str(path), **CNN3D)


@pytest.mark.parametrize("name", ["videomae", "timesformer"])
def test_sdpa_attention_equals_eager(name):
    """Both transformers use torch's fused attention by default; same weights, same logits as the eager path."""
    torch.manual_seed(0)
    sdpa = create_model(name, num_classes=3, **VIT).eval()
    eager = create_model(name, num_classes=3, **VIT, attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    x = _clip(sdpa.input_spec)
    with torch.no_grad():
        assert torch.allclose(sdpa(x), eager(x), atol=1e-5)
    if name == "timesformer":
        assert any(type(m).__name__ == "TimesformerSdpaAttention" for m in sdpa.modules())
        assert not any(type(m).__name__ == "TimesformerSdpaAttention" for m in eager.modules())
    else:
        assert sdpa.hf.config._attn_implementation == "sdpa" and eager.hf.config._attn_implementation == "eager"


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["videomae", "timesformer", "vivit", "vjepa2", "videoprism"])
def test_transformers_full_size_parameter_count_equals_the_library(name):
    """Built without weights on the meta device: the wrapper adds and loses nothing but the resized head
    (V-JEPA 2: less its JEPA predictor, which classification never runs)."""
    from transformers import AutoModelForVideoClassification
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from vidkit.models.hf import FAMILIES
    with torch.device("meta"):
        ours = create_model(name, num_classes=400)
        reference = AutoModelForVideoClassification.from_config(CONFIG_MAPPING[FAMILIES[name]](num_labels=400))
    unused = _count(reference.vjepa2.predictor) if name == "vjepa2" else 0
    assert _count(ours) == _count(reference) - unused > 50_000_000
    assert ours.hf.classifier.out_features == 400


HF_FAMILIES = {name: MODEL_ARGS[name] for name in ("vivit", "vjepa2", "videoprism")}


@pytest.mark.parametrize("name", [*HF_FAMILIES, "hf_video"])
def test_new_transformers_families_folder_round_trip(tmp_path, name):
    """save_pretrained of random weights, loaded through pretrained=: equal tensors, the head resized, the input
    spec from the checkpoint's config (frames, size) and its preprocessor file (mean/std)."""
    from transformers import AutoModelForVideoClassification
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from vidkit.models.hf import FAMILIES, _keys
    family = "vjepa2" if name == "hf_video" else name
    args = {k: v for k, v in HF_FAMILIES[family].items() if k not in ("num_frames", "image_size")}
    config = CONFIG_MAPPING[FAMILIES[family]](num_labels=10, **args)
    frames_key, size_key = _keys(config)
    setattr(config, frames_key, 4), setattr(config, size_key, 32)
    source = AutoModelForVideoClassification.from_config(config)
    source.save_pretrained(tmp_path / name)
    (tmp_path / name / "preprocessor_config.json").write_text('{"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.3]}')
    model = create_model(name, num_classes=3, pretrained=str(tmp_path / name))
    got = model.hf.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith(("classifier", "vjepa2.predictor")):
            assert torch.equal(got[key], value), key
    assert got["classifier.weight"].shape[0] == 3 and not any(k.startswith("vjepa2.predictor") for k in got)
    spec = model.input_spec
    assert (spec.num_frames, spec.size, spec.layout) == (4, 32, "TCHW")
    assert spec.mean == pytest.approx((0.4, 0.5, 0.6)) and spec.std == pytest.approx((0.2, 0.25, 0.3))
    assert model(_clip(spec)).shape == (2, 3)


def test_checkpoint_preprocessing_becomes_mean_std(tmp_path):
    """ViViT's processor maps pixels to [-1, 1] (rescale 1/127.5, offset) and then normalises with 0.5/0.5:
    the input spec's mean/std on [0, 1] pixels give the same numbers."""
    from transformers import VivitConfig, VivitForVideoClassification
    args = {k: v for k, v in MODEL_ARGS["vivit"].items() if k not in ("num_frames", "image_size")}
    VivitForVideoClassification(VivitConfig(num_frames=4, image_size=32, **args)).save_pretrained(tmp_path / "v")
    (tmp_path / "v" / "preprocessor_config.json").write_text(
        '{"do_rescale": true, "rescale_factor": 0.00784313725490196, "offset": true, "do_normalize": true, '
        '"image_mean": [0.5, 0.4, 0.3], "image_std": [0.5, 0.6, 0.7]}')
    spec = create_model("vivit", num_classes=2, pretrained=str(tmp_path / "v")).input_spec
    pixels = torch.tensor([0.0, 77.0, 255.0])
    for c, (m, s) in enumerate(zip((0.5, 0.4, 0.3), (0.5, 0.6, 0.7))):
        expected = (pixels / 127.5 - 1 - m) / s
        assert torch.allclose((pixels / 255 - spec.mean[c]) / spec.std[c], expected, atol=1e-5)
    no_file = create_model("videoprism", num_classes=2, **MODEL_ARGS["videoprism"]).input_spec
    assert no_file.mean == (0.0,) * 3 and no_file.std == (1.0,) * 3  # VideoPrism takes [0, 1] pixels


def test_transformers_frames_and_size_follow_the_checkpoint_where_they_can(tmp_path):
    """V-JEPA 2 (RoPE) and VideoPrism (interpolated tables) run a checkpoint at other frames/sizes; ViViT's
    learned table cannot, and says so."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers import AutoModelForVideoClassification

    from vidkit.models.hf import FAMILIES, _keys
    for name in HF_FAMILIES:
        args = {k: v for k, v in HF_FAMILIES[name].items() if k not in ("num_frames", "image_size")}
        config = CONFIG_MAPPING[FAMILIES[name]](num_labels=4, **args)
        frames_key, size_key = _keys(config)
        setattr(config, frames_key, 4), setattr(config, size_key, 32)
        AutoModelForVideoClassification.from_config(config).save_pretrained(tmp_path / name)
        if name == "vivit":
            with pytest.raises(VidkitError, match="for 4 frames x 32 px; its learned position table"):
                create_model(name, num_classes=2, pretrained=str(tmp_path / name), num_frames=8)
            continue
        model = create_model(name, num_classes=2, pretrained=str(tmp_path / name), num_frames=8, image_size=48)
        assert (model.input_spec.num_frames, model.input_spec.size) == (8, 48)
        assert model(_clip(model.input_spec)).shape == (2, 2)


def test_transformers_attention_and_arguments():
    """SDPA where transformers offers it; VideoPrism has none (eager); a config key that does not exist and
    a folder-less hf_video without model_type are clear errors."""
    assert create_model("vivit", num_classes=2, **MODEL_ARGS["vivit"]).hf.config._attn_implementation == "sdpa"
    assert create_model("vjepa2", num_classes=2, **MODEL_ARGS["vjepa2"]).hf.config._attn_implementation == "sdpa"
    assert create_model("videoprism", num_classes=2, **MODEL_ARGS["videoprism"]).hf.config._attn_implementation == "eager"
    vjepa = create_model("vjepa2", num_classes=2, **MODEL_ARGS["vjepa2"])
    assert vjepa.input_name == "pixel_values_videos" and vjepa.hf.config.frames_per_clip == 4
    with pytest.raises(VidkitError, match=r"vivit \(VivitConfig\) does not take hiden_size"):
        create_model("vivit", num_classes=2, hiden_size=8)
    with pytest.raises(VidkitError, match="hf_video needs model_type= one of"):
        create_model("hf_video", num_classes=2)


@pytest.mark.parametrize("name", TV_ZOO)
def test_torchvision_zoo_full_size_parameter_count_and_spec_from_the_weights_metadata(name):
    """Built without weights on the meta device: as many parameters as torchvision's weights say; frames, size
    and mean/std are those of the weights' transforms and docs (nothing downloaded)."""
    from torchvision.models import get_model_weights
    weights = get_model_weights(name).DEFAULT
    with torch.device("meta"):
        model = create_model(name, num_classes=400)
    assert _count(model) == weights.meta["num_params"]
    spec, transforms = model.input_spec, weights.transforms()
    assert spec.size == transforms.crop_size[0] == 224 and spec.layout == "CTHW"
    assert spec.mean == tuple(transforms.mean) and spec.std == tuple(transforms.std)
    assert f"clip_len={spec.num_frames}" in weights.meta["_docs"]


@pytest.mark.parametrize("name", ["s3d", "mvit_v2_s", "swin3d_t"])
def test_torchvision_zoo_state_dict_round_trip(tmp_path, name, caplog):
    source = create_model(name, num_classes=400, **MODEL_ARGS[name])
    torch.save(source.state_dict(), tmp_path / "w.pth")
    model = create_model(name, num_classes=7, pretrained=str(tmp_path / "w.pth"), **MODEL_ARGS[name])
    own, head = model.state_dict(), model.classifier_name
    for key, value in source.state_dict().items():
        if not key.startswith(head + "."):
            assert torch.equal(own[key], value), key
    assert "shape mismatch" in caplog.text and f"{head}." in caplog.text  # the resized head is reported
    assert model(_clip(model.input_spec)).shape == (2, 7)


def test_mvit_clip_is_fixed_by_its_position_tables():
    with pytest.raises(VidkitError, match=r"mvit_v2_s runs at 16 frames x 224 px only \(asked for num_frames=8"):
        with torch.device("meta"):
            create_model("mvit_v2_s", num_classes=2, num_frames=8)


def _random_2d(name: str, num_classes: int):
    """A timm 2D CNN in eval mode with every tensor random (BN statistics too, residual branches not zeroed)."""
    net = timm.create_model(name, num_classes=num_classes, zero_init_last=False).eval()
    with torch.no_grad():
        for key, value in net.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if "running_var" in key or key.endswith("bn1.weight")
                            else torch.randn_like(value) * 0.1 if "running_mean" in key else value)
    return net


def test_i3d_center_inflation_of_identical_frames_gives_the_2d_logits(tmp_path):
    """The inflation property: `inflate: center` with the 2D checkpoint's own head; a clip of one repeated
    frame gives the 2D model's logits on that frame."""
    torch.manual_seed(0)
    net = _random_2d("test_resnet", 10)
    save_file(net.state_dict(), str(tmp_path / "2d.safetensors"))
    model = create_model("i3d_r50", num_classes=10, pretrained=str(tmp_path / "2d.safetensors"), inflate="center",
                         **MODEL_ARGS["i3d_r50"]).eval()
    frame = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, got = net(frame), model(frame.unsqueeze(2).repeat(1, 1, 4, 1, 1))
    assert expected.std() > 0.1 and torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    with torch.no_grad():  # and time matters: a moving clip is not its frames' average
        moving = model(torch.randn(2, 3, 4, 32, 32))
    assert moving.shape == (2, 10)
    with pytest.raises(VidkitError, match="inflate: 'edge' is not one of mean, center"):
        create_model("i3d_r50", num_classes=2, inflate="edge", **MODEL_ARGS["i3d_r50"])


def test_i3d_inflates_a_real_resnet50_state_dict(tmp_path, caplog):
    """torchvision's resnet50 names and shapes: every tensor lands, each kernel inflated over its time kernel
    (`mean`: the 2D kernel summed over time), the stem spans 5 frames, every other block's first conv 3."""
    import logging
    import torchvision
    from vidkit.models.inflate import inflate_state_dict
    state = torchvision.models.resnet50().state_dict()
    torch.save(state, tmp_path / "resnet50.pth")
    caplog.set_level(logging.INFO)
    model = create_model("i3d_r50", num_classes=1000, pretrained=str(tmp_path / "resnet50.pth"))
    assert f"loaded {len(state)}/{len(state)} tensors" in caplog.text and "mismatch" not in caplog.text
    own = model.state_dict()
    assert own["conv1.weight"].shape == (64, 3, 5, 7, 7)
    assert own["layer1.0.conv1.weight"].shape == (64, 64, 3, 1, 1) and own["layer1.1.conv1.weight"].shape[2] == 1
    assert own["layer3.0.conv2.weight"].shape == (256, 256, 1, 3, 3)
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer4.2.conv3.weight"):
        assert torch.allclose(own[key].sum(2) if own[key].ndim == 5 else own[key], state[key], atol=1e-6), key
    center = inflate_state_dict({"conv1.weight": state["conv1.weight"]}, own, "center")["conv1.weight"]
    assert torch.equal(center[:, :, 2], state["conv1.weight"]) and not center[:, :, [0, 1, 3, 4]].any()
    assert model.input_spec.layout == "CTHW" and model.input_spec.num_frames == 8


def test_stack2d3d_folds_neighbouring_frames_and_adapts_pretrained_first_conv(tmp_path):
    from timm.models import adapt_input_conv
    source = timm.create_model("test_resnet", num_classes=1000)
    save_file(source.state_dict(), str(tmp_path / "r.safetensors"))
    model = create_model("stack2d3d", num_classes=4, pretrained=str(tmp_path / "r.safetensors"), **MODEL_ARGS["stack2d3d"])
    got = model.backbone.state_dict()
    assert got["conv1.0.weight"].shape[1] == 6  # 2 RGB frames per stack
    assert torch.allclose(got["conv1.0.weight"], adapt_input_conv(6, source.state_dict()["conv1.0.weight"]))
    assert torch.equal(got["layer4.0.conv2.weight"], source.state_dict()["layer4.0.conv2.weight"])
    gray = create_model("stack2d3d", num_classes=4, **{**MODEL_ARGS["stack2d3d"], "grayscale": True})
    assert gray.backbone.state_dict()["conv1.0.weight"].shape[1] == 2 and gray(_clip(gray.input_spec)).shape == (2, 4)
    with pytest.raises(VidkitError, match="num_frames=5 is not a multiple of stack=2"):
        create_model("stack2d3d", num_classes=4, **{**MODEL_ARGS["stack2d3d"], "num_frames": 5})


def test_temporal_shift_moves_channels_one_frame_each_way():
    from vidkit.models.frame2d import temporal_shift
    x = torch.arange(1, 4.0).view(1, 3, 1, 1, 1).repeat(1, 1, 4, 1, 1).view(3, 4, 1, 1)  # frames 1, 2, 3
    shifted = temporal_shift(x, segments=3, fold_div=4).view(3, 4)
    assert shifted[:, 0].tolist() == [2, 3, 0] and shifted[:, 1].tolist() == [0, 1, 2]  # from t+1, from t-1
    assert shifted[:, 2:].tolist() == x.view(3, 4)[:, 2:].tolist()


def test_tsm_sees_frame_order_and_tsn_does_not():
    torch.manual_seed(0)
    clip = torch.randn(1, 3, 3, 32, 32)
    for name, order_matters in (("tsm", True), ("tsn", False)):
        model = create_model(name, num_classes=3, **MODEL_ARGS[name]).eval()
        with torch.no_grad():
            for module in model.modules():  # timm zero-initialises each residual branch's last norm
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.weight.uniform_(0.5, 1.5)
            same = torch.allclose(model(clip), model(clip.flip(1)), atol=1e-5)
        assert same is not order_matters, name


@pytest.mark.parametrize("config", ["vivit", "vjepa2", "videoprism", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t",
                                    "swin3d_s", "swin3d_b", "i3d_r50", "stack2d3d", "tsm"])
def test_new_gpu_configs_build_at_their_clip(config):
    """Each new model's GPU config builds (no weights, meta device) and runs at the clip it asks for."""
    from vidkit.config import load_config
    cfg = load_config(config, {"pretrained": "none"})
    with torch.device("meta"):
        model = create_model(cfg.model, num_classes=10, num_frames=cfg.num_frames, image_size=cfg.image_size,
                             **cfg.model_args)
        logits = model(_clip(model.input_spec, batch=1).to("meta"))
    assert (model.input_spec.num_frames, model.input_spec.size) == (cfg.num_frames, cfg.image_size)
    assert logits.shape == (1, 10)


def test_pretrained_licence_from_the_checkpoint_else_the_config(tmp_path, monkeypatch):
    from vidkit.models.weights import pretrained_license
    assert pretrained_license(None, "r3d_18", "MIT") == {"source": None, "license": None}  # scratch
    folder = tmp_path / "vjepa2"
    folder.mkdir()
    (folder / "config.json").write_text('{"_name_or_path": "facebook/vjepa2-vitl-fpc16-256-ssv2"}')
    (folder / "README.md").write_text("---\nlicense: mit\ntags: [video]\n---\n# V-JEPA 2\n")
    assert pretrained_license(str(folder), "vjepa2", "apache-2.0") == {
        "source": "facebook/vjepa2-vitl-fpc16-256-ssv2", "license": "mit"}  # the model card wins
    save_file({"w": torch.zeros(1)}, str(tmp_path / "r.safetensors"), metadata={"license": "CC-BY-NC-4.0"})
    assert pretrained_license(str(tmp_path / "r.safetensors"), "r3d_18")["license"] == "CC-BY-NC-4.0"
    torch.save({"w": torch.zeros(1)}, tmp_path / "r.pth")
    assert pretrained_license(str(tmp_path / "r.pth"), "r3d_18", "BSD-3-Clause") == {
        "source": str(tmp_path / "r.pth"), "license": "BSD-3-Clause"}  # nothing in the file: the config's
    monkeypatch.chdir(tmp_path)
    assert pretrained_license("auto", "r3d_18")["source"] == "weights/pretrained/r3d_18"


def test_pretrained_auto_finds_weights_under_kaggle_inputs(tmp_path, monkeypatch):
    """A training kernel points pretrained=auto at its weight inputs: a dataset holding r3d_18/ (or one
    named r3d-18), and a Kaggle Model whose save_pretrained folder sits a few levels down."""
    monkeypatch.chdir(tmp_path)
    dataset = tmp_path / "input" / "datasets" / "bob" / "video-weights"
    (dataset / "r3d_18").mkdir(parents=True)
    save_file(create_model("r3d_18", num_classes=2, **CNN3D).state_dict(), str(dataset / "r3d_18" / "r3d.safetensors"))
    hub = tmp_path / "input" / "models" / "bob" / "videomae"
    VideoMAEForVideoClassification(VideoMAEConfig(**VIT, num_labels=10)).save_pretrained(
        hub / "transformers" / "base" / "1")
    monkeypatch.setenv("VIDKIT_PRETRAINED_ROOTS", f"{dataset}{os.pathsep}{hub}")
    assert create_model("r3d_18", num_classes=2, pretrained="auto", **CNN3D).fc.weight.shape == (2, 64)
    model = create_model("videomae", num_classes=3, pretrained="auto", num_frames=8, image_size=48)
    assert model.hf.config.hidden_size == VIT["hidden_size"]
    (dataset / "r3d_18" / "other.pth").write_bytes(b"")  # two candidates: ambiguous, refused
    with pytest.raises(VidkitError, match=r"in weights/pretrained/r3d_18/ \(or in a folder r3d_18/ under .*"
                                          r"video-weights.*several weight files"):
        create_model("r3d_18", num_classes=2, pretrained="auto", **CNN3D)
