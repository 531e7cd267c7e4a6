"""A short tiny training under params ``numerics``, applied as a training stage applies them; prints what it made.

    python tests/numerics_run.py THREADS CPU_MATH

Prints one JSON line: the sha256 of the prompts a tiny causal and a tiny encoder-decoder backbone trained (25 prompt
tuning steps each, test_train's toy task), the intra-op threads, torch's kernel set and MKL's CNR branch in force.
Run in a fresh process (tests/test_numerics.py), since numerics must be pinned before the first tensor operation.
"""

import contextlib
import ctypes
import hashlib
import io
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline.config.params import NumericsSettings  # noqa: E402
from pipeline.model.numerics import apply_numerics  # noqa: E402
from test_train import run_pt  # noqa: E402

MKL_BRANCHES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE"}  # mkl_cbwr_get's MKL_CBWR_OFF, _AUTO, _COMPATIBLE


def mkl_branch() -> str | None:
    """MKL's CNR branch in force, read from MKL itself (None where torch's library does not export it): proof that
    the MKL_CBWR this process set was read, not one MKL had settled on before."""
    try:
        library = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        value = library.mkl_serv_cbwr_get(1)  # MKL_CBWR_BRANCH: the branch part of the mode
    except (OSError, AttributeError):
        return None
    return MKL_BRANCHES.get(value, str(value))


def main() -> None:
    threads, cpu_math = int(sys.argv[1]), sys.argv[2]
    apply_numerics(NumericsSettings(threads=threads, cpu_math=cpu_math))
    digest = hashlib.sha256()
    with contextlib.redirect_stderr(io.StringIO()):  # the progress bars
        for kind in ("causal", "seq2seq"):
            _, _, run = run_pt(kind, seed=3)
            digest.update(run.module.weight.detach().numpy().tobytes())
    print(json.dumps({
        "digest": digest.hexdigest(), "threads": torch.get_num_threads(),
        "kernels": torch.backends.cpu.get_cpu_capability(), "mkl_branch": mkl_branch(),
        "environment_threads": os.environ.get("OMP_NUM_THREADS"),
    }))


if __name__ == "__main__":
    main()
