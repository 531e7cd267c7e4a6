"""The comparison report: gather the metrics JSON of the adapt, source and distill stages into tables and a chart.

Everything here is a pure function of the metrics files it reads; outputs are byte-for-byte deterministic (sorted
rows and keys, fixed float rounding, no timestamps) so DVC sees an unchanged report as unchanged.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.atomic import write_bytes
from pipeline.errors import PipelineError

RUN_COLUMNS = [
    "target", "method", "accuracy", "macro_f1", "dev_accuracy", "dev_macro_f1",
    "trainable_params", "steps", "train_seconds",
]
SOURCE_COLUMNS = ["task", "teacher_accuracy", "teacher_macro_f1", "student_accuracy", "student_macro_f1"]
DECIMALS = 4
MEAN_KEY = "mean"


# --- reading -----------------------------------------------------------------------------------------------------


def _read_metrics(path: Path, stage: str) -> dict[str, Any]:
    """Load one metrics file; a missing or unreadable file names itself and the stage that writes it."""
    if not path.is_file():
        raise PipelineError(f"{path}: metrics file not found; it is made by stage {stage} (run `dvc repro {stage}`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc.__class__.__name__}); rerun stage {stage}") from exc
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a JSON object at the top level; rerun stage {stage}")
    return data


def _lookup(data: dict[str, Any], key_path: str, path: Path) -> Any:
    """Return ``data[a][b]...`` for ``key_path`` "a.b"; a missing key names the file and the full key path."""
    node: Any = data
    for part in key_path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise PipelineError(f"{path}: missing key {key_path}")
        node = node[part]
    return node


def _number(data: dict[str, Any], key_path: str, path: Path) -> float:
    """The number at ``key_path`` ("test.accuracy"); errors name the file and the key."""
    value = _lookup(data, key_path, path)
    # bool is an int subclass, but true/false is never a metric.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PipelineError(f"{path}: {key_path} must be a number, got {value!r}")
    return value


def _scores(data: dict[str, Any], key_path: str, path: Path) -> tuple[float, float]:
    """(accuracy, macro_f1) under ``key_path`` ("test", "tasks.trec.test")."""
    return _number(data, f"{key_path}.accuracy", path), _number(data, f"{key_path}.macro_f1", path)


def collect_runs(results_dir: Path, targets: list[str], methods: list[str]) -> pd.DataFrame:
    """One row per (target, method) from ``results_dir/adapt/<target>-<method>/metrics.json``.

    Only the pairs named in params are read: folders left by removed targets or methods are ignored. Columns are
    :data:`RUN_COLUMNS`, plus ``majority_rate`` when any file reports it (NaN where a file does not).
    """
    rows = []
    for target in targets:
        for method in methods:
            run = f"{target}-{method}"
            path = Path(results_dir) / "adapt" / run / "metrics.json"
            data = _read_metrics(path, f"adapt@{run}")
            accuracy, macro_f1 = _scores(data, "test", path)
            dev_accuracy, dev_macro_f1 = _scores(data, "dev", path)
            row = {
                "target": target, "method": method, "accuracy": accuracy, "macro_f1": macro_f1,
                "dev_accuracy": dev_accuracy, "dev_macro_f1": dev_macro_f1,
                "trainable_params": int(_number(data, "trainable_params", path)),
                "steps": int(_number(data, "steps", path)),
                "train_seconds": _train_seconds(path.with_name("timing.json"), f"adapt@{run}"),
            }
            if "majority_rate" in data:
                row["majority_rate"] = float(_number(data, "majority_rate", path))
            rows.append(row)
    runs = pd.DataFrame(rows, columns=_run_columns(rows))
    return runs.sort_values(["target", "method"], kind="stable").reset_index(drop=True)


def _train_seconds(path: Path, stage: str) -> float:
    """Wall time is kept out of metrics.json (so that file repeats byte for byte); it lives in timing.json."""
    return float(_number(_read_metrics(path, stage), "train_seconds", path))


def _run_columns(rows: list[dict[str, Any]]) -> list[str]:
    """RUN_COLUMNS, with ``majority_rate`` appended only when some run reported it (the chart line is optional)."""
    return RUN_COLUMNS + (["majority_rate"] if any("majority_rate" in row for row in rows) else [])


def collect_sources(results_dir: Path, sources: list[str]) -> pd.DataFrame:
    """Teacher (``source/<task>``) vs distilled student (``distill``) test scores, one row per source task."""
    distill_path = Path(results_dir) / "distill" / "metrics.json"
    distill = _read_metrics(distill_path, "distill")
    rows = []
    for task in sources:
        teacher_path = Path(results_dir) / "source" / task / "metrics.json"
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


# --- summaries ---------------------------------------------------------------------------------------------------


def mean_by_method(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy and macro-F1 over targets, one row per method (sorted by method)."""
    means = runs.groupby("method", sort=True)[["accuracy", "macro_f1"]].mean()
    return means.reset_index()


def winner_lines(runs: pd.DataFrame) -> list[str]:
    """One markdown bullet per target: the method with the best test accuracy and its margin in points."""
    return [_winner_line(target, group) for target, group in runs.groupby("target", sort=True)]


def _winner_line(target: str, group: pd.DataFrame) -> str:
    """The bullet for one target; ``group`` holds its runs."""
    # Equal accuracies order by method name so the sentence never depends on row order.
    ranked = group.sort_values(["accuracy", "method"], ascending=[False, True], kind="stable")
    best, others = ranked.iloc[0], ranked.iloc[1:]
    if others.empty:
        return f"- **{target}**: only {best['method']} ran ({best['accuracy']:.4f} test accuracy)"
    tied = others[others["accuracy"] == best["accuracy"]]
    if not tied.empty:
        names = " and ".join([best["method"], *tied["method"]])
        return f"- **{target}**: tie between {names} at {best['accuracy']:.4f} test accuracy"
    margins = ", ".join(
        f"+{_points(best['accuracy'] - row['accuracy'])} points over {row['method']} ({row['accuracy']:.4f})"
        for _, row in others.iterrows()
    )
    return f"- **{target}**: **{best['method']}** wins on test accuracy ({best['accuracy']:.4f}), {margins}"


def _points(delta: float) -> str:
    """An accuracy difference in percentage points, one decimal."""
    return f"{delta * 100:.1f}"


# --- rendering ---------------------------------------------------------------------------------------------------


def _markdown_table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """A GitHub-flavoured markdown table from formatted cells; columns after the first ``text_columns`` are numbers,
    right-aligned so their decimals line up."""
    align = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _runs_table(runs: pd.DataFrame) -> str:
    header = ["target", "method", "test acc", "test macro-F1", "dev acc", "dev macro-F1", "trainable params",
              "steps", "train s"]
    rows = [
        [row.target, row.method, f"{row.accuracy:.4f}", f"{row.macro_f1:.4f}", f"{row.dev_accuracy:.4f}",
         f"{row.dev_macro_f1:.4f}", f"{row.trainable_params:,}", str(row.steps), f"{row.train_seconds:.1f}"]
        for row in runs.itertuples(index=False)
    ]
    return _markdown_table(header, rows, text_columns=2)


def _means_table(means: pd.DataFrame) -> str:
    rows = [[row.method, f"{row.accuracy:.4f}", f"{row.macro_f1:.4f}"] for row in means.itertuples(index=False)]
    return _markdown_table(["method", "mean test acc", "mean test macro-F1"], rows)


def _sources_table(sources: pd.DataFrame) -> str:
    header = ["source task", "teacher acc", "teacher macro-F1", "student acc", "student macro-F1",
              "student - teacher (acc points)"]
    rows = [
        [row.task, f"{row.teacher_accuracy:.4f}", f"{row.teacher_macro_f1:.4f}", f"{row.student_accuracy:.4f}",
         f"{row.student_macro_f1:.4f}", f"{(row.student_accuracy - row.teacher_accuracy) * 100:+.1f}"]
        for row in sources.itertuples(index=False)
    ]
    return _markdown_table(header, rows)


def render_markdown(runs: pd.DataFrame, sources: pd.DataFrame, warnings: list[str] | None = None) -> str:
    """The text of ``transfer.md``: warnings, runs, winners per target, means per method, teacher vs student."""
    n_targets = runs["target"].nunique()
    parts = [
        "# Soft-prompt transfer report",
        f"{len(runs)} runs over {n_targets} target task(s); test split unless marked dev.",
        *[f"> **Warning:** {warning}" for warning in warnings or []],
        "## Runs",
        _runs_table(runs),
        "## Winner per target (test accuracy)",
        "\n".join(winner_lines(runs)),
        f"## Mean over {n_targets} target(s)",
        _means_table(mean_by_method(runs)),
        "## Source tasks: teacher prompt vs distilled multitask student",
        _sources_table(sources),
        "![Test accuracy per target and method](transfer.png)",
    ]
    return "\n\n".join(parts) + "\n"


def render_chart(runs: pd.DataFrame) -> bytes:
    """PNG bytes of a grouped bar chart: x = target, one bar per method, test accuracy written on each bar."""
    targets = sorted(runs["target"].unique())
    methods = sorted(runs["method"].unique())
    width = 0.8 / max(len(methods), 1)
    # Build the figure without pyplot: no global state, and the Agg canvas needs no display.
    fig_width = min(16.0, max(6.0, 2 + len(targets) * (0.4 + 0.6 * len(methods))))
    fig = Figure(figsize=(fig_width, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    accuracy = runs.set_index(["target", "method"])["accuracy"]
    for i, method in enumerate(methods):
        xs = [t + (i - (len(methods) - 1) / 2) * width for t in range(len(targets))]
        heights = [accuracy.get((target, method), math.nan) for target in targets]
        bars = ax.bar(xs, heights, width * 0.95, label=method)
        ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=9)
    _draw_majority(ax, runs, targets)
    # Slant the task names only when the longest (~0.09 in per character) would overrun its slot.
    slanted = max(len(target) for target in targets) * 0.09 > 0.8 * fig_width / len(targets)
    ax.set_xticks(range(len(targets)), targets, rotation=25 if slanted else 0, ha="right" if slanted else "center")
    ax.set_ylim(0, 1.1)  # room above a 1.0 bar for its label
    ax.set_ylabel("test accuracy")
    ax.set_xlabel("target task")
    fig.suptitle("Target adaptation: test accuracy per method")
    # One row between title and axes: a side legend squeezes a small chart, one below collides with slanted names.
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(methods) + 1, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    # Software metadata carries the matplotlib version; dropping it keeps bytes equal across runs.
    fig.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    return buffer.getvalue()


def _draw_majority(ax: Any, runs: pd.DataFrame, targets: list[str]) -> None:
    """A dashed line across each target's bar group at its majority-class rate, when the runs report one."""
    if "majority_rate" not in runs.columns:
        return
    rates = runs.groupby("target")["majority_rate"].max()
    labelled = False
    for t, target in enumerate(targets):
        rate = rates.get(target, math.nan)
        if pd.isna(rate):
            continue
        ax.hlines(rate, t - 0.45, t + 0.45, colors="black", linestyles="dashed", linewidth=1.2,
                  label=None if labelled else "majority class")
        labelled = True


def metrics_summary(runs: pd.DataFrame) -> dict[str, Any]:
    """``{target: {method: {accuracy, macro_f1, trainable_params}}, "mean": {method: {accuracy, macro_f1}}}``."""
    if MEAN_KEY in set(runs["target"]):
        raise PipelineError(f"params.yaml: target_tasks may not contain {MEAN_KEY!r} (a reserved key in metrics.json)")
    summary: dict[str, Any] = {}
    for row in runs.itertuples(index=False):
        summary.setdefault(row.target, {})[row.method] = {
            "accuracy": _round(row.accuracy), "macro_f1": _round(row.macro_f1),
            "trainable_params": int(row.trainable_params),
        }
    summary[MEAN_KEY] = {
        row.method: {"accuracy": _round(row.accuracy), "macro_f1": _round(row.macro_f1)}
        for row in mean_by_method(runs).itertuples(index=False)
    }
    return summary


def _round(value: float) -> float:
    # float() turns numpy scalars into plain floats json can write.
    return round(float(value), DECIMALS)


# --- writing -----------------------------------------------------------------------------------------------------


def write_report(
    runs: pd.DataFrame, sources: pd.DataFrame, out_dir: Path, warnings: list[str] | None = None
) -> None:
    """Write ``transfer.csv``, ``transfer.md``, ``transfer.png`` and ``metrics.json`` into ``out_dir``."""
    if runs.empty:
        raise PipelineError("params.yaml: target_tasks x adapt.methods names no runs to report")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = runs.sort_values(["target", "method"], kind="stable").reset_index(drop=True)
    csv = runs.round(DECIMALS).to_csv(index=False, lineterminator="\n")
    metrics = json.dumps(metrics_summary(runs), indent=2, sort_keys=True) + "\n"
    outputs = {
        "transfer.csv": csv.encode("utf-8"),
        "transfer.md": render_markdown(runs, sources, warnings).encode("utf-8"),
        "transfer.png": render_chart(runs),
        "metrics.json": metrics.encode("utf-8"),
    }
    for name, data in outputs.items():
        write_bytes(out_dir / name, data)
