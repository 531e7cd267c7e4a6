"""Every path on disk, relative to the repo root, and the runs params.yaml plans. Torch-free.

No other module spells these paths (dvc.yaml repeats them as the stages' outputs). One DVC stage
``adapt@<target>-<method>-<seed>`` trains every k of its target's ``k_shot`` list and writes

    results/adapt/<target>-<method>/seed<seed>/k<k>/      one run folder per k (params.safetensors,
                                                          metrics.json, history.json), the stage's cached output
    results/adapt/<target>-<method>/seed<seed>.timing.json   wall time per k, kept apart (it never repeats)

so the stage output repeats byte for byte, and each ``k<k>/`` folder is a run folder for ``python -m pipeline
export|predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config.schema import Params
from pipeline.config.tasks import ALL, KShot

BACKBONE_DIR = Path("models/backbone")  # backbone: the materialised frozen LM (safetensors + tokenizer)
PREPARED_DIR = Path("data/prepared")  # data@<task>: one folder per task
RESULTS_DIR = Path("results")
REPORTS_DIR = Path("reports")  # report: transfer.md/.csv/.png, summary.csv, curves.png, dev_curves.png, metrics.json
METRICS_FILE = REPORTS_DIR / "metrics.json"  # the report's headline metrics, which `dvc exp show` lists
COMPARE_DIR = REPORTS_DIR / "compare"  # `python -m pipeline compare`'s default output
DVCLIVE_DIR = Path("dvclive")  # dvclive/<stage>/: each training stage's params, metrics and curves
# Outside every stage's outputs: DVC deletes those before a rerun, and a checkpoint must survive a kill.
CHECKPOINT_ROOT = Path(".checkpoints")
# Scores several stages share (the template alone, per target), computed once: pipeline.store.memo.
MEMO_DIR = CHECKPOINT_ROOT / "memo"


def prepared_dir(task: str) -> Path:
    """data@<task>'s output."""
    return PREPARED_DIR / task


SOURCES_DIR = RESULTS_DIR / "source"  # source@<task>: <task>/prompt.safetensors, teacher.safetensors, metrics.json
DISTILL_DIR = RESULTS_DIR / "distill"  # distill: shared.safetensors (P and the task factors), metrics.json
DISTILL_FILE = DISTILL_DIR / "shared.safetensors"


# Wall times live outside the folders later stages depend on: a rerun that repeats a stage's real outputs byte for
# byte must not look like a change to the stages after it (distill depends on results/source as a whole).
TIMING_DIR = RESULTS_DIR / "timing"
# method_inputs: <method>.json per target method, what its adapt@ runs read upstream (knobs, hashes of P or of the
# source prompts): each adapt@ stage depends on its method's file alone (see pipeline/config/method_inputs.py).
METHOD_INPUTS_DIR = RESULTS_DIR / "method_inputs"


def source_dir(task: str, results_dir: Path = RESULTS_DIR) -> Path:
    """source@<task>'s output folder."""
    return Path(results_dir) / SOURCES_DIR.relative_to(RESULTS_DIR) / task


def source_timing_file(task: str, results_dir: Path = RESULTS_DIR) -> Path:
    """source@<task>'s wall time, ``{"train_seconds": s}``, outside results/source."""
    return Path(results_dir) / TIMING_DIR.relative_to(RESULTS_DIR) / "source" / f"{task}.timing.json"


def method_inputs_file(method: str, results_dir: Path = RESULTS_DIR) -> Path:
    """What target method ``method`` reads upstream, as stage method_inputs wrote it."""
    return Path(results_dir) / METHOD_INPUTS_DIR.relative_to(RESULTS_DIR) / f"{method}.json"


def distill_dir(results_dir: Path = RESULTS_DIR) -> Path:
    """distill's output folder."""
    return Path(results_dir) / DISTILL_DIR.relative_to(RESULTS_DIR)


@dataclass(frozen=True)
class AdaptRun:
    """One run of the comparison: a method adapted to a target with k training examples under one seed."""

    target: str
    method: str
    seed: int
    k: KShot

    @property
    def stage(self) -> str:
        """The DVC stage that makes this run (DVC names matrix stages by their values joined with '-')."""
        return stage_name(self.target, self.method, self.seed)


def stage_name(target: str, method: str, seed: int) -> str:
    return f"adapt@{target}-{method}-{seed}"


def k_label(k: KShot) -> str:
    """``k16`` / ``kall``: the run folder's name."""
    return f"k{k}"


def k_order(k: KShot | str) -> tuple[int, int]:
    """Sort key for k values (ints or their strings): numbers ascending, then "all"."""
    return (1, 0) if str(k) == ALL else (0, int(k))


def stage_dir(target: str, method: str, seed: int, results_dir: Path = RESULTS_DIR) -> Path:
    """The folder stage ``adapt@<target>-<method>-<seed>`` writes, holding one ``k<k>/`` run folder per k."""
    return Path(results_dir) / "adapt" / f"{target}-{method}" / f"seed{seed}"


def timing_file(target: str, method: str, seed: int, results_dir: Path = RESULTS_DIR) -> Path:
    """The stage's wall times, ``{"k<k>": {"train_seconds": s}}``, beside (not inside) its cached folder."""
    return stage_dir(target, method, seed, results_dir).with_suffix(".timing.json")


def run_dir(run: AdaptRun, results_dir: Path = RESULTS_DIR) -> Path:
    return stage_dir(run.target, run.method, run.seed, results_dir) / k_label(run.k)


def planned_runs(params: Params) -> list[AdaptRun]:
    """Every run params.yaml asks for: target_tasks × their k_shot × adapt.methods × seeds."""
    return [
        AdaptRun(target, method, seed, k)
        for target in params.target_tasks
        for k in params.tasks[target].k_shot
        for method in params.methods
        for seed in params.seeds
    ]
