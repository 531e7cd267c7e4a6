"""What every stage script shares: its argv checked, params.yaml checked, quiet threads, one-line user errors, a
summary line."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from pipeline.config.params import TRACKED
from pipeline.config.schema import load_params
from pipeline.errors import PipelineError


def run_stage(name: str, main: Callable[[list[str]], str]) -> None:
    """Run ``main(argv)`` as stage ``name``: print its summary line, or ``error: ...`` and exit 1.

    ``main`` returns one summary line (what it trained, the metric, where the output went); only the first
    process of a multi-process launch prints it.
    User errors (:class:`PipelineError`) print one line without a traceback; bugs keep theirs.
    """
    # Busy-waiting OpenMP threads make two threads on a shared core ~10x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    try:
        summary = main(sys.argv[1:])
    except PipelineError as exc:
        print(f"error: {name}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    # Under a multi-process launcher (torchrun, accelerate launch) every process runs the stage; one reports.
    if os.environ.get("RANK", "0") == "0":
        print(f"[{name}] {summary} ({time.perf_counter() - started:.1f} s)")


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

            apply_numerics(params.numerics)
        return flow(params, *argv)

    return main
