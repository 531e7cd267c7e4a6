"""`python -m pipeline compare`: one table (markdown + CSV) and one chart across DVC experiments.

Reads what `dvc exp show --json` prints (DVC 3: a list of baselines, each with ``data`` and ``experiments`` whose
``revs`` carry ``data.params`` and ``data.metrics`` per file). A row is an experiment with a result: the
workspace, each baseline commit and each finished experiment; queued, running and failed ones are listed as
skipped (DVC shows a failed experiment with its baseline's metrics, which must not pass for its own). Columns:
the params that differ between the rows, then one report metric (``--metric``, default accuracy) per metrics
group (``mean``, ``<target>``, ``<target>@k<k>``) and method, with its 95% half-width where the report has one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.store.atomic import write_bytes
from pipeline.report.charts import grouped_bars, method_colors, panel_grid, png_bytes
from pipeline.report.summary import CI
from pipeline.errors import PipelineError
from pipeline.layout import METRICS_FILE as REPORT_METRICS
from pipeline.report.build import MEAN_KEY
from pipeline.report.markdown import DASH, markdown_table

METRICS_FILE = str(REPORT_METRICS)  # as `dvc exp show --json` names it
PARAMS_FILE = "params.yaml"
FINISHED = (None, "success")  # executor states with a result of their own (None: a run not made by the queue)


@dataclass(frozen=True)
class Experiment:
    """One row: its name, its params (dotted keys) and its report metrics (the metrics.json mapping)."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, Any]


def read_exp_show(source: Path | None) -> list[dict[str, Any]]:
    """The parsed `dvc exp show --json` output: from ``source`` if given, else by running DVC here."""
    if source is not None:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise PipelineError(f"{source}: cannot read ({exc.strerror})") from None
        where = str(source)
    else:
        result = subprocess.run(
            [sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise PipelineError(f"`dvc exp show --json` failed: {last}")
        text, where = result.stdout, "`dvc exp show --json`"
    try:
        shown = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{where}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(shown, list):
        raise PipelineError(f"{where}: expected a list of baselines, as `dvc exp show --json` prints")
    return shown


def collect_experiments(
    shown: list[dict[str, Any]], metrics_file: str = METRICS_FILE
) -> tuple[list[Experiment], list[str]]:
    """The rows with a result, in DVC's order, and a note for each experiment left out."""
    rows, skipped = [], []
    for baseline in shown:
        name = "workspace" if baseline.get("rev") == "workspace" else baseline.get("name") or baseline["rev"][:7]
        _add(rows, skipped, name, baseline, None, metrics_file)
        for experiment in baseline.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state")
            for rev in experiment.get("revs") or []:
                label = rev.get("name") or experiment.get("name") or rev["rev"][:7]
                _add(rows, skipped, label, rev, state, metrics_file)
    return rows, skipped


def _add(
    rows: list[Experiment], skipped: list[str], name: str, rev: dict[str, Any], state: str | None, metrics_file: str
) -> None:
    data = rev.get("data") or {}
    metrics = ((data.get("metrics") or {}).get(metrics_file) or {}).get("data")
    if rev.get("error") or state not in FINISHED:
        skipped.append(f"{name} ({state or 'failed'})")
    elif not metrics:
        skipped.append(f"{name} (no {metrics_file})")
    else:
        params = ((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {}
        rows.append(Experiment(name, _flatten(params), metrics))


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_params(rows: list[Experiment]) -> list[str]:
    """The param keys whose value is not the same in every row (a key missing from a row counts as a change)."""
    keys = sorted({key for row in rows for key in row.params})
    return [key for key in keys if len({_text(row.params.get(key)) for row in rows}) > 1]


def _text(value: Any) -> str:
    """A param value as YAML shows it (true, [0, 1], 0.9), so the table reads like params.yaml."""
    return value if isinstance(value, str) else json.dumps(value)


def metric_columns(rows: list[Experiment], metric: str) -> list[tuple[str, str]]:
    """(group, method) pairs that report ``metric`` in some row: mean groups first, then targets, by name."""
    pairs = {
        (group, method)
        for row in rows
        for group, methods in row.metrics.items()
        if isinstance(methods, dict)
        for method, values in methods.items()
        if isinstance(values, dict) and metric in values
    }
    return sorted(pairs, key=lambda gm: (not gm[0].startswith(MEAN_KEY), gm[0], gm[1]))


def comparison_table(
    rows: list[Experiment], params: list[str], columns: list[tuple[str, str]], metric: str
) -> pd.DataFrame:
    """One row per experiment: name, the ``params``, then ``<group>.<method>`` and its ``_ci95`` half-width."""
    records = []
    for row in rows:
        record: dict[str, Any] = {"experiment": row.name}
        record.update({key: _text(row.params.get(key)) for key in params})
        for group, method in columns:
            values = row.metrics.get(group, {}).get(method, {})
            record[f"{group}.{method}"] = values.get(metric)
            record[f"{group}.{method}{CI}"] = values.get(metric + CI)
        records.append(record)
    return pd.DataFrame(records)


def render_markdown(
    table: pd.DataFrame, params: list[str], columns: list[tuple[str, str]], metric: str, skipped: list[str]
) -> str:
    """The table with each metric cell as ``mean ± half-width`` (or the mean alone with one seed)."""
    metrics = [f"{group}.{method}" for group, method in columns]
    rows = []
    for _, row in table.iterrows():
        cells = [row["experiment"], *(row[p] for p in params)]
        rows.append(cells + [_cell(row[c], row[c + CI]) for c in metrics])
    parts = [
        f"# Experiments compared: test {metric}",
        "Each cell is the report's mean over seeds ± the half-width of its 95% interval (no ± with one seed). "
        "Rows differ in the params shown; every other param is the same in all rows.",
        markdown_table(["experiment", *params, *metrics], rows, text_columns=1 + len(params)),
    ]
    if skipped:
        parts.append("Not compared (no result of their own): " + ", ".join(skipped) + ".")
    return "\n\n".join(parts) + "\n"


def _cell(mean: Any, half: Any) -> str:
    if mean is None or pd.isna(mean):
        return DASH
    return f"{mean:.4f}" if half is None or pd.isna(half) else f"{mean:.4f} ± {half:.4f}"


def render_chart(table: pd.DataFrame, labels: list[str], columns: list[tuple[str, str]], metric: str) -> bytes:
    """A panel per metrics group: a bar group per experiment (``labels``), a bar per method, 95% error bars."""
    groups = list(dict.fromkeys(group for group, _ in columns))  # in column order: mean groups first
    colors = method_colors({method for _, method in columns})
    fig, axes = panel_grid(len(groups), (4.6, 0.9 + 0.5 * len(labels)))
    for ax, group in zip(axes, groups):
        names = [f"{group}.{method}" for g, method in columns if g == group]
        series = {name.rsplit(".", 1)[1]: table[name].astype(float).tolist() for name in names}
        errors = {name.rsplit(".", 1)[1]: table[name + CI].astype(float).tolist() for name in names}
        bounds = (-1.0, 1.0) if metric == "mcc" else (0.0, 1.0)  # the range of the metric
        grouped_bars(ax, labels, series, errors, colors, horizontal=True, bounds=bounds)
        ax.set_title(group, fontsize=10)
        ax.set_xlim(0, 1.15)  # room right of a 1.0 bar for its label
        ax.set_xlabel(f"test {metric}")
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    fig.suptitle(f"Experiments: test {metric} (mean over seeds, 95% interval)", fontsize=11)
    return png_bytes(fig, top=0.94)


def row_labels(rows: list[Experiment], params: list[str]) -> list[str]:
    """Each experiment's name over the params where it differs from the first baseline commit (or first row)."""
    reference = next((row for row in rows if row.name != "workspace"), rows[0])
    labels = []
    for row in rows:
        changes = [f"{key}={_text(row.params.get(key))}" for key in params
                   if _text(row.params.get(key)) != _text(reference.params.get(key))]
        labels.append(row.name + (f"\n{', '.join(changes)}" if changes else ""))
    return labels


def compare(source: Path | None, out_dir: Path, metric: str = "accuracy", metrics_file: str = METRICS_FILE) -> str:
    """Write compare.md, compare.csv and compare.png into ``out_dir``; return a one-line summary."""
    rows, skipped = collect_experiments(read_exp_show(source), metrics_file)
    if not rows:
        raise PipelineError(f"no experiment with a {metrics_file} to compare; run `dvc exp run` first")
    params, columns = changed_params(rows), metric_columns(rows, metric)
    if not columns:
        raise PipelineError(f"no experiment reports {metric!r} in {metrics_file} (e.g. accuracy, macro_f1, mcc)")
    table = comparison_table(rows, params, columns, metric)
    out_dir = Path(out_dir)
    write_bytes(out_dir / "compare.csv", table.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    write_bytes(out_dir / "compare.md", render_markdown(table, params, columns, metric, skipped).encode("utf-8"))
    write_bytes(out_dir / "compare.png", render_chart(table, row_labels(rows, params), columns, metric))
    return (
        f"{len(rows)} experiments ({len(params)} changed params, {len(skipped)} skipped) -> "
        f"{out_dir / 'compare.md'}, compare.csv, compare.png"
    )
