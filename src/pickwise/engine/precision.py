"""Mixed-precision choice: which autocast dtype a device supports and whether it helps."""

from __future__ import annotations

from pathlib import Path

import torch

from ..exceptions import ConfigError

__all__ = ["autocast_dtype", "cpu_has_native_bf16"]


def cpu_has_native_bf16() -> bool:
    """True if the CPU advertises bf16 arithmetic (AVX512-BF16 or AMX-BF16), where bf16 autocast speeds things up."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Resolve ``train.amp`` (``none``, ``bf16``, ``fp16``, ``auto``) to an autocast dtype for ``device`` (None: off).

    ``auto`` picks bf16 on CUDA devices that support it (fp16 otherwise) and bf16 on CPUs with native bf16
    instructions; elsewhere it stays in fp32, because emulated bf16 on CPU is slower than fp32.
    """
    if amp == "none":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("config: train.amp=fp16 needs a CUDA device; use train.amp=bf16 on CPU")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None
