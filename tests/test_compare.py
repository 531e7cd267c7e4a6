"""`python -m pipeline compare` on a saved `dvc exp show --json` (DVC 3.67: a queued sweep, a failed and a queued
experiment, one run directly)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.cli.compare import changed_params, collect_experiments, read_exp_show
from pipeline.errors import PipelineError

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "exp_show.json"


def test_rows_are_the_experiments_with_a_result_of_their_own():
    rows, skipped = collect_experiments(read_exp_show(FIXTURE))
    assert [row.name for row in rows] == ["workspace", "master", "waiting", "nolambda", "rank-2", "rank-1", "rank2"]
    # DVC shows a failed experiment with its baseline's metrics; it must not pass for its own result.
    assert skipped == ["later (queued)", "broken (failed)"]
    assert rows[4].params["distill.rank"] == 8 and rows[4].metrics["mean"]["mpt"]["accuracy"] == 0.78


def test_changed_params_are_the_ones_that_differ():
    rows, _ = collect_experiments(read_exp_show(FIXTURE))
    assert changed_params(rows) == ["adapt.steps", "distill.lambda", "distill.rank"]


def test_command_writes_table_csv_and_chart(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--from", str(FIXTURE), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("7 experiments (3 changed params, 2 skipped) ->")
    text = (out / "compare.md").read_text(encoding="utf-8")
    header = "| experiment | adapt.steps | distill.lambda | distill.rank | mean.mpt | mean.pt | tgt_a.mpt | tgt_a.pt |"
    assert header in text
    assert "| rank-2 | 60 | 0.9 | 8 | 0.7800 | 0.6600 | 0.7800 ± 0.0310 | 0.6600 ± 0.0500 |" in text
    assert "Not compared (no result of their own): later (queued), broken (failed)." in text
    with (out / "compare.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["experiment"] for row in rows][:3] == ["workspace", "master", "waiting"]
    assert rows[4]["tgt_a@k4.mpt"] == "0.68" and rows[4]["tgt_a@k4.mpt_ci95"] == "0.08"
    png = (out / "compare.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Software" not in png


def test_another_metric(tmp_path):
    assert main(["compare", "--from", str(FIXTURE), "--out", str(tmp_path), "--metric", "accuracy_vs_pt"]) == 0
    text = (tmp_path / "compare.md").read_text(encoding="utf-8")
    assert "| experiment | adapt.steps | distill.lambda | distill.rank | tgt_a.mpt |" in text  # only mpt has it


def test_unknown_metric_and_bad_input_are_one_line_errors(tmp_path, capsys):
    assert main(["compare", "--from", str(FIXTURE), "--out", str(tmp_path), "--metric", "auc"]) == 1
    assert "no experiment reports 'auc'" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert main(["compare", "--from", str(broken), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {broken}: not JSON")
    broken.write_text(json.dumps({"rev": "workspace"}), encoding="utf-8")
    with pytest.raises(PipelineError, match="expected a list of baselines"):
        read_exp_show(broken)


def test_no_experiment_with_metrics(tmp_path):
    shown = json.loads(FIXTURE.read_text(encoding="utf-8"))
    for baseline in shown:
        baseline["data"]["metrics"] = {}
        baseline["experiments"] = None
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(shown), encoding="utf-8")
    assert main(["compare", "--from", str(path), "--out", str(tmp_path)]) == 1
