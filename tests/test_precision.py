"""mixed_precision=auto: the GPU's compute capability decides (mocked here: this machine has no GPU)."""
import logging
from pathlib import Path

import pytest
import torch
import yaml

from vidkit.engine import precision
from vidkit.config import Config, load_config
from vidkit.engine.precision import resolve_precision
from vidkit.engine.runtime import make_accelerator

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def gpu(monkeypatch):
    """A fake CUDA device of the given compute capability."""
    precision._said.clear()

    def fake(capability):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"GPU {capability}")
        monkeypatch.setattr(torch.version, "hip", None)
    return fake


@pytest.mark.parametrize("capability, want", [((7, 5), "fp16"), ((6, 0), "fp16"), ((8, 0), "bf16"),
                                              ((8, 9), "bf16"), ((9, 0), "bf16")])
def test_auto_follows_compute_capability(gpu, capability, want, caplog):
    gpu(capability)
    with caplog.at_level(logging.INFO, logger="vidkit.engine.precision"):
        assert resolve_precision("auto") == want
    assert f"mixed_precision=auto: {want} on GPU {capability}" in caplog.text
    assert resolve_precision("no") == "no" and resolve_precision("fp16") == "fp16"


@pytest.mark.parametrize("capability", [(7, 5), (6, 0)])
def test_bf16_on_t4_or_p100_warns_and_uses_fp16(gpu, capability, caplog):
    gpu(capability)
    assert resolve_precision("bf16") == "fp16"
    assert "has no native bf16" in caplog.text and "using fp16 with a gradient scaler" in caplog.text
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    resolve_precision("bf16")
    assert len(caplog.records) == 1  # said once per process, not once per ensemble member


def test_bf16_stays_on_ampere(gpu, caplog):
    gpu((8, 0))
    assert resolve_precision("bf16") == "bf16" and not caplog.records


def test_cpu_gets_no_mixed_precision(monkeypatch, caplog):
    precision._said.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto") == "no" and resolve_precision("no") == "no"
    assert resolve_precision("fp16") == "no" and "fp16 needs a GPU" in caplog.text
    assert resolve_precision("bf16") == "bf16"  # asked for explicitly: CPU autocast


def test_accelerator_and_inference_autocast_take_the_resolved_choice():
    """On this CPU machine `auto` gives accelerate no mixed precision: training and `predict`'s autocast
    (both through make_accelerator) run in float32."""
    acc = make_accelerator(Config(mixed_precision="auto", num_workers=0))
    assert acc.mixed_precision == "no"
    with acc.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_every_gpu_config_says_auto():
    for path in sorted(CONFIGS.glob("*.yaml")):
        if not {"model", "_base_"} & set(yaml.safe_load(path.read_text())):
            continue  # not a training config (tune.yaml: a search space)
        cfg = load_config(str(path))
        gpu_config = not path.stem.endswith("_demo")
        assert (cfg.mixed_precision == "auto") == gpu_config, path.name
