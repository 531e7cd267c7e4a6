"""The report's baselines and dev-curve metrics on a hand-made set of runs with known curves."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.layout import run_dir
from pipeline.report.build import SOURCE_COLUMNS, collect_dev_curves, collect_histories, collect_runs, write_report
from pipeline.report.curves import AREA, REACH, curve_metrics
from pipeline.report.stats import normalised_area, steps_to_reach
from test_report import plan, write_runs

ACCURACY = {("t", "all"): {"mpt": [0.84, 0.86], "pt": [0.80, 0.90]}}
SEEDS = [0, 1]
# (method, seed) -> dev curve. Mean over seeds: pt (0, .5) (10, .65) (20, .85): the reference is .85, 95% of it
# .8075; mpt (0, .7) (10, .825) (20, .85) reaches it at step 10, pt only at 20.
CURVES = {
    ("pt", 0): [[0, 0.5], [10, 0.6], [20, 0.8]], ("pt", 1): [[0, 0.5], [10, 0.7], [20, 0.9]],
    ("mpt", 0): [[0, 0.7], [10, 0.85], [20, 0.84]], ("mpt", 1): [[0, 0.7], [10, 0.80], [20, 0.86]],
}
ZERO_STEP = {"pt": 0.55, "mpt": 0.72}  # test accuracy of the initial prompt


def test_steps_to_reach_and_normalised_area_on_known_curves():
    curve = [(0, 0.5), (10, 0.65), (20, 0.85)]
    assert steps_to_reach(curve, 0.85) == 20 and steps_to_reach(curve, 0.6) == 10 and steps_to_reach(curve, 0.5) == 0
    assert steps_to_reach(curve, 1.0) is None
    assert normalised_area(curve) == pytest.approx((5.75 + 7.5) / 20)
    assert normalised_area([(0, 0.7)]) == 0.7


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_runs(root, ACCURACY, SEEDS)
    for run in plan(ACCURACY, SEEDS):
        path = run_dir(run, root) / "metrics.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        curve = CURVES[(run.method, run.seed)]
        best = max(a for _, a in curve)
        data.update(dev_curve=curve, select="best_dev", selected_step=next(s for s, a in curve if a == best),
                    zero_step={"dev": curve[0][1], "test": ZERO_STEP[run.method]}, template_accuracy=0.6)
        path.write_text(json.dumps(data), encoding="utf-8")
    return root


def test_curve_metrics_use_the_mean_of_pts_final_dev_as_reference(results: Path):
    metrics = curve_metrics(collect_dev_curves(results, plan(ACCURACY, SEEDS))).set_index("method")
    assert metrics.loc["pt", "dev_reference"] == pytest.approx(0.85) == metrics.loc["mpt", "dev_reference"]
    assert metrics.loc["mpt", REACH] == 10 and metrics.loc["pt", REACH] == 20
    assert metrics.loc["mpt", AREA] == pytest.approx((7.625 + 8.375) / 20)
    assert metrics.loc["pt", AREA] == pytest.approx((5.75 + 7.5) / 20)
    assert metrics.loc["mpt", "dev_zero_step"] == pytest.approx(0.7)


def test_report_shows_baselines_dev_curves_and_the_checkpoint_rule(results: Path, tmp_path: Path):
    runs = plan(ACCURACY, SEEDS)
    table = collect_runs(results, runs)
    assert table["selected_step"].tolist() == [10.0, 20.0, 20.0, 20.0]  # mpt 0, mpt 1, pt 0, pt 1
    out = tmp_path / "reports"
    summary = write_report(table, pd.DataFrame(columns=SOURCE_COLUMNS), collect_histories(results, runs), out,
                           curves=collect_dev_curves(results, runs))
    mpt = summary.set_index("method").loc["mpt"]
    assert mpt["zero_step_accuracy"] == pytest.approx(0.72) and mpt["template_accuracy"] == 0.6
    assert mpt[REACH] == 10
    text = (out / "transfer.md").read_text(encoding="utf-8")
    assert "Test scores come from the best-dev checkpoint" in text
    assert "| t | all | mpt | 0.5000 | 0.6000 | 0.7200 | 0.8500 | +13.0 |" in text  # majority, template, zero, trained
    assert "| t | all | mpt | 0.7000 | 0.8500 | 0.8500 | 0.8500 | 10 | 0.8000 |" in text
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["t"]["mpt"][REACH] == 10 and metrics["t"]["pt"][AREA] == 0.6625
    assert metrics["t"]["mpt"]["zero_step_accuracy"] == 0.72
    assert metrics["t"]["baselines"] == {"majority_rate": 0.5, "template_accuracy": 0.6}
    assert (out / "dev_curves.png").read_bytes().startswith(b"\x89PNG")
    summary_csv = (out / "summary.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert {"zero_step_accuracy", "template_accuracy", "majority_rate", REACH, AREA} <= set(summary_csv)
