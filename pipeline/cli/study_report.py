"""The study report: every finished phase of a study (``python -m pipeline study``) in one README.md, with the
issue-12 goals as paired differences over seeds and the ablations against the phase they change.

It reads only what the phases left in the study's out folder (each phase's transfer.csv, summary.csv,
similarity.csv, source_zero_step.csv and phase.json), so it can be rewritten at any time without the workspace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.cli.study import PHASE_FILE, load_study
from pipeline.report.markdown import difference_text, markdown_table, score_text
from pipeline.report.stats import Interval, mean_interval, paired_difference

BASELINE, TRANSFER = "pt", "mpt"
# The tuning grid (issue 12, item 5): a phase that changes only these keys is a grid point of the methods it runs.
GRID_KEYS = frozenset({"adapt.lr", "adapt.factor_lr", "adapt.pt_init"})
README = "README.md"


@dataclass
class PhaseResult:
    name: str
    record: dict  # phase.json: commit, overrides, stages, seconds
    runs: pd.DataFrame  # transfer.csv: one row per (target, method, k, seed)
    folder: Path

    @property
    def methods(self) -> set[str]:
        return set(self.runs["method"])

    @property
    def ks(self) -> set[str]:
        return set(self.runs["k"].astype(str))

    @property
    def setting(self) -> dict:
        """The phase's own overrides beyond those every phase derives (methods, seeds) and the k lists."""
        skip = ("adapt.methods", "seeds")
        return {k: v for k, v in self.record["set"].items() if k not in skip and not k.endswith(".k_shot")}


def read_phases(out: Path, names: list[str]) -> tuple[list[PhaseResult], list[str]]:
    """The finished phases in study order, and the names of those not run yet."""
    done, missing = [], []
    for name in names:
        folder = out / name
        if not (folder / PHASE_FILE).is_file():
            missing.append(name)
            continue
        runs = pd.read_csv(folder / "transfer.csv", dtype={"k": str})
        record = json.loads((folder / PHASE_FILE).read_text(encoding="utf-8"))
        done.append(PhaseResult(name, record, runs, folder))
    return done, missing


def by_seed(runs: pd.DataFrame, target: str, k: str, method: str, column: str = "accuracy") -> dict[int, float]:
    rows = runs[(runs["target"] == target) & (runs["k"] == k) & (runs["method"] == method)]
    return {int(seed): float(value) for seed, value in zip(rows["seed"], rows[column])}


def target_mean_difference(
    runs: pd.DataFrame, baseline_runs: pd.DataFrame, k: str, method: str, baseline: str = BASELINE
) -> Interval | None:
    """``method`` minus ``baseline`` averaged over targets, seed by seed, then its interval over seeds (Q1's
    "mean over targets, interval above 0"): a seed enters only where every target has both runs."""
    targets = sorted(set(runs.loc[runs["k"] == k, "target"]) & set(baseline_runs.loc[baseline_runs["k"] == k, "target"]))
    if not targets:
        return None
    per_target = [(by_seed(runs, t, k, method), by_seed(baseline_runs, t, k, baseline)) for t in targets]
    seeds = set.intersection(*(set(a) & set(b) for a, b in per_target))
    if not seeds:
        return None
    return mean_interval([sum(a[s] - b[s] for a, b in per_target) / len(targets) for s in sorted(seeds)])


def _paired_cell(a: dict[int, float], b: dict[int, float]) -> str:
    try:
        return difference_text(paired_difference(a, b))
    except ValueError:
        return "–"


def _score_cell(values: dict[int, float]) -> str:
    return score_text(mean_interval(list(values.values()))) if values else "–"


def reference_phase(phase: PhaseResult, phases: list[PhaseResult]) -> PhaseResult | None:
    """The phase an ablation is compared with: the first phase with pt and mpt runs at one of its k."""
    return next((p for p in phases if {BASELINE, TRANSFER} <= p.methods and p.ks & phase.ks), None)


def comparison_section(phase: PhaseResult) -> list[str]:
    """Every method of a phase against pt, per target and k, paired by seed."""
    runs, lines = phase.runs, []
    rows = []
    for (target, k), group in runs.groupby(["target", "k"], sort=True):
        base = by_seed(runs, target, k, BASELINE)
        for method in sorted(set(group["method"]), key=lambda m: (m != BASELINE, m != TRANSFER, m)):
            scores = by_seed(runs, target, k, method)
            zero = by_seed(runs, target, k, method, "zero_step_accuracy")
            diff = "" if method == BASELINE else _paired_cell(scores, base)
            rows.append([target, k, method, str(len(scores)), _score_cell(scores), diff, _score_cell(zero)])
    header = ["target", "k", "method", "seeds", "test accuracy", "− pt (paired)", "zero-step accuracy"]
    lines.append(markdown_table(header, rows, text_columns=3))
    return lines


def goals_section(phases: list[PhaseResult]) -> list[str]:
    lines = []
    for phase in phases:
        if not {BASELINE, TRANSFER} <= phase.methods:
            continue
        for k in sorted(phase.ks):
            diff = target_mean_difference(phase.runs, phase.runs, k, TRANSFER)
            if diff is not None:
                lines.append(f"- **Q1** ({phase.name}, k = {k}): mpt − pt, mean over targets: {difference_text(diff)}.")
    for phase in phases:
        if {TRANSFER, "mpt_full"} <= phase.methods and "all" in phase.ks:
            diff = target_mean_difference(phase.runs, phase.runs, "all", TRANSFER, "mpt_full")
            if diff is not None:
                lines.append(f"- **Q2** ({phase.name}, k = all): mpt − mpt_full, mean over targets: "
                             f"{difference_text(diff)} (goal: within 1 point).")
    for phase in phases:
        summary_file = phase.folder / "summary.csv"
        if not ({BASELINE, TRANSFER} <= phase.methods and "all" in phase.ks and summary_file.is_file()):
            continue
        summary = pd.read_csv(summary_file, dtype={"k": str})
        for target, group in summary[summary["k"] == "all"].groupby("target"):
            steps = dict(zip(group["method"], group["dev_steps_to_95pt"]))
            lines.append(
                f"- **Q4** ({phase.name}, {target}): steps to 95 % of pt's final dev accuracy (mean curve over seeds): "
                f"mpt {_steps(steps.get(TRANSFER))}, pt {_steps(steps.get(BASELINE))} (goal: mpt ≤ 1/3 of pt's)."
            )
    for phase in phases:
        if TRANSFER not in phase.methods:
            continue
        for (target, k), group in phase.runs[phase.runs["method"] == TRANSFER].groupby(["target", "k"]):
            zero = mean_interval(list(group["zero_step_accuracy"]))
            template = float(group["template_accuracy"].iloc[0])
            lines.append(
                f"- **Q5** ({phase.name}, {target}, k = {k}): zero-step mpt {zero.mean:.3f} vs the template alone "
                f"{template:.3f}: {100 * (zero.mean - template):+.1f} points (goal: ≥ +5 on targets related to a source)."
            )
        break  # the zero-step prompt of mpt does not depend on k or on the phase's adapt settings
    return lines or ["- No phase with both pt and mpt has finished yet."]


def _steps(value: object) -> str:
    return "never" if value is None or pd.isna(value) else f"{int(value)}"


def tuned_section(phases: list[PhaseResult], base_keys: set[str]) -> list[str]:
    """pt and mpt each at their best grid point, picked on dev (mean dev accuracy over targets and seeds of the
    checkpoint the test score comes from), then compared on test, paired by seed: the strongest pt against the
    strongest mpt, each given the grid its phases define (the reference phase counts as one point)."""
    lines = []
    for k in sorted({k for phase in phases for k in phase.ks}):
        picked = {}
        for method in (BASELINE, TRANSFER):
            points = []
            for phase in phases:
                own = set(phase.setting) - base_keys
                rows = phase.runs[(phase.runs["method"] == method) & (phase.runs["k"] == k)]
                if not rows.empty and own <= GRID_KEYS:
                    points.append((float(rows["dev_accuracy"].mean()), phase))
            if not points:
                continue
            dev, best = max(points, key=lambda point: point[0])  # max keeps the first of equal scores: study order
            picked[method] = best
            grid = ", ".join(f"{phase.name} {score:.3f}" for score, phase in points)
            lines.append(f"- k = {k}, {method}: dev accuracy per grid point: {grid}; picked: **{best.name}**.")
        if len(picked) == 2:
            diff = target_mean_difference(picked[TRANSFER].runs, picked[BASELINE].runs, k, TRANSFER)
            if diff is not None:
                lines.append(f"- k = {k}: tuned mpt − tuned pt, mean over targets: {difference_text(diff)}.")
    return lines or ["- No grid point has finished yet."]


def ablation_section(phase: PhaseResult, reference: PhaseResult) -> list[str]:
    """An ablation's runs against the reference phase's mpt and pt, per target, paired by seed."""
    rows = []
    for (target, k), group in phase.runs.groupby(["target", "k"], sort=True):
        for method in sorted(set(group["method"])):
            scores = by_seed(phase.runs, target, k, method)
            rows.append([
                target, k, method, _score_cell(scores),
                _paired_cell(scores, by_seed(reference.runs, target, k, method)),
                _paired_cell(scores, by_seed(reference.runs, target, k, BASELINE)),
            ])
    header = ["target", "k", "method", "test accuracy", f"− same method in {reference.name}", f"− pt in {reference.name}"]
    lines = [markdown_table(header, rows, text_columns=3)]
    for method in sorted(phase.methods):
        for k in sorted(phase.ks & reference.ks):
            diff = target_mean_difference(phase.runs, reference.runs, k, method, method)
            vs_pt = target_mean_difference(phase.runs, reference.runs, k, method, BASELINE)
            if diff is not None and vs_pt is not None:
                lines.append(f"\nMean over targets at k = {k}: {method} here − {method} in {reference.name} "
                             f"{difference_text(diff)}; − pt {difference_text(vs_pt)}.")
    return lines


def sources_section(phases: list[PhaseResult]) -> list[str]:
    """Source × target: each source teacher's zero-step dev accuracy on the target and the cosine of the prompts."""
    zero = _first_csv(phases, "source_zero_step.csv")
    cosine = _first_csv(phases, "similarity.csv")
    if zero is None and cosine is None:
        return ["Not measured yet (needs a finished phase with spot runs, and one with pt runs)."]
    lines = []
    if zero is not None:
        table = zero.pivot(index="source", columns="target", values="dev_accuracy")
        rows = [[source, *[f"{v:.3f}" for v in table.loc[source]]] for source in table.index]
        lines += ["Zero-step dev accuracy of each source teacher's prompt on each target (spot's candidates):", "",
                  markdown_table(["source", *table.columns], rows), ""]
    if cosine is not None:
        cosine = cosine[cosine["k"].astype(str) == sorted(cosine["k"].astype(str))[0]]
        table = cosine.pivot(index="source", columns="target", values="cosine")
        rows = [[source, *[f"{v:.3f}" for v in table.loc[source]]] for source in table.index]
        k = cosine["k"].iloc[0]
        lines += [f"Cosine similarity of the mean-pooled source prompt and the target's trained pt prompt "
                  f"(k = {k}, mean over seeds), as SPoT compares task prompts:", "",
                  markdown_table(["source", *table.columns], rows)]
    return lines


def _first_csv(phases: list[PhaseResult], name: str) -> pd.DataFrame | None:
    for phase in phases:
        if (phase.folder / name).is_file():
            return pd.read_csv(phase.folder / name, dtype={"k": str})
    return None


def write_study_report(study_file: Path, root: Path) -> Path:
    """Write ``<out>/README.md`` from the study's finished phases; return its path."""
    study = load_study(study_file, root)
    phases, missing = read_phases(study.out, [p.name for p in study.phases])
    commits = sorted({p.record["commit"][:9] for p in phases})
    hours = sum(_phase_seconds(p) for p in phases) / 3600
    base_keys = _base_keys(study)
    lines = [
        f"# Study `{study.name}`",
        "",
        f"Written by `python -m pipeline study {Path(study_file).as_posix()}` from the phases below "
        f"(run at commit {', '.join(commits) or '–'}, {hours:.1f} h of stage time on this machine; a phase cut short "
        "counts its training loops only). Scores are test "
        "accuracy, mean [95 % t-interval] over seeds; differences are paired by seed (same few-shot draw and batch "
        "order). Each phase's own report (transfer.md, charts, summary.csv) is in its folder.",
        "",
        "Phases reported: " + (", ".join(f"[{p.name}]({p.name}/transfer.md){_partial_text(p)}" for p in phases)
                               or "none") + ".",
        "Phases not run yet: " + (", ".join(missing) or "none") + ".",
        "",
        "## Goals (issue 12)",
        "",
        *goals_section(phases),
        "",
        "## Each method at its best learning rate and init, picked on dev (item 5)",
        "",
        *tuned_section(phases, base_keys),
        "",
        "## Sources and targets",
        "",
        *sources_section(phases),
    ]
    for phase in phases:
        setting = ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in phase.setting.items() if k not in base_keys)
        lines += ["", f"## Phase {phase.name}" + (f" ({setting})" if setting else ""), ""]
        reference = reference_phase(phase, phases)
        if BASELINE in phase.methods or reference is None or reference is phase:
            lines += comparison_section(phase)
        else:
            lines += ablation_section(phase, reference)
    path = study.out / README
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _phase_seconds(phase: PhaseResult) -> float:
    """The phase's recorded wall time; a phase cut short recorded none, so the sum of its runs' training loops."""
    if "seconds" in phase.record:
        return float(phase.record["seconds"])
    return float(phase.runs["train_seconds"].sum()) if "train_seconds" in phase.runs else 0.0


def _partial_text(phase: PhaseResult) -> str:
    """" (cut short: ...)" for a phase reported before all its runs finished (``study --report-finished``)."""
    partial = phase.record.get("partial")
    if not partial:
        return ""
    seeds = ", ".join(str(seed) for seed in partial["seeds"])
    return f" (cut short: seeds {seeds} only, {partial['runs']} of its {partial['planned']} runs)"


def _base_keys(study) -> set[str]:
    """Overrides every phase shares (the study's base): said once, not per phase."""
    shared = None
    for phase in study.phases:
        items = {(k, json.dumps(v)) for k, v in phase.overrides.items()}
        shared = items if shared is None else shared & items
    return {k for k, _ in shared or set()}
