"""Which mixed precision a device gets: `mixed_precision=auto` is bf16 on GPUs with native bf16 (compute
capability >= 8.0: A100, L4, H100), fp16 with accelerate's gradient scaler on older GPUs (Kaggle's T4 = 7.5,
P100 = 6.0), none on the CPU. Training (accelerate) and inference autocast both take it from here."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_said: set[str] = set()  # each message once per process: inference asks once per ensemble member


def _say(level: int, message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.log(level, message)


def gpu_name() -> str:
    import torch
    major, minor = torch.cuda.get_device_capability()
    return f"{torch.cuda.get_device_name()} (compute capability {major}.{minor})"


def native_bf16() -> bool:
    """bf16 in hardware: Ampere and newer (ROCm GPUs too). Older GPUs emulate it slowly, or refuse it."""
    import torch
    return bool(torch.version.hip) or tuple(torch.cuda.get_device_capability()) >= (8, 0)


def resolve_precision(requested: str) -> str:
    """`auto | no | fp16 | bf16` -> what accelerate gets on this machine (`no | fp16 | bf16`)."""
    import torch
    if not torch.cuda.is_available():
        if requested == "fp16":
            _say(logging.WARNING, "mixed_precision=fp16 needs a GPU; using no mixed precision on CPU")
        return "bf16" if requested == "bf16" else "no"  # an explicit bf16 runs as CPU autocast
    if requested == "auto":
        choice = "bf16" if native_bf16() else "fp16"
        _say(logging.INFO, f"mixed_precision=auto: {choice} on {gpu_name()}")
        return choice
    if requested == "bf16" and not native_bf16():
        _say(logging.WARNING, f"mixed_precision=bf16: {gpu_name()} has no native bf16 (emulated: slow, or refused); "
                              "using fp16 with a gradient scaler instead (mixed_precision=auto chooses this itself)")
        return "fp16"
    return requested
