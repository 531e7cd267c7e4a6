"""Two CPU processes (gloo) train the same prompt as one process with the same global batch.

`accelerate launch --cpu` hands multi-process CPU runs to mpirun; torchrun is the launcher that needs nothing
else, and accelerate picks up its environment (MULTI_CPU, gloo) all the same.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parent / "dp_train.py"
TOLERANCE = 1e-5  # float summation order differs between one mean over 8 rows and two means over 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def test_two_processes_train_the_same_prompt_as_one(tmp_path):
    run([sys.executable, str(SCRIPT), str(tmp_path / "one")])
    run([
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(SCRIPT), str(tmp_path / "two"),
    ])
    one, two = (load_file(tmp_path / f"{name}.safetensors")["prompt"] for name in ("one", "two"))
    one_log, two_log = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "two"))
    assert (one_log["processes"], two_log["processes"]) == (1, 2)
    assert (one_log["first_batch_rows"], two_log["first_batch_rows"]) == (8, 4)  # the work was split
    assert torch.allclose(one, two, atol=TOLERANCE, rtol=0)
    assert all(abs(a - b) < 1e-4 for a, b in zip(one_log["losses"], two_log["losses"]))
