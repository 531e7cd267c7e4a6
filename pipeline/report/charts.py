"""The report's and the experiment comparison's PNG charts: matplotlib Agg, no display, deterministic bytes.

Figures are built without pyplot (no global state), and the PNG carries no Software metadata (it names the
matplotlib version), so the same numbers give the same bytes and DVC sees an unchanged chart as unchanged.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.layout import k_order
from pipeline.report.curves import FRACTION, mean_curves

PANEL_COLUMNS = 3  # panels per row before wrapping
LINESTYLES = ("-", "--", ":", "-.")


def panel_grid(count: int, panel_size: tuple[float, float]) -> tuple[Figure, list[Any]]:
    """A figure with ``count`` panels in rows of up to PANEL_COLUMNS; unused grid cells are hidden."""
    columns = min(count, PANEL_COLUMNS)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(panel_size[0] * columns + 0.6, panel_size[1] * rows + 0.9))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def png_bytes(fig: Figure, top: float = 1.0) -> bytes:
    """PNG bytes of ``fig`` laid out tightly below ``top`` (a fraction of the height: room for a title/legend)."""
    fig.tight_layout(rect=(0, 0, 1, top))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, the same in every panel and chart of a report."""
    return {method: f"C{i % 10}" for i, method in enumerate(sorted(methods))}


def grouped_bars(
    ax: Any,
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    errors: dict[str, Sequence[float]],
    colors: dict[str, str],
    horizontal: bool = False,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> None:
    """Bars per group (x tick), one per series, with ``errors`` (half-widths; NaN: no error bar) and value labels.

    ``horizontal`` puts the groups on the y axis, for long group names (experiments). Error bars are drawn only
    within ``bounds`` (an accuracy is in [0, 1]; a t interval over few seeds may reach past it, and a bar leaving
    the axes would hide its value label); the tables give the full interval.
    """
    width = 0.8 / max(len(series), 1)
    draw = ax.barh if horizontal else ax.bar
    low, high = bounds
    for i, (name, values) in enumerate(series.items()):
        positions = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        error = [0.0 if pd.isna(e) else e for e in errors.get(name, [math.nan] * len(values))]
        below = [max(0.0, min(e, v - low)) if not pd.isna(v) else 0.0 for e, v in zip(error, values)]
        above = [max(0.0, min(e, high - v)) if not pd.isna(v) else 0.0 for e, v in zip(error, values)]
        bar_error = {"xerr" if horizontal else "yerr": [below, above], "capsize": 3, "error_kw": {"linewidth": 1}}
        bars = draw(positions, values, width * 0.95, label=name, color=colors[name], **bar_error)
        ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=7)
    ticks = list(range(len(groups)))
    if horizontal:
        ax.set_yticks(ticks, groups, fontsize=8)
        ax.invert_yaxis()  # first experiment on top, as in the table
    else:
        ax.set_xticks(ticks, groups)
    ax.spines[["top", "right"]].set_visible(False)


def scores_chart(summary: pd.DataFrame, majority: dict[str, float]) -> bytes:
    """One panel per target: x = k, a bar per method at its mean test accuracy, error bars = the 95% interval."""
    targets = sorted(summary["target"].unique())
    colors = method_colors(summary["method"].unique())
    fig, axes = panel_grid(len(targets), (1.6 + 1.2 * summary["k"].nunique() * len(colors) * 0.5, 3.6))
    for ax, target in zip(axes, targets):
        rows = summary[summary["target"] == target]
        ks = sorted(rows["k"].unique(), key=k_order)
        table = rows.set_index(["method", "k"])
        series = {m: [table["accuracy"].get((m, k), math.nan) for k in ks] for m in sorted(rows["method"].unique())}
        errors = {m: [table["accuracy_ci95"].get((m, k), math.nan) for k in ks] for m in series}
        grouped_bars(ax, [f"k={k}" for k in ks], series, errors, colors)
        if target in majority and not pd.isna(majority[target]):
            ax.axhline(majority[target], color="black", linestyle="dashed", linewidth=1, label="majority class")
        seeds = int(rows["seeds"].max())
        ax.set_title(f"{target} ({seeds} seed{'s' if seeds > 1 else ''})", fontsize=10)
        ax.set_ylim(0, 1.12)  # room above a 1.0 bar for its label
        ax.set_ylabel("test accuracy")
    fig.suptitle("Test accuracy, mean over seeds with 95% interval (drawn within [0, 1])", fontsize=11)
    # One legend for all panels, in the band between the title and the panels (tight_layout ignores it).
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.87), ncols=len(labels), frameon=False)
    return png_bytes(fig, top=0.87)


def curves_chart(histories: pd.DataFrame) -> bytes:
    """One panel per target: training loss per step, mean over seeds, a line per (method, k), lightly smoothed."""
    targets = sorted(histories["target"].unique())
    colors = method_colors(histories["method"].unique())
    fig, axes = panel_grid(len(targets), (4.2, 3.2))
    for ax, target in zip(axes, targets):
        rows = histories[histories["target"] == target]
        ks = sorted(rows["k"].unique(), key=k_order)
        for (method, k), run in rows.groupby(["method", "k"], sort=True):
            curve = run.groupby("step")["loss"].mean().sort_index()
            # Per-step losses of small batches are noisy; a short trailing mean shows the trend (~1/20 of the run).
            smoothed = curve.rolling(max(1, len(curve) // 20), min_periods=1).mean()
            style = LINESTYLES[ks.index(k) % len(LINESTYLES)]
            ax.plot(smoothed.index, smoothed.to_numpy(), style, color=colors[method], label=f"{method}, k={k}")
        _label_step_panel(ax, target, "training loss (mean over seeds)")
    fig.suptitle("Training loss per target", fontsize=11)
    return png_bytes(fig, top=0.92)


def _label_step_panel(ax: Any, title: str, ylabel: str) -> None:
    """Title, axis labels, legend and frame of a panel with training steps on x."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)


def dev_curves_chart(curves: pd.DataFrame, metrics: pd.DataFrame) -> bytes:
    """One panel per (target, k): dev accuracy against steps, mean over seeds, a line per method, and a dotted line
    at 95% of pt's final dev accuracy (the steps-to-reach level). ``curves``/``metrics``: pipeline.report.curves."""
    if curves.empty:
        fig, axes = panel_grid(1, (4.2, 2.0))
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "no dev curves (adapt.eval_every: 0)", ha="center", va="center")
        return png_bytes(fig)
    panels = sorted({(t, k) for t, k in zip(curves["target"], curves["k"])}, key=lambda tk: (tk[0], k_order(tk[1])))
    colors = method_colors(curves["method"].unique())
    means = mean_curves(curves)
    reference = {(row.target, row.k): row.dev_reference for row in metrics.itertuples(index=False)}
    fig, axes = panel_grid(len(panels), (4.2, 3.2))
    for ax, (target, k) in zip(axes, panels):
        for (t, kk, method), curve in sorted(means.items()):
            if (t, kk) == (target, k):
                steps, accuracy = zip(*curve)
                ax.plot(steps, accuracy, "-o", markersize=3, color=colors[method], label=method)
        level = reference.get((target, k), math.nan)
        if not pd.isna(level):
            label = f"{FRACTION:.0%} of pt final"
            ax.axhline(FRACTION * level, color="black", linestyle="dotted", linewidth=1, label=label)
        seeds = curves[(curves["target"] == target) & (curves["k"] == k)]["seed"].nunique()
        title = f"{target}, k={k} ({seeds} seed{'s' if seeds > 1 else ''})"
        _label_step_panel(ax, title, "dev accuracy (mean over seeds)")
    fig.suptitle("Dev accuracy against training steps", fontsize=11)
    return png_bytes(fig, top=0.92)
