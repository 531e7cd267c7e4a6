"""The backbone's dtype: params ``backbone.dtype`` (``auto`` | ``float32`` | ``bfloat16``) resolved for a device.

``auto`` picks bfloat16 only where the hardware multiplies bf16 matrices natively: a CUDA GPU that supports
bf16, or a CPU with AMX-BF16 or AVX512-BF16. Elsewhere bf16 matmuls are emulated and far slower than fp32
(measured on an AVX2-only AMD EPYC: 1.1 GFLOP/s in bf16 against 60 in fp32, one core), so ``auto`` stays fp32.
The frozen weights are cast once at load time (no autocast, no per-op casts); prompts, optimizer state and the
label-word scores stay fp32 (see :class:`pipeline.model.backbone.Backbone`).
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.errors import PipelineError
from pipeline.config.schema import BACKBONE_DTYPES as DTYPE_SETTINGS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_SETTING = "auto"


def dtype_setting(params: dict[str, Any]) -> str:
    """``backbone.dtype`` from params (``auto`` when left out), checked."""
    setting = (params.get("backbone") or {}).get("dtype", DEFAULT_SETTING)
    if setting not in DTYPE_SETTINGS:
        raise PipelineError(f"params.yaml: backbone.dtype must be one of {', '.join(DTYPE_SETTINGS)}, got {setting!r}")
    return setting


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX-BF16 tiles or AVX512-BF16), as oneDNN uses them."""
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private but stable since torch 2.3
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def native_bf16(device: torch.device | str) -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def resolve_dtype(setting: str, device: torch.device | str, portable: bool = False) -> torch.dtype:
    """The dtype the backbone's weights get on ``device`` under ``setting``; ``portable`` (params
    ``numerics.cpu_math: portable``) keeps ``auto`` at float32 on every CPU, since bf16 there follows the CPU."""
    if setting not in DTYPE_SETTINGS:
        raise PipelineError(f"backbone.dtype must be one of {', '.join(DTYPE_SETTINGS)}, got {setting!r}")
    if setting == "auto":
        on_cpu = torch.device(device).type == "cpu"
        return torch.bfloat16 if native_bf16(device) and not (portable and on_cpu) else torch.float32
    return DTYPES[setting]


def attention_implementation(dtype: torch.dtype, device: torch.device | str) -> str | None:
    """The attention kernel for weights of ``dtype`` on ``device``: ``eager`` for bf16 on a CPU, else None
    (transformers' default, SDPA). On a CPU, SDPA's bf16 backward (its flash kernel) took 0.69 s of a 3.3 s prompt-
    tuning step against 0.29 s in fp32 (benchmarks/p8_profile.py, SmolLM2, 84 tokens, Zen 4 with AVX512-BF16), while
    eager attention's products are plain bf16 matmuls, which oneDNN runs natively. fp32 keeps SDPA, so its bytes
    (and the golden digest) stay as they were."""
    return "eager" if dtype == torch.bfloat16 and torch.device(device).type == "cpu" else None


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` / ``bfloat16``: the name artifacts and reports record."""
    return str(dtype).removeprefix("torch.")
