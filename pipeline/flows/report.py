"""Stage ``report``: compare target adaptation methods, and source teachers against the distilled student."""

from __future__ import annotations

import sys

from pipeline.config.schema import Params
from pipeline.data.prepared import shared_texts
from pipeline.layout import REPORTS_DIR, RESULTS_DIR, planned_runs, prepared_dir
from pipeline.report.build import (
    collect_dev_curves, collect_histories, collect_runs, collect_sources, headline_means, write_report,
)


def overlap_warnings(targets: list[str], sources: list[str]) -> list[str]:
    """Data hygiene: a target that shares texts with a source task overstates what transfer achieves."""
    warnings = []
    for target in targets:
        for source in sources:
            shared = shared_texts(prepared_dir(target), prepared_dir(source))
            if shared:
                warnings.append(f"target {target} shares {shared} texts with source task {source}")
    return warnings


def run(params: Params) -> str:
    """Write reports/ (transfer.csv/.md/.png, summary.csv, curves.png, dev_curves.png, metrics.json); return the
    summary line."""
    targets, sources = list(params.target_tasks), list(params.source_tasks)
    planned = planned_runs(params)
    runs = collect_runs(RESULTS_DIR, planned)
    warnings = overlap_warnings(targets, sources)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    histories = collect_histories(RESULTS_DIR, planned)
    curves = collect_dev_curves(RESULTS_DIR, planned)
    summary = write_report(runs, collect_sources(RESULTS_DIR, sources), histories, REPORTS_DIR, warnings, curves)
    listed = ", ".join(f"{method} {accuracy:.3f}" for method, accuracy in headline_means(summary).items())
    return (
        f"{len(runs)} runs over {len(targets)} targets -> {REPORTS_DIR / 'transfer.md'} "
        f"(mean test accuracy at the largest k: {listed})"
    )
