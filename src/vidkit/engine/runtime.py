"""What every verb that runs a model shares: build the model from a config, the Accelerator (device, mixed
precision, compile), the device layout, and the bare model behind accelerate's wrappers.

Training and inference both import it; verbs that need no model never do (torch and accelerate load here).
"""
from __future__ import annotations

import gc
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration, PartialState
from accelerate.utils import DistributedDataParallelKwargs, TorchDynamoPlugin

from vidkit.config import Config
from vidkit.models import create_model
from vidkit.models.weights import trusting_pickles
from vidkit.engine.precision import resolve_precision


def freeze_imports() -> None:
    """accelerate's free_memory() (once per fold, to drop the previous fold's objects) runs a full gc.collect():
    0.6 s over the ~600k objects torch, transformers and timm leave behind, every fold, five folds a cv. Moved once
    into the permanent generation, they are never scanned again; later collections see only what runs make."""
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()


def make_accelerator(cfg: Config, project_dir: Path | None = None) -> Accelerator:
    freeze_imports()
    gpu = torch.cuda.is_available()
    precision = resolve_precision(cfg.mixed_precision)  # auto: bf16 on Ampere+, fp16 (+ scaler) on T4/P100
    # progressive unfreezing leaves frozen parameters without gradients, which DDP must be told about
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if cfg.freeze_epochs else []
    # `compile`: accelerate's prepare wraps the model in torch.compile (only training prepares models); off, the
    # plugin still reads `accelerate launch --dynamo_backend`
    dynamo = TorchDynamoPlugin(backend=cfg.compile_backend, mode=cfg.compile_mode) if cfg.compile else \
        TorchDynamoPlugin()
    accelerator = Accelerator(
        mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum, log_with=cfg.log_with,
        cpu=not gpu,  # on GPU-less machines this lets torchrun/accelerate launch form a gloo group of CPU processes
        dynamo_plugin=dynamo, kwargs_handlers=handlers,
        dataloader_config=DataLoaderConfiguration(non_blocking=gpu),  # pinned batches copy while the GPU computes
        project_dir=str(project_dir) if project_dir else None)
    # accelerate keeps one state per process, made by its first Accelerator: a process that trains several
    # configs (the demo, tests) sets each run's compile choice on it
    accelerator.state.dynamo_plugin = dynamo
    return accelerator


def process_state() -> PartialState:
    """accelerate's view of the processes a verb runs in, made as `make_accelerator` makes it (gloo between
    CPU processes under torchrun), for the main-process-only parts of a verb."""
    return PartialState(cpu=not torch.cuda.is_available())


def bare(accelerator: Accelerator, model):
    """The model without DDP and torch.compile wrappers: plain state_dict keys, attributes like `input_spec`."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def to_device(model, device, channels_last: bool = True):
    """On a GPU, 3D CNNs (CTHW input) in channels_last_3d memory, the layout cuDNN's fastest kernels use; the
    batches `normalize` makes from uint8 clips are in that layout already."""
    model = model.to(device)
    if channels_last and torch.device(device).type == "cuda" and model.input_spec.layout == "CTHW":
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def build_model(cfg: Config, num_classes: int, pretrained: str | None = None):
    extra = {}
    if cfg.features:  # a head: its input size is the feature store's (vidkit.engine.features)
        from vidkit.engine.features import head_args
        extra = head_args(cfg)
    with trusting_pickles(cfg.trust_pickle):
        return create_model(cfg.model, num_classes=num_classes, pretrained=pretrained, num_frames=cfg.num_frames,
                            image_size=cfg.image_size, **{**extra, **cfg.model_args})
