"""What every stage script shares: its argv checked, params.yaml checked, quiet threads, one-line user errors (a
full disk among them), SIGTERM and Ctrl-C as one line and exit status 143 / 130, a summary line."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from pipeline.config.params import TRACKED
from pipeline.config.schema import load_params
from pipeline.errors import PipelineError
from pipeline.store.gpu_slots import claim_gpu
from pipeline.store.interrupts import Stopped, raise_on_stop_signals
from pipeline.store.room import room_reason


def run_stage(name: str, main: Callable[[list[str]], str]) -> None:
    """Run ``main(argv)`` as stage ``name``: print its summary line, or ``error: ...`` and exit 1.

    ``main`` returns one summary line (what it trained, the metric, where the output went); only the first
    process of a multi-process launch prints it.
    User errors (:class:`PipelineError`) print one line without a traceback; bugs keep theirs.
    """
    # Busy-waiting OpenMP threads make two threads on a shared core ~10x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise_on_stop_signals()  # so that a stop unwinds: temporaries removed, outputs and checkpoint as they were
    started = time.perf_counter()
    try:
        summary = main(sys.argv[1:])
    except Stopped as exc:
        print(f"stopped: {name}: {exc.signal_name}; outputs left as they were, a rerun resumes from the last "
              "checkpoint (if one was written)", file=sys.stderr)
        raise SystemExit(exc.exit_status) from None
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise  # a bug: keep the traceback
        print(f"error: {name}: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    # Under a multi-process launcher (torchrun, accelerate launch) every process runs the stage; one reports.
    if os.environ.get("RANK", "0") == "0":
        print(f"[{name}] {summary} ({time.perf_counter() - started:.1f} s)")


def user_error(exc: Exception) -> str | None:
    """The one line for a user's problem: a :class:`PipelineError`, or a write anywhere that found no room (the
    atomic writes name their file; another write, e.g. a scratch file, names its own if it knows it)."""
    if isinstance(exc, PipelineError):
        return str(exc)
    reason = room_reason(exc)
    if reason is None:
        return None
    return f"{getattr(exc, 'filename', None) or 'a scratch file'}: not written: {reason}, then rerun"


def stage_main(name: str, flow: Callable[..., str], *args: str) -> Callable[[list[str]], str]:
    """``main(argv)`` of ``python -m stages.<name>``: ``argv`` holds ``args`` (as named in the usage line), and
    ``flow`` gets the checked, typed params.yaml (config.schema.Params) and them, and returns the summary line.
    A stage that tracks ``numerics`` (the training stages) first pins its threads and math paths to them."""

    def main(argv: list[str]) -> str:
        if len(argv) != len(args):
            raise PipelineError(" ".join(["usage: python -m", f"stages.{name}", *(f"<{arg}>" for arg in args)]))
        params = load_params()
        if "numerics" in TRACKED.get(name, ()):  # a training stage: its bytes follow numerics, not the environment
            from pipeline.model.numerics import apply_numerics  # here, so that data@ and report never load torch

            claim_gpu()  # under `python -m pipeline fanout` on several GPUs: its own one, before CUDA starts
            apply_numerics(params.numerics)
        return flow(params, *argv)

    return main
