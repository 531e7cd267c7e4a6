"""One GPU per running training stage when `python -m pipeline fanout` runs several at once. Torch-free.

DVC's queue workers all inherit one environment, so a worker cannot be given its own CUDA_VISIBLE_DEVICES. Instead
`fanout` names the GPUs to share (``PIPELINE_GPUS``, e.g. ``0,1,2,3``) and a folder of lock files
(``PIPELINE_GPU_LOCKS``); each training stage takes the first GPU whose lock is free and keeps it for its lifetime.
The lock is an ``flock``: the kernel drops it when the process ends, however it ends, so a killed stage frees its
GPU. With neither variable set (a plain `dvc repro`, a launcher such as torchrun) nothing changes.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import MutableMapping
from pathlib import Path

GPUS_VAR = "PIPELINE_GPUS"
LOCKS_VAR = "PIPELINE_GPU_LOCKS"

_held: list[int] = []  # the claimed lock's descriptor, open until this process exits


def claim_gpu(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Pin this process to a free GPU of ``PIPELINE_GPUS`` (CUDA_VISIBLE_DEVICES) and return its id, or None.

    Call it before CUDA is first touched. All taken (more stages at once than GPUs): wait for one, picked by the
    process id so that waiters spread over the GPUs.
    """
    gpus = [gpu.strip() for gpu in environ.get(GPUS_VAR, "").split(",") if gpu.strip()]
    folder = environ.get(LOCKS_VAR)
    if not gpus or not folder or "RANK" in environ:  # a multi-process launcher assigns devices itself
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    for gpu in gpus:
        fd = os.open(Path(folder) / f"gpu-{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return _pin(environ, gpu, fd)
    gpu = gpus[os.getpid() % len(gpus)]
    fd = os.open(Path(folder) / f"gpu-{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return _pin(environ, gpu, fd)


def _pin(environ: MutableMapping[str, str], gpu: str, fd: int) -> str:
    _held.append(fd)
    environ["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu
