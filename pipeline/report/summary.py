"""Per (target, k, method): scores as mean ± 95% interval over seeds, and the paired difference to the baseline.

Input is the per-run table of pipeline.report.build (one row per target, method, k, seed); output one row per
(target, k, method) with the columns of :data:`SUMMARY_COLUMNS`. A half-width is NaN where there is one seed
(no interval), a metric NaN where the task did not ask for it (MCC).
"""

from __future__ import annotations

import math

import pandas as pd

from pipeline.layout import k_order
from pipeline.report.stats import Interval, mean_interval, paired_difference

BASELINE = "pt"  # every other method is compared with plain prompt tuning, seed by seed
SCORES = ("accuracy", "macro_f1", "mcc")  # test-split metrics with intervals; mcc only where a task asks
CI = "_ci95"  # suffix of a half-width column
VS = "accuracy_vs_" + BASELINE  # the paired accuracy difference to the baseline (method - baseline)
# What training and transfer each add, mean over seeds: the method's initial prompt (zero steps), the template alone
# (no prompt) and the majority class; NaN where the runs do not report one (made before the dev curves).
BASELINE_COLUMNS = ("zero_step_accuracy", "template_accuracy", "majority_rate")
SUMMARY_COLUMNS = [
    "target", "k", "method", "seeds",
    *(name for score in SCORES for name in (score, score + CI)),
    VS, VS + CI, "trainable_params", *BASELINE_COLUMNS,
]


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (target, k, method), sorted by target, k (numbers, then "all") and method."""
    rows = []
    for (target, k), group in runs.groupby(["target", "k"], sort=False):
        by_method = {method: runs_of.set_index("seed") for method, runs_of in group.groupby("method")}
        baseline = by_method.get(BASELINE)
        for method, seeded in by_method.items():
            row = {"target": target, "k": k, "method": method, "seeds": len(seeded)}
            for score in SCORES:
                row.update(_columns(score, _interval(seeded, score)))
            if baseline is not None and method != BASELINE:
                vs = paired_difference(seeded["accuracy"].to_dict(), baseline["accuracy"].to_dict())
                row.update(_columns(VS, vs))
            # The first seed's count stands for all. Most methods keep their size across seeds; cpt's grows with
            # the drawn context's length, and the report's cost table gives its range over the runs.
            row["trainable_params"] = int(seeded["trainable_params"].iloc[0])
            for column in BASELINE_COLUMNS:
                values = seeded[column].dropna() if column in seeded.columns else []
                row[column] = float(values.mean()) if len(values) else math.nan
            rows.append(row)
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    order = summary.assign(_k=summary["k"].map(k_order)).sort_values(["target", "_k", "method"], kind="stable")
    return order.drop(columns="_k").reset_index(drop=True)


def _interval(seeded: pd.DataFrame, score: str) -> Interval | None:
    """The interval of a score over seeds; None when the runs do not report it (a task without MCC)."""
    if score not in seeded.columns:
        return None
    values = seeded[score].dropna().tolist()
    return mean_interval(values) if values else None


def _columns(name: str, interval: Interval | None) -> dict[str, float]:
    if interval is None:
        return {name: math.nan, name + CI: math.nan}
    half = math.nan if interval.half_width is None else interval.half_width
    return {name: interval.mean, name + CI: half}


def interval(row: pd.Series | tuple, name: str, seeds: int) -> Interval | None:
    """The :class:`Interval` of column ``name`` in a summary row; None when the row has no such value."""
    mean, half = getattr(row, name), getattr(row, name + CI)
    if pd.isna(mean):
        return None
    return Interval(float(mean), None if pd.isna(half) else float(half), seeds)
