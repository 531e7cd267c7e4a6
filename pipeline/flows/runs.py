"""What the training flows share: opening their inputs, a checkpoint valid for their params, writing a finished run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState

from pipeline.store.tensors import save_tensors
from pipeline.training.checkpoint import Checkpointer, fingerprint
from pipeline.store.atomic import atomic_dir, atomic_files, replacing, write_json
from pipeline.model.backbone import Backbone, load_backbone
from pipeline.model.precision import dtype_name, dtype_setting, resolve_dtype
from pipeline.data.batching import TaskData, load_task
from pipeline.config.params import ModelSettings, NumericsSettings
from pipeline.config.schema import Params
from pipeline.layout import BACKBONE_DIR, CHECKPOINT_ROOT, prepared_dir
from pipeline.store.tracking import log_run, read_sections
from pipeline.training.loop import TrainResult



def checkpointer(stage: str, params: Params, keys: tuple[str, ...], backbone: Backbone, **extra: Any) -> Checkpointer:
    """The checkpoint of stage instance ``stage``, valid only for the params ``keys`` it reads, backbone and extras."""
    # The dtype too: a run half in fp32 and half in bf16 would be neither.
    identity = {
        "stage": stage, "backbone": backbone.info.fingerprint, "dtype": dtype_name(backbone.dtype),
        **read_sections(params.raw, keys), **extra,
    }
    return Checkpointer(CHECKPOINT_ROOT / stage, params.checkpoint_every, fingerprint(identity))


def open_backbone(params: Params) -> Backbone:
    """The materialised backbone on this process's device: CPU, the GPU, or under a multi-process launcher
    (torchrun, accelerate launch) the GPU of this process's local rank, where accelerate puts the prompt too.
    Its weights get ``backbone.dtype`` as resolved for that device (:mod:`pipeline.model.precision`)."""
    device = PartialState().device
    portable = params.numerics.cpu_math == "portable"
    return load_backbone(BACKBONE_DIR, device, resolve_dtype(dtype_setting(params.raw), device, portable))


def open_task(backbone: Backbone, name: str, model: ModelSettings) -> TaskData:
    return load_task(backbone, prepared_dir(name), model.max_length)


def artifact_meta(backbone: Backbone, model: ModelSettings, numerics: NumericsSettings, **extra: Any) -> dict[str, Any]:
    """What an artifact needs to be used safely: the backbone and tokenizer it was made with, the prompt shape; and
    what its bytes follow besides its inputs: the dtype, the threads and the CPU math path."""
    return {
        "backbone": backbone.info.fingerprint,
        "backbone_name": backbone.info.name,
        "hidden_size": backbone.info.hidden_size,
        "prompt_length": model.prompt_length,
        "backbone_dtype": dtype_name(backbone.dtype),  # the dtype its scores (and teacher outputs) were computed in
        # params numerics as given, never what this machine resolved them to: the bytes must not name the machine
        "numerics": numerics.record(),
        **extra,
    }


def task_meta(task: TaskData) -> dict[str, Any]:
    return {"task": task.name, "data_sha256": task.info.source_sha256, "label_words": task.info.label_words}


def write_run(
    out_dir: Path,
    tensors: dict[str, dict[str, torch.Tensor]],
    meta: dict[str, Any],
    metrics: dict[str, Any],
    result: TrainResult,
    stage: str,
    params: dict[str, Any],
    timing_file: Path,
) -> None:
    """Write ``<name>.safetensors`` per tensor group and ``metrics.json`` into ``out_dir``, the wall time into
    ``timing_file``, and log ``params`` (the sections stage instance ``stage`` reads), the metrics and the learning
    curves to ``dvclive/<stage>/``. Wall time lives apart so that every other file repeats byte for byte; a
    ``timing_file`` outside ``out_dir`` keeps it out of a later stage's folder dependency too.
    """
    if not PartialState().is_main_process:
        return  # under `accelerate launch`, one process writes
    # One run's files replace the old ones together, once all are written: a reader, a full disk or a stop signal
    # never leaves a new prompt beside old metrics. The dvclive log goes first, so a failure leaves the run old.
    with replacing(out_dir), atomic_files(out_dir) as tmp:
        for name, group in tensors.items():
            save_tensors(tmp / f"{name}.safetensors", group, meta)
        write_json(tmp / "metrics.json", metrics)
        log_run(stage, params, metrics, result.history)
    write_json(timing_file, _timing(result))  # after: the run is whole without it


@dataclass
class FinishedRun:
    """One trained run, ready to be written: tensor groups, their metadata, its metrics and its training record."""

    tensors: dict[str, dict[str, torch.Tensor]]
    meta: dict[str, Any]
    metrics: dict[str, Any]
    result: TrainResult


def write_run_folders(
    out_dir: Path, timing_file: Path, runs: dict[str, FinishedRun], stage: str, params: dict[str, Any]
) -> None:
    """Write several runs of one stage (adapt@: one per k) as ``out_dir/<name>/`` folders holding
    ``<group>.safetensors``, ``metrics.json`` and ``history.json`` (the loss per step, which the report draws).

    ``out_dir`` is replaced as a whole, so a run dropped from the stage leaves no folder behind and a killed stage
    leaves the old folder whole. Wall times go to ``timing_file``, outside it, so the folder repeats byte for
    byte. dvclive gets one log for the stage: curves ``train/<name>/<loss>``, the dev curve ``dev/<name>/accuracy``
    (where the run recorded one) and metrics under ``<name>/``.
    """
    if not PartialState().is_main_process:
        return  # under `accelerate launch`, one process writes
    history = [
        {"step": record["step"], **{f"{name}/{key}": value for key, value in record.items() if key != "step"}}
        for name, run in runs.items()
        for record in run.result.history
    ]
    curves = {
        f"dev/{name}/accuracy": run.metrics["dev_curve"] for name, run in runs.items() if "dev_curve" in run.metrics
    }
    # The run folders are swapped in last, once the dvclive log and the wall times are written: a reader, a full
    # disk or a stop signal never leaves new runs beside an old log.
    with replacing(out_dir), atomic_dir(out_dir) as tmp:
        for name, run in runs.items():
            for group, tensors in run.tensors.items():
                save_tensors(tmp / name / f"{group}.safetensors", tensors, run.meta)
            write_json(tmp / name / "metrics.json", run.metrics)
            write_json(tmp / name / "history.json", [_rounded(record) for record in run.result.history])
        log_run(stage, params, {name: run.metrics for name, run in runs.items()}, history, curves=curves)
        write_json(timing_file, {name: _timing(run.result) for name, run in runs.items()})


def _timing(result: TrainResult) -> dict[str, float]:
    """Wall times of a run: the training loop, and the part of it spent scoring the dev curve (to 0.1 ms: a small
    model scores a short dev split in a few milliseconds, which two decimals would round to nothing)."""
    return {"train_seconds": round(result.seconds, 2), "dev_seconds": round(result.dev_seconds, 4)}


def _rounded(record: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 6) for key, value in record.items()}
