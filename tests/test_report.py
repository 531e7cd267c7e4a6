"""The comparison report on known inputs: collecting runs, intervals, the verdict in words, the outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from pipeline.layout import AdaptRun, run_dir, timing_file
from pipeline.report.summary import summarize
from pipeline.errors import PipelineError
from pipeline.report.build import (
    RUN_COLUMNS, SOURCE_COLUMNS, collect_histories, collect_runs, collect_sources, metrics_summary, write_report,
)
from pipeline.report.markdown import render_markdown
from pipeline.flows import report as report_flow
from stages import report as stage
from tiny import full_params

SEEDS = [0, 1, 2]
SOURCES = ["trec", "boolq", "mnli"]
# (target, k) -> method -> test accuracy per seed 0, 1, 2.
# amazon_sentiment, k=all: mpt - pt = 0.04, 0.05, 0.01 -> mean +3.3 points, interval [-1.8, +8.5]: not significant.
# rte, k=all: mpt - pt = -0.03, -0.05, -0.04 -> mean -4.0 points, interval [-6.5, -1.5]: significant, pt wins.
ACCURACY = {
    ("amazon_sentiment", "all"): {"mpt": [0.72, 0.75, 0.75], "pt": [0.68, 0.70, 0.74]},
    ("rte", "all"): {"mpt": [0.58, 0.57, 0.59], "pt": [0.61, 0.62, 0.63]},
    ("rte", 4): {"mpt": [0.55, 0.52, 0.50], "pt": [0.50, 0.50, 0.51]},
}
MCC_TARGETS = {"amazon_sentiment"}  # the task that asks for MCC
TEACHER = {"trec": 0.91, "boolq": 0.74, "mnli": 0.66}
STUDENT = {"trec": 0.89, "boolq": 0.75, "mnli": 0.62}


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _split(accuracy: float) -> dict[str, float]:
    return {"accuracy": accuracy, "macro_f1": round(accuracy - 0.01, 6), "loss": 0.6}


def plan(accuracy: dict = ACCURACY, seeds: list[int] = SEEDS) -> list[AdaptRun]:
    return [AdaptRun(t, m, s, k) for (t, k), methods in accuracy.items() for m in methods for s in seeds]


def write_runs(root: Path, accuracy: dict = ACCURACY, seeds: list[int] = SEEDS) -> None:
    """adapt@ stage outputs for ``accuracy``: per run metrics.json and history.json, per stage a timing file."""
    timings: dict[Path, dict] = {}
    for run in plan(accuracy, seeds):
        value = accuracy[(run.target, run.k)][run.method][run.seed]
        test = _split(value) | ({"mcc": round(2 * value - 1, 6)} if run.target in MCC_TARGETS else {})
        _write_json(run_dir(run, root) / "metrics.json", {
            "target": run.target, "method": run.method, "seed": run.seed, "k": run.k,
            "dev": _split(value + 0.012345), "test": test,
            "trainable_params": 596 if run.method == "mpt" else 11520, "steps": 60, "majority_rate": 0.5,
        })
        _write_json(run_dir(run, root) / "history.json", [{"step": s, "loss": 1.0 / (s + 1)} for s in range(20)])
        timings.setdefault(timing_file(run.target, run.method, run.seed, root), {})[f"k{run.k}"] = {
            "train_seconds": 123.456789 if run.method == "pt" else 61.728394  # mpt: half pt's time per step
        }
    for path, data in timings.items():
        _write_json(path, data)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """results/ with adapt runs (2 targets, k = 4 and all, 2 methods, 3 seeds), 3 teachers, the student, junk."""
    root = tmp_path / "results"
    write_runs(root)
    for task, accuracy in TEACHER.items():
        _write_json(root / "source" / task / "metrics.json", {"task": task, "dev": _split(accuracy),
                                                               "test": _split(accuracy)})
    _write_json(root / "distill" / "metrics.json", {
        "tasks": {task: {"dev": _split(acc), "test": _split(acc)} for task, acc in STUDENT.items()},
    })
    # Outputs of a removed method, seed and target: the report must not pick them up.
    _write_json(root / "adapt" / "rte-lora" / "seed0" / "kall" / "metrics.json", {"method": "lora"})
    _write_json(root / "adapt" / "rte-mpt" / "seed9" / "kall" / "metrics.json", {"seed": 9})
    (root / "adapt" / "old_target-mpt").mkdir(parents=True)
    return root


@pytest.fixture
def report_dir(results: Path, tmp_path: Path) -> Path:
    out = tmp_path / "reports"
    runs = plan()
    write_report(collect_runs(results, runs), collect_sources(results, SOURCES), collect_histories(results, runs), out)
    return out


def test_collect_runs_reads_only_planned_runs(results: Path) -> None:
    runs = collect_runs(results, plan())
    assert list(runs.columns) == RUN_COLUMNS + ["mcc", "majority_rate"]
    assert len(runs) == 3 * 2 * 3
    assert "lora" not in set(runs["method"]) and set(runs["seed"]) == {0, 1, 2}
    rte_mpt = runs[(runs["target"] == "rte") & (runs["method"] == "mpt")]
    assert list(rte_mpt["k"]) == ["4"] * 3 + ["all"] * 3  # numbers first, then all
    assert runs["mcc"].notna().tolist() == (runs["target"] == "amazon_sentiment").tolist()


def test_any_methods_extras_become_columns_and_a_section_of_their_own(results: Path, tmp_path: Path) -> None:
    """A method's scalar ``<method>_<name>`` metrics (Built.extras) are shown without the report naming the method."""
    for run in plan():
        path = run_dir(run, results) / "metrics.json"
        metrics = json.loads(path.read_text())
        if run.method == "pt":  # pretend pt reported a choice and a count, as spot and cpt do
            metrics |= {"pt_choice": f"src{run.seed}", "pt_tokens": 12, "pt_scores": {"src0": 0.5}}
        path.write_text(json.dumps(metrics))
    runs = collect_runs(results, plan())
    assert list(runs.columns)[-2:] == ["pt_choice", "pt_tokens"]  # nested values stay in metrics.json only
    out = tmp_path / "reports"
    write_report(runs, collect_sources(results, SOURCES), collect_histories(results, plan()), out)
    text = (out / "transfer.md").read_text(encoding="utf-8")
    assert "## pt: what each run reports besides its scores" in text and "## mpt: what" not in text
    assert "| rte | all | 2 | src2 | 12 |" in text


def test_summary_means_intervals_and_paired_differences(results: Path) -> None:
    summary = summarize(collect_runs(results, plan())).set_index(["target", "k", "method"])
    mpt = summary.loc[("amazon_sentiment", "all", "mpt")]
    assert mpt["seeds"] == 3
    assert mpt["accuracy"] == pytest.approx(0.74)
    # s = 0.017321, s/√3 = 0.01, × t(0.975, 2) = 4.302653
    assert mpt["accuracy_ci95"] == pytest.approx(0.043027, abs=1e-6)
    # differences 0.04, 0.05, 0.01: mean 0.033333, s = 0.020817, s/√3 = 0.012019, × 4.302653 = 0.051711
    assert mpt["accuracy_vs_pt"] == pytest.approx(0.033333, abs=1e-6)
    assert mpt["accuracy_vs_pt_ci95"] == pytest.approx(0.051711, abs=1e-6)
    assert mpt["mcc"] == pytest.approx(0.48)
    assert pd_isna(summary.loc[("amazon_sentiment", "all", "pt"), "accuracy_vs_pt"])  # pt against itself
    assert pd_isna(summary.loc[("rte", "all", "mpt"), "mcc"])  # rte did not ask for MCC
    assert list(summary.loc["rte"].index.get_level_values("k").unique()) == ["4", "all"]


def pd_isna(value) -> bool:
    return value != value  # NaN is the only value unequal to itself


def test_verdict_says_who_wins_by_how_much_and_whether_it_is_significant(report_dir: Path) -> None:
    text = (report_dir / "transfer.md").read_text(encoding="utf-8")
    assert (
        "- **amazon_sentiment**, k=all, 3 seeds: **mpt** has the best mean test accuracy, 0.7400 ± 0.0430. "
        "Against pt, seed by seed: mpt +3.3 points [-1.8, +8.5], not significant (the interval contains 0)."
    ) in text
    assert (
        "- **rte**, k=all, 3 seeds: **pt** has the best mean test accuracy, 0.6200 ± 0.0248. "
        "Against pt, seed by seed: mpt -4.0 points [-6.5, -1.5], significant."
    ) in text
    assert "- **rte**, k=4, 3 seeds:" in text
    assert text.index("**rte**, k=4") < text.index("**rte**, k=all")
    assert "How to read this" in text and "95% confidence interval" in text


def test_cost_table_gives_seconds_per_step_and_the_ratio_to_pt(report_dir: Path) -> None:
    text = (report_dir / "transfer.md").read_text(encoding="utf-8")
    section = text.split("## Cost per method")[1].split("##")[0]
    # 60 steps: pt 123.456789 s -> 2.058 s/step; mpt half of it; 9 runs each (3 target/k pairs x 3 seeds).
    assert "| mpt | 596 | 9 | 1.029 | 0.50 |" in section
    assert "| pt | 11,520 | 9 | 2.058 | 1.00 |" in section
    assert section.index("| mpt |") < section.index("| pt |")  # cheapest first


def test_one_seed_says_there_is_no_interval(results: Path, tmp_path: Path) -> None:
    runs = collect_runs(results, plan(seeds=[0]))
    text = render_markdown(runs, summarize(runs), collect_sources(results, SOURCES))
    assert (
        "- **amazon_sentiment**, k=all, n=1 (one seed, no interval): **mpt** has the best mean test accuracy, "
        "0.7200 (n=1). Against pt, seed by seed: mpt +4.0 points (n=1, no interval)."
    ) in text
    metrics = metrics_summary(summarize(runs))
    assert "accuracy_ci95" not in metrics["amazon_sentiment"]["mpt"]  # no interval, no key


def test_runner_up_other_than_the_baseline_is_compared_too(results: Path, tmp_path: Path) -> None:
    accuracy = {("t", "all"): {"a": [0.80, 0.82, 0.84], "b": [0.79, 0.80, 0.81], "pt": [0.60, 0.61, 0.62]}}
    write_runs(tmp_path / "r", accuracy)
    runs = collect_runs(tmp_path / "r", plan(accuracy))
    text = render_markdown(runs, summarize(runs), collect_sources(results, SOURCES))
    # a - b = 0.01, 0.02, 0.03: mean +2.0 points, half-width 4.3027 · 0.01 / √3 = 2.5 points
    assert "**a** has the best mean test accuracy, 0.8200 ± 0.0497; it leads b by +2.0 points [-0.5, +4.5]" in text
    assert "Against pt, seed by seed: a +21.0 points" in text and "; b +19.0 points" in text


def test_metrics_json_is_flat_per_target_and_k(report_dir: Path) -> None:
    metrics = json.loads((report_dir / "metrics.json").read_text(encoding="utf-8"))
    assert sorted(metrics) == ["amazon_sentiment", "mean", "mean@k4", "rte", "rte@k4"]
    mpt = metrics["amazon_sentiment"]["mpt"]
    assert mpt["accuracy"] == 0.74 and mpt["accuracy_ci95"] == 0.043 and mpt["seeds"] == 3
    assert mpt["accuracy_vs_pt"] == 0.0333 and mpt["accuracy_vs_pt_ci95"] == 0.0517
    assert mpt["mcc"] == 0.48 and mpt["trainable_params"] == 596
    assert "accuracy_vs_pt" not in metrics["rte"]["pt"] and "mcc" not in metrics["rte"]["pt"]
    assert metrics["mean"]["pt"] == {"accuracy": 0.6633, "macro_f1": 0.6533}  # (0.7067 + 0.62) / 2


def test_csvs_rows_columns_and_rounding(report_dir: Path) -> None:
    with (report_dir / "transfer.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == RUN_COLUMNS + ["mcc", "majority_rate"]
    first = rows[0]  # amazon_sentiment, mpt, k=all, seed 0
    assert (first["target"], first["method"], first["k"], first["seed"]) == ("amazon_sentiment", "mpt", "all", "0")
    assert first["dev_accuracy"] == "0.7323" and first["train_seconds"] == "61.7284"
    with (report_dir / "summary.csv").open(encoding="utf-8", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert len(summary) == 6 and summary[0]["accuracy_ci95"] == "0.043"


def test_pngs_are_valid_and_deterministic(results: Path, report_dir: Path, tmp_path: Path) -> None:
    for name in ("transfer.png", "curves.png"):
        data = (report_dir / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in data
    again = tmp_path / "again"
    runs = plan()
    write_report(collect_runs(results, runs), collect_sources(results, SOURCES), collect_histories(results, runs), again)
    assert {p.name: p.read_bytes() for p in report_dir.iterdir()} == {p.name: p.read_bytes() for p in again.iterdir()}


def test_no_temp_files_left(report_dir: Path) -> None:
    assert sorted(p.name for p in report_dir.iterdir()) == [
        "curves.png", "dev_curves.png", "metrics.json", "summary.csv", "transfer.csv", "transfer.md", "transfer.png",
    ]


def test_collect_sources_pairs_teacher_and_student(results: Path) -> None:
    sources = collect_sources(results, SOURCES)
    assert list(sources.columns) == SOURCE_COLUMNS
    by_task = sources.set_index("task")
    for task in SOURCES:
        assert by_task.loc[task, "teacher_accuracy"] == TEACHER[task]
        assert by_task.loc[task, "student_accuracy"] == STUDENT[task]


def test_missing_run_names_file_and_stage(results: Path) -> None:
    (results / "adapt" / "rte-mpt" / "seed1" / "k4" / "metrics.json").unlink()
    with pytest.raises(PipelineError, match=r"adapt/rte-mpt/seed1/k4/metrics\.json.*adapt@rte-mpt-1"):
        collect_runs(results, plan())


def test_missing_history_names_the_stage(results: Path) -> None:
    (results / "adapt" / "rte-pt" / "seed2" / "kall" / "history.json").unlink()
    with pytest.raises(PipelineError, match=r"seed2/kall/history\.json: not found.*adapt@rte-pt-2"):
        collect_histories(results, plan())


def test_missing_student_task_names_key(results: Path) -> None:
    # A teacher exists for sst2 but the student was distilled before sst2 joined source_tasks.
    _write_json(results / "source" / "sst2" / "metrics.json", {"task": "sst2", "test": _split(0.8)})
    with pytest.raises(PipelineError, match=r"distill/metrics\.json: missing key tasks\.sst2"):
        collect_sources(results, SOURCES + ["sst2"])


def test_stage_main_summary(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {
        "source": {"kind": "file", "path": "raw.csv", "format": "csv"},
        "columns": {"text": "text", "label": "label"},
        "template": "{text}",
        "label_words": {"a": " positive", "b": " negative"},
        "splits": {"train": 10, "dev": 2, "test": 2},
    }
    tasks = {name: dict(spec) for name in ["rte", "amazon_sentiment"] + SOURCES}
    tasks["rte"]["k_shot"] = [4, "all"]
    tasks["amazon_sentiment"]["metrics"] = ["mcc"]
    params = full_params(tasks, SOURCES, ["rte", "amazon_sentiment"])
    params["adapt"]["methods"], params["seeds"] = ["pt", "mpt"], SEEDS
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report_flow, "overlap_warnings", lambda targets, sources: [])  # no prepared data here
    summary = stage.main([])
    # At each target's largest k (all): mpt (0.74 + 0.58) / 2, pt (0.7067 + 0.62) / 2.
    assert summary == (
        "18 runs over 2 targets -> reports/transfer.md (mean test accuracy at the largest k: mpt 0.660, pt 0.663)"
    )
    assert (tmp_path / "reports" / "metrics.json").is_file()


def test_error_bars_are_drawn_within_the_metric_range() -> None:
    from matplotlib.container import ErrorbarContainer

    from pipeline.report.charts import grouped_bars, panel_grid

    _, (ax,) = panel_grid(1, (3.0, 3.0))
    grouped_bars(ax, ["k=all"], {"a": [0.65], "b": [0.95]}, {"a": [0.73], "b": [0.02]}, {"a": "C0", "b": "C1"})
    spans = [
        sorted(point[1] for point in segment)
        for bars in ax.containers
        if isinstance(bars, ErrorbarContainer)
        for segment in bars.lines[2][0].get_segments()
    ]
    assert spans[0] == pytest.approx([0.0, 1.0])  # 0.65 ± 0.73 reaches past both ends: cut at 0 and 1
    assert spans[1] == pytest.approx([0.93, 0.97])  # inside the range: drawn as it is
