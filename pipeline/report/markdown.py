"""The markdown of ``reports/transfer.md``: a verdict per target and k in words, then the tables behind it.

Every number is a test-split score; a ± or [low, high] is a 95% interval over seeds (pipeline.report.stats).
"""

from __future__ import annotations

import pandas as pd

from pipeline.layout import k_order
from pipeline.report.curves import AREA, FRACTION, REACH
from pipeline.report.summary import BASELINE, VS, interval
from pipeline.report.stats import Interval, paired_difference

HOW_TO_READ = (
    "**How to read this.** A score is the mean over seeds ± the half-width of its 95% confidence interval "
    "(Student t: mean ± t(0.975, n−1)·s/√n over the n seeds). A seed fixes the prompt initialisation, the batch "
    "order and the few-shot draw, and every method of a (target, k, seed) trains on the same examples, so two "
    f"methods are compared seed by seed: the *paired difference* (method − {BASELINE} in accuracy points, its own "
    "95% interval), usually narrower than the two separate intervals suggest. A difference whose interval contains 0 "
    "is **not significant**: these seeds cannot tell the methods apart. With one seed (n=1) there is no interval; "
    "add seeds under `seeds:` in params.yaml."
)
DASH = "–"  # an empty cell: a metric the task did not ask for, or the baseline's difference to itself


# --- words ---------------------------------------------------------------------------------------------------------


def score_text(score: Interval) -> str:
    """``0.7200 ± 0.0248``, or ``0.7200 (n=1)`` without an interval."""
    if score.half_width is None:
        return f"{score.mean:.4f} (n=1)"
    return f"{score.mean:.4f} ± {score.half_width:.4f}"


def points(value: float) -> str:
    """An accuracy difference in signed percentage points, one decimal (a float error below it reads +0.0, not -0.0)."""
    return f"{round(value * 100, 1) + 0.0:+.1f}"


def difference_text(diff: Interval) -> str:
    """``+4.0 points [+1.2, +6.8], significant``; says plainly when the interval contains 0 or there is none."""
    if diff.half_width is None:
        return f"{points(diff.mean)} points (n=1, no interval)"
    span = f"{points(diff.mean)} points [{points(diff.low)}, {points(diff.high)}]"
    if diff.significant:
        return f"{span}, significant"
    return f"{span}, not significant (the interval contains 0)"


def verdict_lines(runs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """One bullet per (target, k): who wins, by how much over the runner-up, and each method against the baseline."""
    keys = sorted({(row.target, row.k) for row in summary.itertuples()}, key=lambda tk: (tk[0], k_order(tk[1])))
    return [_verdict(runs, summary, target, k) for target, k in keys]


def _verdict(runs: pd.DataFrame, summary: pd.DataFrame, target: str, k: str) -> str:
    rows = summary[(summary["target"] == target) & (summary["k"] == k)]
    # Equal accuracies order by method name, so the sentence never depends on row order.
    ranked = rows.sort_values(["accuracy", "method"], ascending=[False, True], kind="stable")
    seeds = int(rows["seeds"].max())
    head = f"- **{target}**, k={k}, " + (f"{seeds} seeds" if seeds > 1 else "n=1 (one seed, no interval)")
    best = ranked.iloc[0]
    best_score = interval(best, "accuracy", int(best.seeds))
    if len(ranked) == 1:
        return f"{head}: only {best.method} ran, mean test accuracy {score_text(best_score)}."
    tied = ranked[ranked["accuracy"] == best.accuracy]
    if len(tied) > 1:
        sentence = f"{head}: tie between {' and '.join(tied['method'])} at {best.accuracy:.4f} mean test accuracy."
    else:
        sentence = f"{head}: **{best.method}** has the best mean test accuracy, {score_text(best_score)}"
        runner = ranked.iloc[1]
        if BASELINE not in (best.method, runner.method):  # against the baseline it is said below anyway
            lead = _paired(runs, target, k, best.method, runner.method)
            sentence += f"; it leads {runner.method} by {difference_text(lead)}"
        sentence += "."
    return f"{sentence} {_against_baseline(ranked)}"


def _against_baseline(ranked: pd.DataFrame) -> str:
    if BASELINE not in set(ranked["method"]):
        return f"({BASELINE} did not run, so there is no paired difference to it.)"
    others = [
        f"{row.method} {difference_text(interval(row, VS, int(row.seeds)))}"
        for _, row in ranked.iterrows()
        if row.method != BASELINE
    ]
    return f"Against {BASELINE}, seed by seed: " + "; ".join(others) + "."


def _paired(runs: pd.DataFrame, target: str, k: str, method: str, other: str) -> Interval:
    """The accuracy of ``method`` minus ``other``, paired by seed, on one target and k."""
    rows = runs[(runs["target"] == target) & (runs["k"] == k)]

    def by_seed(name: str) -> dict[int, float]:
        picked = rows[rows["method"] == name]
        return dict(zip(picked["seed"], picked["accuracy"]))

    return paired_difference(by_seed(method), by_seed(other))


# --- tables --------------------------------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """A GitHub-flavoured markdown table; columns after the first ``text_columns`` are right-aligned numbers."""
    align = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(row: pd.Series, name: str) -> str:
    score = interval(row, name, int(row.seeds))
    return DASH if score is None else score_text(score)


def _difference_cell(row: pd.Series) -> str:
    diff = interval(row, VS, int(row.seeds))
    if diff is None:
        return DASH
    if diff.half_width is None:
        return f"{points(diff.mean)} (n=1)"
    return f"{points(diff.mean)} [{points(diff.low)}, {points(diff.high)}]"


def scores_table(summary: pd.DataFrame) -> str:
    """Per (target, k, method): mean ± interval of each score, the paired difference to the baseline."""
    with_mcc = summary["mcc"].notna().any()
    header = ["target", "k", "method", "seeds", "test acc", "test macro-F1"] + (["test MCC"] if with_mcc else [])
    header += [f"Δ acc vs {BASELINE}, points [95% CI]", "trainable params"]
    rows = []
    for _, row in summary.iterrows():
        cells = [row.target, str(row.k), row.method, str(row.seeds), _cell(row, "accuracy"), _cell(row, "macro_f1")]
        cells += [_cell(row, "mcc")] if with_mcc else []
        rows.append(cells + [_difference_cell(row), f"{int(row.trainable_params):,}"])
    return markdown_table(header, rows, text_columns=3)


def means_table(summary: pd.DataFrame) -> str:
    """Per (k, method): the mean over targets of the mean test accuracy and macro-F1."""
    means = summary.groupby(["k", "method"])[["accuracy", "macro_f1"]].mean().reset_index()
    means = means.assign(_k=means["k"].map(k_order)).sort_values(["_k", "method"], kind="stable")
    rows = [[str(r.k), r.method, f"{r.accuracy:.4f}", f"{r.macro_f1:.4f}"] for r in means.itertuples(index=False)]
    return markdown_table(["k", "method", "mean test acc", "mean test macro-F1"], rows, text_columns=2)


def runs_table(runs: pd.DataFrame) -> str:
    """Every run, one row per seed."""
    with_mcc = "mcc" in runs.columns and runs["mcc"].notna().any()
    header = ["target", "k", "method", "seed", "test acc", "test macro-F1"] + (["test MCC"] if with_mcc else [])
    header += ["dev acc", "dev macro-F1", "trainable params", "steps", "train s"]
    rows = []
    for row in runs.itertuples(index=False):
        cells = [row.target, str(row.k), row.method, str(row.seed), f"{row.accuracy:.4f}", f"{row.macro_f1:.4f}"]
        cells += [DASH if pd.isna(row.mcc) else f"{row.mcc:.4f}"] if with_mcc else []
        cells += [f"{row.dev_accuracy:.4f}", f"{row.dev_macro_f1:.4f}", f"{row.trainable_params:,}", str(row.steps),
                  f"{row.train_seconds:.1f}"]
        rows.append(cells)
    return markdown_table(header, rows, text_columns=4)


def cost_table(runs: pd.DataFrame) -> str:
    """Per method: trainable parameters and the mean wall seconds per training step over all its runs.

    Every run of a report ran on the same machine under the same step budget, so the ratio to the baseline's
    seconds per step is the method's relative training cost (wall time: other load on the machine adds noise).
    """
    per_step = runs.assign(_s=runs["train_seconds"] / runs["steps"]).groupby("method")
    seconds, params = per_step["_s"].mean(), per_step["trainable_params"]
    base = seconds.get(BASELINE)
    rows = []
    for method in sorted(seconds.index, key=lambda m: (seconds[m], m)):
        low, high = int(params.get_group(method).min()), int(params.get_group(method).max())
        count = f"{low:,}" if low == high else f"{low:,}-{high:,}"
        ratio = DASH if base is None or base <= 0 else f"{seconds[method] / base:.2f}"
        rows.append([method, count, str(len(per_step.get_group(method))), f"{seconds[method]:.3f}", ratio])
    header = ["method", "trainable params", "runs", "train s/step (mean)", f"× {BASELINE}"]
    return markdown_table(header, rows)


def extras_sections(runs: pd.DataFrame) -> list[str]:
    """Per method that reports extras (``<method>_<name>`` columns: spot's chosen source, cpt's context length), a
    table of them, one row per run."""
    parts = []
    for method in sorted(runs["method"].unique()):
        chosen = runs[runs["method"] == method]
        names = [c for c in runs.columns if c.startswith(f"{method}_") and chosen[c].notna().any()]
        if not names:
            continue
        rows = [[row.target, str(row.k), str(row.seed), *(_extra(row[name]) for name in names)]
                for _, row in chosen.iterrows()]
        parts += [f"## {method}: what each run reports besides its scores",
                  markdown_table(["target", "k", "seed", *names], rows, text_columns=3 + len(names))]
    return parts


def _extra(value: object) -> str:
    """A cell: an int stays an int, though pandas holds the column as float (NaN in other methods' rows)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


RULES = {
    "best_dev": "the best-dev checkpoint (the earliest evaluated step with the best dev accuracy)",
    "last": "the last step",
}


def checkpoint_text(runs: pd.DataFrame) -> str:
    """Which checkpoint the test scores come from: one rule for every method (adapt.select)."""
    if "select" not in runs.columns or runs["select"].isna().all():
        return "Test scores come from the last training step (these runs recorded no dev curve)."
    rules = sorted(runs["select"].dropna().unique())
    named = " / ".join(RULES.get(rule, rule) for rule in rules)
    return f"Test scores come from {named}, the same rule (`adapt.select`) for every method."


def _number(value: float, digits: int = 4) -> str:
    return DASH if pd.isna(value) else f"{value:.{digits}f}"


def baselines_table(summary: pd.DataFrame) -> str:
    """Per (target, k, method), test accuracy: the majority class, the template alone (no prompt), the method's
    initial prompt (zero steps), the trained prompt, and what training added to the initial prompt."""
    header = ["target", "k", "method", "majority class", "template alone", "zero steps (initial prompt)",
              "trained", "training adds (points)"]
    rows = []
    for row in summary.itertuples(index=False):
        gain = DASH if pd.isna(row.zero_step_accuracy) else points(row.accuracy - row.zero_step_accuracy)
        rows.append([row.target, str(row.k), row.method, _number(row.majority_rate), _number(row.template_accuracy),
                     _number(row.zero_step_accuracy), _number(row.accuracy), gain])
    return markdown_table(header, rows, text_columns=3)


def dev_curves_section(dev: pd.DataFrame) -> list[str]:
    """The dev-curve metrics per (target, k, method), what they mean, and the chart."""
    if dev is None or dev.empty:
        return []
    rows = []
    for row in dev.itertuples(index=False):
        reach = getattr(row, REACH)
        if pd.isna(row.dev_reference):
            reached = DASH
        else:
            reached = "not reached" if pd.isna(reach) else str(int(reach))
        rows.append([row.target, str(row.k), row.method, _number(row.dev_zero_step), _number(row.dev_final),
                     _number(row.dev_best), _number(row.dev_reference), reached, _number(getattr(row, AREA))])
    header = ["target", "k", "method", "dev at step 0", "final dev", "best dev", "pt final dev (reference)",
              f"steps to {FRACTION:.0%} of it", "area under dev curve"]
    return [
        "## Dev curves (dev accuracy, mean over seeds)",
        "Every method scores the dev split at step 0 (its initial prompt), every `adapt.eval_every` steps and at "
        f"its last step. *Steps to {FRACTION:.0%}*: the first evaluated step at which the method's dev curve (mean "
        f"over seeds) reaches {FRACTION:.0%} of the reference, pt's final dev accuracy averaged over pt's seeds at "
        "the "
        "same target and k (a step between evaluations counts as the next evaluated one). *Area*: the trapezoid "
        "area under that curve divided by its step span, i.e. its mean dev accuracy over the run; higher means "
        "better sooner.",
        markdown_table(header, rows, text_columns=3),
        "![Dev accuracy against steps per target and k](dev_curves.png)",
    ]


def sources_table(sources: pd.DataFrame) -> str:
    header = ["source task", "teacher acc", "teacher macro-F1", "student acc", "student macro-F1",
              "student - teacher (acc points)"]
    rows = [
        [row.task, f"{row.teacher_accuracy:.4f}", f"{row.teacher_macro_f1:.4f}", f"{row.student_accuracy:.4f}",
         f"{row.student_macro_f1:.4f}", points(row.student_accuracy - row.teacher_accuracy)]
        for row in sources.itertuples(index=False)
    ]
    return markdown_table(header, rows)


def render_markdown(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    sources: pd.DataFrame,
    warnings: list[str] | None = None,
    dev: pd.DataFrame | None = None,
) -> str:
    """The text of ``transfer.md``; ``dev``: the dev-curve metrics (pipeline.report.curves.curve_metrics)."""
    counts = (
        f"{len(runs)} runs: {runs['target'].nunique()} target(s) × {runs['method'].nunique()} method(s) × "
        f"{runs['seed'].nunique()} seed(s), k = {', '.join(sorted(runs['k'].unique(), key=k_order))}; "
        "test split unless marked dev. " + checkpoint_text(runs)
    )
    parts = [
        "# Soft-prompt transfer report",
        counts,
        HOW_TO_READ,
        *[f"> **Warning:** {warning}" for warning in warnings or []],
        "## Verdict per target and k (test accuracy)",
        "\n".join(verdict_lines(runs, summary)),
        "## Scores (mean ± 95% interval over seeds)",
        scores_table(summary),
        "## Baselines: what training and transfer each add (test accuracy, mean over seeds)",
        baselines_table(summary),
        *dev_curves_section(dev),
        "## Mean over targets",
        means_table(summary),
        "## Cost per method (training only; wall time on this machine)",
        cost_table(runs),
        "## Runs (one row per seed)",
        runs_table(runs),
        *extras_sections(runs),
        "## Source tasks: teacher prompt vs distilled multitask student",
        sources_table(sources),
        "![Test accuracy per target, k and method with 95% intervals](transfer.png)",
        "![Training loss per target](curves.png)",
    ]
    return "\n\n".join(parts) + "\n"
