"""The comparison report: collecting metrics files, the four outputs, determinism and user errors."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from pipeline.errors import PipelineError
from tiny import full_params
from pipeline.report import RUN_COLUMNS, SOURCE_COLUMNS, collect_runs, collect_sources, write_report

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["rte", "amazon_sentiment"]  # deliberately unsorted: outputs must sort them
METHODS = ["pt", "mpt"]
SOURCES = ["trec", "boolq", "mnli"]
# (target, method) -> test accuracy; amazon_sentiment: mpt by 4.0 points, rte: pt by 3.0 points.
TEST_ACCURACY = {
    ("amazon_sentiment", "mpt"): 0.72, ("amazon_sentiment", "pt"): 0.68,
    ("rte", "mpt"): 0.58, ("rte", "pt"): 0.61,
}
MAJORITY = {"amazon_sentiment": 0.55, "rte": 0.5}
TEACHER = {"trec": 0.91, "boolq": 0.74, "mnli": 0.66}
STUDENT = {"trec": 0.89, "boolq": 0.75, "mnli": 0.62}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _split(accuracy: float) -> dict[str, float]:
    return {"accuracy": accuracy, "macro_f1": round(accuracy - 0.01, 6), "loss": 0.6}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """results/ with adapt runs for 2 targets x 2 methods, 3 source teachers, the distill student, and stale junk."""
    root = tmp_path / "results"
    for (target, method), accuracy in TEST_ACCURACY.items():
        _write_json(root / "adapt" / f"{target}-{method}" / "metrics.json", {
            "target": target, "method": method, "dev": _split(accuracy + 0.012345), "test": _split(accuracy),
            "trainable_params": 596 if method == "mpt" else 11520, "steps": 60,
            "majority_rate": MAJORITY[target],
        })
        _write_json(root / "adapt" / f"{target}-{method}" / "timing.json", {"train_seconds": 123.456789})
    for task, accuracy in TEACHER.items():
        _write_json(root / "source" / task / "metrics.json", {
            "task": task, "dev": _split(accuracy), "test": _split(accuracy),
            "trainable_params": 11520, "steps": 60, "train_seconds": 100.0,
        })
    _write_json(root / "distill" / "metrics.json", {
        "tasks": {task: {"dev": _split(acc), "test": _split(acc)} for task, acc in STUDENT.items()},
        "trainable_params": 12000, "steps": 60, "train_seconds": 150.0,
    })
    # Outputs of a removed method and a removed target: the report must not pick them up.
    _write_json(root / "adapt" / "rte-lora" / "metrics.json", {"target": "rte", "method": "lora"})
    (root / "adapt" / "old_target-mpt").mkdir(parents=True)
    return root


@pytest.fixture
def report_dir(results: Path, tmp_path: Path) -> Path:
    out = tmp_path / "reports"
    write_report(collect_runs(results, TARGETS, METHODS), collect_sources(results, SOURCES), out)
    return out


def test_collect_runs_reads_only_current_pairs(results: Path) -> None:
    runs = collect_runs(results, TARGETS, METHODS)
    assert list(runs.columns) == RUN_COLUMNS + ["majority_rate"]
    assert list(zip(runs["target"], runs["method"])) == sorted(TEST_ACCURACY)
    assert "lora" not in set(runs["method"]) and "old_target" not in set(runs["target"])


def test_collect_sources_pairs_teacher_and_student(results: Path) -> None:
    sources = collect_sources(results, SOURCES)
    assert list(sources.columns) == SOURCE_COLUMNS
    by_task = sources.set_index("task")
    for task in SOURCES:
        assert by_task.loc[task, "teacher_accuracy"] == TEACHER[task]
        assert by_task.loc[task, "student_accuracy"] == STUDENT[task]
        assert by_task.loc[task, "student_macro_f1"] == pytest.approx(STUDENT[task] - 0.01)


def test_csv_rows_columns_and_rounding(report_dir: Path) -> None:
    with (report_dir / "transfer.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == RUN_COLUMNS + ["majority_rate"]
    assert [(row["target"], row["method"]) for row in rows] == sorted(TEST_ACCURACY)
    first = rows[0]  # amazon_sentiment-mpt
    assert float(first["accuracy"]) == 0.72
    assert first["dev_accuracy"] == "0.7323"  # 0.732345 rounded to 4 places
    assert first["train_seconds"] == "123.4568"
    assert first["trainable_params"] == "596" and first["steps"] == "60"


def test_markdown_names_winner_and_margin(report_dir: Path) -> None:
    text = (report_dir / "transfer.md").read_text(encoding="utf-8")
    assert "- **amazon_sentiment**: **mpt** wins on test accuracy (0.7200), +4.0 points over pt (0.6800)" in text
    assert "- **rte**: **pt** wins on test accuracy (0.6100), +3.0 points over mpt (0.5800)" in text
    assert "| mpt | 0.6500 |" in text and "| pt | 0.6450 |" in text  # means over targets
    assert "| trec | 0.9100 | 0.9000 | 0.8900 | 0.8800 | -2.0 |" in text
    assert "![" in text and "](transfer.png)" in text


def test_png_is_valid(report_dir: Path) -> None:
    data = (report_dir / "transfer.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert b"Software" not in data


def test_metrics_json_is_nested(report_dir: Path) -> None:
    metrics = json.loads((report_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["amazon_sentiment"]["mpt"] == {"accuracy": 0.72, "macro_f1": 0.71, "trainable_params": 596}
    assert metrics["rte"]["pt"]["accuracy"] == 0.61
    assert metrics["mean"] == {
        "mpt": {"accuracy": 0.65, "macro_f1": 0.64}, "pt": {"accuracy": 0.645, "macro_f1": 0.635},
    }
    assert sorted(metrics) == ["amazon_sentiment", "mean", "rte"]


def test_no_temp_files_left(report_dir: Path) -> None:
    assert sorted(p.name for p in report_dir.iterdir()) == ["metrics.json", "transfer.csv", "transfer.md",
                                                            "transfer.png"]


def test_missing_run_names_file_and_stage(results: Path) -> None:
    (results / "adapt" / "rte-mpt" / "metrics.json").unlink()
    with pytest.raises(PipelineError, match=r"adapt/rte-mpt/metrics\.json.*adapt@rte-mpt"):
        collect_runs(results, TARGETS, METHODS)


def test_missing_student_task_names_key(results: Path) -> None:
    # A teacher exists for sst2 but the student was distilled before sst2 joined source_tasks.
    _write_json(results / "source" / "sst2" / "metrics.json", {"task": "sst2", "test": _split(0.8)})
    with pytest.raises(PipelineError, match=r"distill/metrics\.json: missing key tasks\.sst2\.test\.accuracy"):
        collect_sources(results, SOURCES + ["sst2"])


def test_two_runs_are_byte_identical(results: Path, tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        write_report(collect_runs(results, TARGETS, METHODS), collect_sources(results, SOURCES), tmp_path / name)
        outputs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert outputs[0] == outputs[1]


def test_chart_without_majority_rate(results: Path, tmp_path: Path) -> None:
    runs = collect_runs(results, TARGETS, METHODS).drop(columns="majority_rate")
    write_report(runs, collect_sources(results, SOURCES), tmp_path / "out")
    assert (tmp_path / "out" / "transfer.png").read_bytes().startswith(b"\x89PNG")


def test_stage_main_summary(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {
        "source": {"kind": "file", "path": "raw.csv", "format": "csv"},
        "columns": {"text": "text", "label": "label"},
        "template": "{text}",
        "label_words": {"a": " positive", "b": " negative"},
        "splits": {"train": 10, "dev": 2, "test": 2},
    }
    params = full_params({name: spec for name in TARGETS + SOURCES}, SOURCES, TARGETS)
    params["adapt"]["methods"] = METHODS
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("report_stage", REPO_ROOT / "stages" / "report.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    monkeypatch.setattr(stage, "_overlap_warnings", lambda targets, sources: [])  # no prepared data here
    summary = stage.main([])
    assert summary == "4 runs over 2 targets -> reports/transfer.md (mean test accuracy: mpt 0.650, pt 0.645)"
    assert (tmp_path / "reports" / "metrics.json").is_file()
