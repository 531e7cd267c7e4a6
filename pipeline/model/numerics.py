"""How a training stage's process computes on CPU, pinned from params ``numerics`` before its first tensor operation.

Besides its inputs, three things change a CPU result's bytes (measured on an AMD EPYC Zen 3 with torch 2.13 and
MKL; the README's "Runs repeat exactly" gives the experiments):

* The intra-op thread count. torch splits a reduction to one value over its threads, and its CPU attention kernel
  hands MKL per-thread buffers whose alignment differs between threads, where MKL outside its CNR mode picks an
  alignment-dependent kernel. ``numerics.threads`` fixes the count, whatever OMP_NUM_THREADS says.
* MKL's code path. Outside CNR mode it follows the CPU, its cache sizes and the data's alignment; MKL_CBWR=AUTO fixes
  the last two (and is as fast), COMPATIBLE fixes all three (one SSE2 branch for Intel and AMD) at about 3x the
  matmul time.
* torch's own kernels (DEFAULT, AVX2 or AVX512 vector code, picked per CPU): ATEN_CPU_CAPABILITY pins them.

Inter-op threads and ``torch.use_deterministic_algorithms`` change nothing on CPU here (measured), so they are left
alone; GPU kernels are not covered (byte-identical reruns are promised on CPU only).
"""

from __future__ import annotations

import os

import torch

from pipeline.config.params import NumericsSettings
from pipeline.errors import PipelineError

MKL_BRANCH = {"native": "AUTO", "portable": "COMPATIBLE"}
PORTABLE_KERNELS = "AVX2"  # torch's kernel set under portable: every x86-64 CPU since Haswell (2013) and Zen (2017)


def apply_numerics(settings: NumericsSettings) -> None:
    """Pin this process's threads and math paths to ``settings``, overriding the environment's variables.

    Call it before any tensor operation: MKL reads its variables at its first call, and torch picks its kernel set
    at its first dispatch; importing torch, transformers and the pipeline does neither (tests/test_numerics.py).
    """
    os.environ["MKL_CBWR"] = MKL_BRANCH[settings.cpu_math]
    os.environ["MKL_DYNAMIC"] = "FALSE"  # Intel's reproducibility conditions: MKL may not drop threads on its own
    if settings.cpu_math == "portable":
        os.environ["ATEN_CPU_CAPABILITY"] = PORTABLE_KERNELS.lower()
    else:
        os.environ.pop("ATEN_CPU_CAPABILITY", None)  # native: this CPU's own kernels, not an inherited override
    torch.set_num_threads(settings.threads)
    if settings.cpu_math == "portable":
        _check_portable()


def _check_portable() -> None:
    """Refuse a machine where ``portable`` cannot hold: no MKL (its COMPATIBLE branch is what makes matmuls the same
    everywhere) or no AVX2 kernels."""
    kernels = torch.backends.cpu.get_cpu_capability()
    lacking = []
    if not torch.backends.mkl.is_available():
        lacking.append("a torch built with MKL")
    if kernels != PORTABLE_KERNELS:
        lacking.append(f"torch's {PORTABLE_KERNELS} kernels (an x86-64 CPU with AVX2; this one runs {kernels})")
    if lacking:
        raise PipelineError(
            f"params.yaml: numerics.cpu_math: portable needs {' and '.join(lacking)}; set numerics.cpu_math to native"
        )
