"""Dev-curve metrics per (target, k, method): how fast and how well a method gets to pt's final dev accuracy.

Input: one row per evaluated point of every run (target, method, k, seed, step, accuracy), from the ``dev_curve``
of each run's metrics.json. A method's curve is the mean over its seeds at each evaluated step (every method of a
report is evaluated at the same steps). The reference is pt's final dev accuracy, mean over pt's seeds, of the same
target and k; *steps to 95 %* is the first evaluated step of the mean curve at or above 0.95 × that reference (NaN:
not reached within the budget, or no pt run), *area* the trapezoid area under the mean curve over its step span.
"""

from __future__ import annotations

import math

import pandas as pd

from pipeline.layout import k_order
from pipeline.report.stats import normalised_area, steps_to_reach
from pipeline.report.summary import BASELINE

CURVE_COLUMNS = ["target", "method", "k", "seed", "step", "accuracy"]
FRACTION = 0.95  # of the reference: "reached pt's level", allowing for the noise of a 100-example dev split
REACH = "dev_steps_to_95pt"  # a summary column: steps to FRACTION of pt's final dev accuracy
AREA = "dev_area"  # a summary column: normalised area under the dev curve (its mean accuracy over the run)
METRIC_COLUMNS = ["target", "k", "method", "dev_zero_step", "dev_final", "dev_best", "dev_reference", REACH, AREA]


def mean_curves(curves: pd.DataFrame) -> dict[tuple[str, str, str], list[tuple[int, float]]]:
    """(target, k, method) -> the dev curve averaged over seeds, [(step, accuracy)] by step."""
    means = curves.groupby(["target", "k", "method", "step"], sort=True)["accuracy"].mean()
    out: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for (target, k, method, step), accuracy in means.items():
        out.setdefault((target, k, method), []).append((int(step), float(accuracy)))
    return out


def curve_metrics(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (target, k, method) with a curve: :data:`METRIC_COLUMNS`, sorted by target, k, method."""
    if curves.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    means = mean_curves(curves)
    rows = []
    for (target, k, method), curve in means.items():
        baseline = means.get((target, k, BASELINE))
        reference = baseline[-1][1] if baseline else math.nan
        reached = None if math.isnan(reference) else steps_to_reach(curve, reference, FRACTION)
        rows.append({
            "target": target, "k": k, "method": method, "dev_zero_step": curve[0][1] if curve[0][0] == 0 else math.nan,
            "dev_final": curve[-1][1], "dev_best": max(a for _, a in curve), "dev_reference": reference,
            REACH: math.nan if reached is None else float(reached), AREA: normalised_area(curve),
        })
    table = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    order = table.assign(_k=table["k"].map(k_order)).sort_values(["target", "_k", "method"], kind="stable")
    return order.drop(columns="_k").reset_index(drop=True)
