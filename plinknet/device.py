"""Where and in what precision the network runs: the device, autocast's dtype, the loss scaler."""

from __future__ import annotations

import functools
import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> the local CUDA device when there is one (the rank's under torchrun), else CPU.

    Raises:
        ValueError: a CUDA device is asked for and there is none.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise ValueError(f"--device {name} under torchrun would put every process on GPU {device.index}; use "
                         f"--device cuda or auto: each process takes cuda:LOCAL_RANK")  # fmt: skip
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def precision(device: torch.device, amp: bool = True) -> str:
    """What autocast computes in: ``"bf16"`` on a GPU with bf16 (Ampere and later), ``"fp16"`` on older ones
    (Colab's T4, V100: bf16 is only emulated there, several times slower), ``"fp32"`` on the CPU or without amp."""
    if not amp or device.type != "cuda":
        return "fp32"
    return "bf16" if _bf16_supported(device.index) else "fp16"


@functools.cache
def _bf16_supported(index: int | None) -> bool:
    with torch.cuda.device(index):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def autocast(device: torch.device, enabled: bool = True):
    """Autocast in :func:`precision`'s dtype on CUDA; a no-op context on the CPU (fp32 there)."""
    name = precision(device, enabled)
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES.get(name), enabled=name != "fp32")


def grad_scaler(device: torch.device, amp: bool = True) -> torch.amp.GradScaler:
    """The loss scaler fp16 needs (small gradients would underflow to 0); a disabled one, a no-op, otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision(device, amp) == "fp16")


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = True) -> torch.nn.Module:
    """Move to ``device``; channels_last memory format on CUDA (faster convolutions with bf16)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if channels_last:
            return model.to(device, memory_format=torch.channels_last)
    return model.to(device)

