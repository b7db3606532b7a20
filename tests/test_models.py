import pytest
import torch
from safetensors.torch import save_file
from transformers import VideoMAEConfig, VideoMAEForVideoClassification

from vidkit.errors import VidkitError
from vidkit.models import create_model, list_models

TINY = {
    "r3d_18": dict(num_frames=4, image_size=32, width=8, layers=(1, 1, 1, 1)),
    "videomae": dict(num_frames=4, image_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64),
}


def _clip(spec, batch=2):
    shape = (3, spec.num_frames) if spec.layout == "CTHW" else (spec.num_frames, 3)
    return torch.randn(batch, *shape, spec.size, spec.size)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_model(name):
    model = create_model(name, num_classes=5, **TINY[name])
    spec = model.input_spec
    assert spec.num_frames == 4 and spec.size == 32 and len(spec.mean) == len(spec.std) == 3
    logits = model(_clip(spec))
    assert logits.shape == (2, 5)
    logits.sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


def test_unknown_model_and_kwarg_are_clear_errors():
    with pytest.raises(VidkitError, match="unknown model 'r4d'"):
        create_model("r4d", num_classes=2)
    with pytest.raises(VidkitError, match="r3d_18 does not take depth"):
        create_model("r3d_18", num_classes=2, depth=3)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_r3d_loads_torchvision_state_dict(tmp_path, suffix, caplog):
    source = create_model("r3d_18", num_classes=400, width=8, layers=(1, 1, 1, 1))
    path = tmp_path / f"r3d{suffix}"
    state = source.state_dict()
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    model = create_model("r3d_18", num_classes=7, pretrained=str(path), width=8, layers=(1, 1, 1, 1))
    own = model.state_dict()
    assert torch.equal(own["stem.0.weight"], state["stem.0.weight"])
    assert torch.equal(own["layer4.0.conv2.0.weight"], state["layer4.0.conv2.0.weight"])
    assert own["fc.weight"].shape == (7, 64)  # the head is resized, and that is reported
    assert "fc.weight" in caplog.text and "shape mismatch" in caplog.text


def test_videomae_loads_a_from_pretrained_folder(tmp_path):
    config = VideoMAEConfig(image_size=32, num_frames=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, num_labels=10)
    source = VideoMAEForVideoClassification(config)
    source.save_pretrained(tmp_path / "vm")
    model = create_model("videomae", num_classes=3, pretrained=str(tmp_path / "vm"))
    got = model.hf.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("classifier"):
            assert torch.equal(got[key], value), key
    assert got["classifier.weight"].shape == (3, 32)
    assert model.input_spec.num_frames == 4 and model.input_spec.size == 32
    assert model.hf.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("name", list_models())
def test_missing_pretrained_path_says_where(name, tmp_path):
    with pytest.raises(VidkitError, match=f"pretrained: {tmp_path / 'nope'} not found; {name} needs"):
        create_model(name, num_classes=2, pretrained=str(tmp_path / "nope"), **TINY[name])


def test_pickled_code_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": object()}, path)
    with pytest.raises(VidkitError, match="not a plain tensor checkpoint"):
        create_model("r3d_18", num_classes=2, pretrained=str(path), **TINY["r3d_18"])
