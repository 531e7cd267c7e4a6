"""DVC stage `report`: compare target adaptation methods and source teachers vs the distilled student."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# DVC runs `python stages/report.py` from the repo root, which puts stages/ (not the root) on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.errors import PipelineError  # noqa: E402
from pipeline.params import section  # noqa: E402
from pipeline.report import collect_runs, collect_sources, mean_by_method, write_report  # noqa: E402
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
    """Write reports/transfer.{csv,md,png} and reports/metrics.json; return the one-line summary."""
    params = load_checked_params()
    targets, sources = _names(params, "target_tasks"), _names(params, "source_tasks")
    runs = collect_runs(RESULTS_DIR, targets, _names(params, "adapt.methods"))
    warnings = _overlap_warnings(targets, sources)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    write_report(runs, collect_sources(RESULTS_DIR, sources), OUT_DIR, warnings)
    means = ", ".join(f"{row.method} {row.accuracy:.3f}" for row in mean_by_method(runs).itertuples(index=False))
    return f"{len(runs)} runs over {len(targets)} targets -> {OUT_DIR / 'transfer.md'} (mean test accuracy: {means})"


if __name__ == "__main__":
    run_stage("report", main)
