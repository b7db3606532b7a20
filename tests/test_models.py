import pytest
import timm
import torch
from safetensors.torch import save_file
from transformers import (TimesformerConfig, TimesformerForVideoClassification, VideoMAEConfig,
                          VideoMAEForVideoClassification)

from vidkit.errors import VidkitError
from vidkit.models import create_model, list_models

CNN3D = dict(num_frames=4, image_size=32, width=8, layers=(1, 1, 1, 1))
VIT = dict(num_frames=4, image_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
           intermediate_size=64, patch_size=16)
TINY = {
    "r3d_18": CNN3D, "mc3_18": CNN3D, "r2plus1d_18": CNN3D,
    "r3d_18_late_fusion": {**CNN3D, "segments": 2},
    "r3d_18_inception": CNN3D,
    "videomae": VIT,
    "timesformer": VIT,
    "tsn": dict(num_frames=3, image_size=32, backbone="test_resnet"),
    "cnn_rnn": dict(num_frames=3, image_size=32, backbone="test_resnet", hidden=16, pool_grid=2),
}


def _clip(spec, batch=2):
    shape = (3, spec.num_frames) if spec.layout == "CTHW" else (spec.num_frames, 3)
    return torch.randn(batch, *shape, spec.size, spec.size)


def test_every_model_has_a_tiny_variant():
    assert sorted(TINY) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_model(name):
    """timm's test_models pattern: output shape, and every trainable parameter gets a gradient."""
    model = create_model(name, num_classes=5, **TINY[name])
    spec = model.input_spec
    assert spec.num_frames == TINY[name]["num_frames"] and spec.size == 32 and len(spec.mean) == len(spec.std) == 3
    assert model.classifier_name in dict(model.named_modules())
    logits = model(_clip(spec))
    assert logits.shape == (2, 5)
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


@pytest.mark.parametrize("name", ["tsn", "cnn_rnn"])
def test_timm_backbone_round_trip(tmp_path, name, caplog):
    source = timm.create_model("test_resnet", num_classes=1000)
    save_file(source.state_dict(), str(tmp_path / "test_resnet.safetensors"))
    model = create_model(name, num_classes=4, pretrained=str(tmp_path / "test_resnet.safetensors"), **TINY[name])
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


@pytest.mark.parametrize("name", list_models())
def test_missing_pretrained_path_says_where(name, tmp_path):
    with pytest.raises(VidkitError, match=f"pretrained: {tmp_path / 'nope'} not found; {name} needs"):
        create_model(name, num_classes=2, pretrained=str(tmp_path / "nope"), **TINY[name])


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
