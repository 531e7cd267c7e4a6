"""DVC stage `report`: compare target adaptation methods and source teachers vs the distilled student."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# DVC runs `python stages/report.py` from the repo root, which puts stages/ (not the root) on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.adapt_runs import planned_runs  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.params import section  # noqa: E402
from pipeline.report import (  # noqa: E402
    collect_histories, collect_runs, collect_sources, headline_means, write_report,
)
from pipeline.data import PREPARED_DIR, shared_texts  # noqa: E402
from pipeline.schema import load_checked_params  # noqa: E402
from pipeline.stage import run_stage  # noqa: E402

RESULTS_DIR = Path("results")
OUT_DIR = Path("reports")


def _names(params: dict[str, Any], key_path: str) -> list[str]:
    """A non-empty list of task or method names at ``key_path``; anything else names the key."""
    names = section(params, key_path)
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise PipelineError(f"params.yaml: {key_path} must be a non-empty list of names, got {names!r}")
    return names


def _overlap_warnings(targets: list[str], sources: list[str]) -> list[str]:
    """Data hygiene: a target that shares texts with a source task overstates what transfer achieves."""
    warnings = []
    for target in targets:
        for source in sources:
            shared = shared_texts(PREPARED_DIR / target, PREPARED_DIR / source)
            if shared:
                warnings.append(f"target {target} shares {shared} texts with source task {source}")
    return warnings


def main(argv: list[str]) -> str:
    """Write reports/ (transfer.csv/.md/.png, summary.csv, curves.png, metrics.json); return the summary line."""
    params = load_checked_params()
    targets, sources = _names(params, "target_tasks"), _names(params, "source_tasks")
    planned = planned_runs(params)
    runs = collect_runs(RESULTS_DIR, planned)
    warnings = _overlap_warnings(targets, sources)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    histories = collect_histories(RESULTS_DIR, planned)
    summary = write_report(runs, collect_sources(RESULTS_DIR, sources), histories, OUT_DIR, warnings)
    listed = ", ".join(f"{method} {accuracy:.3f}" for method, accuracy in headline_means(summary).items())
    return (
        f"{len(runs)} runs over {len(targets)} targets -> {OUT_DIR / 'transfer.md'} "
        f"(mean test accuracy at the largest k: {listed})"
    )


if __name__ == "__main__":
    run_stage("report", main)
