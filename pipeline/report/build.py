"""The comparison report: the metrics of every adapt@ run, source teacher and distilled student, as tables,
a verdict in words, charts and a flat metrics.json.

Everything here is a pure function of the files it reads; outputs are byte-for-byte deterministic (sorted rows and
keys, fixed float rounding, no timestamps) so DVC sees an unchanged report as unchanged. Wall time is the
exception: it comes from the timing files, and only transfer.csv/.md show it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.layout import AdaptRun, distill_dir, k_label, k_order, run_dir, source_dir, timing_file
from pipeline.store.atomic import atomic_files, read_json, replacing, write_bytes
from pipeline.report.charts import curves_chart, dev_curves_chart, scores_chart
from pipeline.report.curves import AREA, CURVE_COLUMNS, REACH, curve_metrics
from pipeline.report.summary import CI, SCORES, VS, summarize
from pipeline.errors import PipelineError
from pipeline.config.load import section
from pipeline.report.markdown import render_markdown
from pipeline.config.tasks import ALL

RUN_COLUMNS = [
    "target", "method", "k", "seed", "accuracy", "macro_f1", "dev_accuracy", "dev_macro_f1",
    "trainable_params", "steps", "train_seconds",
]
# Present when some run reports them (MCC: tasks that ask for it). After them come the methods' extras: every
# scalar ``<method>_<name>`` key of a run's metrics.json (spot_source: the source prompt spot started from).
OPTIONAL_COLUMNS = ["mcc", "majority_rate", "template_accuracy", "zero_step_accuracy", "select", "selected_step"]
# Optional numbers of a run's metrics.json: column -> key path. The baselines: the majority class, the template
# alone (no prompt), the method's initial prompt (step 0); and the step the test score comes from.
OPTIONAL_NUMBERS = {
    "majority_rate": "majority_rate", "template_accuracy": "template_accuracy",
    "zero_step_accuracy": "zero_step.test", "selected_step": "selected_step",
}
SOURCE_COLUMNS = ["task", "teacher_accuracy", "teacher_macro_f1", "student_accuracy", "student_macro_f1"]
DECIMALS = 4
MEAN_KEY = "mean"


# --- reading -----------------------------------------------------------------------------------------------------


def _read_metrics(path: Path, stage: str) -> dict[str, Any]:
    """Load one metrics file; a missing or unreadable file names itself and the stage that writes it."""
    data = read_json(path, stage)
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a JSON object at the top level; rerun `dvc repro {stage}`")
    return data


def _number(data: dict[str, Any], key_path: str, path: Path) -> float:
    """The number at ``key_path`` ("test.accuracy"); errors name the file and the key."""
    value = section(data, key_path, where=str(path))
    # bool is an int subclass, but true/false is never a metric.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PipelineError(f"{path}: {key_path} must be a number, got {value!r}")
    return value


def _scores(data: dict[str, Any], key_path: str, path: Path) -> tuple[float, float]:
    """(accuracy, macro_f1) under ``key_path`` ("test", "tasks.trec.test")."""
    return _number(data, f"{key_path}.accuracy", path), _number(data, f"{key_path}.macro_f1", path)


def collect_runs(results_dir: Path, runs: list[AdaptRun]) -> pd.DataFrame:
    """One row per planned run from its ``metrics.json`` (and its stage's timing file).

    Only the runs params.yaml plans are read: folders left by removed targets, methods, seeds or k are ignored.
    Columns: :data:`RUN_COLUMNS` (k as text: "16", "all"), plus each of :data:`OPTIONAL_COLUMNS` that some run
    reports (NaN where one does not). Rows sorted by target, method, k (numbers first, then "all"), seed.
    """
    rows, timings = [], {}
    for run in runs:
        path = run_dir(run, results_dir) / "metrics.json"
        data = _read_metrics(path, run.stage)
        accuracy, macro_f1 = _scores(data, "test", path)
        dev_accuracy, dev_macro_f1 = _scores(data, "dev", path)
        timing = timing_file(run.target, run.method, run.seed, results_dir)
        if timing not in timings:
            timings[timing] = _read_metrics(timing, run.stage)
        row = {
            "target": run.target, "method": run.method, "k": str(run.k), "seed": run.seed,
            "accuracy": accuracy, "macro_f1": macro_f1, "dev_accuracy": dev_accuracy, "dev_macro_f1": dev_macro_f1,
            "trainable_params": int(_number(data, "trainable_params", path)),
            "steps": int(_number(data, "steps", path)),
            # Wall time is kept out of metrics.json (so that file repeats byte for byte).
            "train_seconds": float(_number(timings[timing], f"{k_label(run.k)}.train_seconds", timing)),
        }
        if "mcc" in data["test"]:
            row["mcc"] = float(_number(data, "test.mcc", path))
        for column, key_path in OPTIONAL_NUMBERS.items():
            if _has(data, key_path):
                row[column] = float(_number(data, key_path, path))
        if "select" in data:
            row["select"] = str(data["select"])
        row.update(method_extras(data, run.method))
        rows.append(row)
    extras = sorted({key for row in rows for key in row} - set(RUN_COLUMNS) - set(OPTIONAL_COLUMNS))
    columns = RUN_COLUMNS + [c for c in OPTIONAL_COLUMNS if any(c in row for row in rows)] + extras
    return _sorted_runs(pd.DataFrame(rows, columns=columns))


def _has(data: dict[str, Any], key_path: str) -> bool:
    node: Any = data
    for key in key_path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def collect_dev_curves(results_dir: Path, runs: list[AdaptRun]) -> pd.DataFrame:
    """Every evaluated dev point of the planned runs (``dev_curve`` in metrics.json): :data:`CURVE_COLUMNS`.
    A run without one (adapt.eval_every: 0) adds no rows."""
    rows = []
    for run in runs:
        path = run_dir(run, results_dir) / "metrics.json"
        try:
            curve = _read_metrics(path, run.stage).get("dev_curve", [])
            points = [(int(step), float(accuracy)) for step, accuracy in curve]
        except (ValueError, TypeError) as exc:
            message = f"{path}: dev_curve is not a list of [step, accuracy] ({exc}); rerun {run.stage}"
            raise PipelineError(message) from None
        rows += [(run.target, run.method, str(run.k), run.seed, step, accuracy) for step, accuracy in points]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def method_extras(metrics: dict[str, Any], method: str) -> dict[str, str | int | float]:
    """What a method's builder added to its run's metrics.json (pipeline.methods.base.Built.extras), named
    ``<method>_<name>``: its scalar values (a table cell each); nested ones stay in metrics.json."""
    return {
        key: value for key, value in metrics.items()
        if key.startswith(f"{method}_") and isinstance(value, (str, int, float)) and not isinstance(value, bool)
    }


def _sorted_runs(runs: pd.DataFrame) -> pd.DataFrame:
    order = runs.assign(_k=runs["k"].map(k_order)).sort_values(["target", "method", "_k", "seed"], kind="stable")
    return order.drop(columns="_k").reset_index(drop=True)


def collect_histories(results_dir: Path, runs: list[AdaptRun]) -> pd.DataFrame:
    """The training loss per step of every planned run (``history.json``): target, method, k, seed, step, loss."""
    frames = []
    for run in runs:
        path = run_dir(run, results_dir) / "history.json"
        history = read_json(path, run.stage)
        try:
            steps = [(int(record["step"]), float(record["loss"])) for record in history]
        except (ValueError, TypeError, KeyError) as exc:
            raise PipelineError(f"{path}: not a loss history ({exc.__class__.__name__}); rerun {run.stage}") from None
        frame = pd.DataFrame(steps, columns=["step", "loss"])
        frames.append(frame.assign(target=run.target, method=run.method, k=str(run.k), seed=run.seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "loss"])


def collect_sources(results_dir: Path, sources: list[str]) -> pd.DataFrame:
    """Teacher (``source/<task>``) vs distilled student (``distill``) test scores, one row per source task."""
    distill_path = distill_dir(results_dir) / "metrics.json"
    distill = _read_metrics(distill_path, "distill")
    rows = []
    for task in sources:
        teacher_path = source_dir(task, results_dir) / "metrics.json"
        teacher = _read_metrics(teacher_path, f"source@{task}")
        teacher_accuracy, teacher_macro_f1 = _scores(teacher, "test", teacher_path)
        # Every student score lives in the one distill file, under tasks.<task>.
        student_accuracy, student_macro_f1 = _scores(distill, f"tasks.{task}.test", distill_path)
        rows.append({
            "task": task, "teacher_accuracy": teacher_accuracy, "teacher_macro_f1": teacher_macro_f1,
            "student_accuracy": student_accuracy, "student_macro_f1": student_macro_f1,
        })
    table = pd.DataFrame(rows, columns=SOURCE_COLUMNS)
    return table.sort_values("task", kind="stable").reset_index(drop=True)


# --- metrics.json ------------------------------------------------------------------------------------------------


def group_key(name: str, k: str) -> str:
    """The metrics.json key of a target (or the mean) at one k: ``sms_spam`` for k = all, ``sms_spam@k16``."""
    return name if k == ALL else f"{name}@k{k}"


def metrics_summary(summary: pd.DataFrame) -> dict[str, Any]:
    """``{<target>[@k<k>]: {<method>: {accuracy, accuracy_ci95, ...}}, mean[@k<k>]: {<method>: {...}}}``.

    Flat enough for ``dvc metrics diff`` and ``dvc exp show`` (``sms_spam.mpt.accuracy``). A half-width is left
    out where there is one seed, a metric where the task did not ask for it, the difference to the baseline
    for the baseline itself.
    """
    if MEAN_KEY in set(summary["target"]):
        raise PipelineError(f"params.yaml: target_tasks may not contain {MEAN_KEY!r} (a reserved key in metrics.json)")
    out: dict[str, Any] = {}
    for row in summary.itertuples(index=False):
        values = {"seeds": int(row.seeds), "trainable_params": int(row.trainable_params)}
        for column in [*(c for name in [*SCORES, VS] for c in (name, name + CI)), "zero_step_accuracy", REACH, AREA]:
            value = getattr(row, column, None)
            if value is not None and not pd.isna(value):
                values[column] = _round(value)
        group = out.setdefault(group_key(row.target, row.k), {})
        group[row.method] = values
        for column in ("template_accuracy", "majority_rate"):  # the same for every method of a target
            value = getattr(row, column, None)
            if value is not None and not pd.isna(value):
                group.setdefault("baselines", {})[column] = _round(value)
    means = summary.groupby(["k", "method"])[["accuracy", "macro_f1"]].mean()
    for (k, method), row in means.iterrows():
        out.setdefault(group_key(MEAN_KEY, k), {})[method] = {
            "accuracy": _round(row["accuracy"]), "macro_f1": _round(row["macro_f1"]),
        }
    return out


def headline_means(summary: pd.DataFrame) -> dict[str, float]:
    """Each method's mean test accuracy at each target's largest k, averaged over targets (the stage's summary)."""
    largest = summary.groupby("target")["k"].transform(lambda ks: max(ks, key=k_order))
    return summary[summary["k"] == largest].groupby("method")["accuracy"].mean().to_dict()


def _round(value: float) -> float:
    # float() turns numpy scalars into plain floats json can write.
    return round(float(value), DECIMALS)


# --- writing -----------------------------------------------------------------------------------------------------


def write_report(
    runs: pd.DataFrame,
    sources: pd.DataFrame,
    histories: pd.DataFrame,
    out_dir: Path,
    warnings: list[str] | None = None,
    curves: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Write transfer.csv (every run), summary.csv (per target, k, method), transfer.md, transfer.png (scores),
    curves.png (training loss), dev_curves.png (dev accuracy per step, from ``curves``: collect_dev_curves) and
    metrics.json into ``out_dir``; return the summary table.
    """
    if runs.empty:
        raise PipelineError("params.yaml: target_tasks x adapt.methods x seeds names no runs to report")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = _sorted_runs(runs)
    curves = pd.DataFrame(columns=CURVE_COLUMNS) if curves is None else curves
    dev = curve_metrics(curves)
    keys = ["target", "k", "method"]
    summary = summarize(runs).merge(dev[[*keys, REACH, AREA]], how="left", on=keys)
    majority = runs.groupby("target")["majority_rate"].max().to_dict() if "majority_rate" in runs else {}
    outputs = {
        "transfer.csv": _csv(runs),
        "summary.csv": _csv(summary),
        "transfer.md": render_markdown(runs, summary, sources, warnings, dev).encode("utf-8"),
        "transfer.png": scores_chart(summary, majority),
        "curves.png": curves_chart(histories),
        "dev_curves.png": dev_curves_chart(curves, dev),
        "metrics.json": (json.dumps(metrics_summary(summary), indent=2, sort_keys=True) + "\n").encode("utf-8"),
    }
    # The report's files replace the old ones together, once all are written: never a new table beside an old chart.
    with replacing(out_dir), atomic_files(out_dir) as tmp:
        for name, data in outputs.items():
            write_bytes(tmp / name, data)
    return summary


def _csv(table: pd.DataFrame) -> bytes:
    return table.round(DECIMALS).to_csv(index=False, lineterminator="\n").encode("utf-8")
