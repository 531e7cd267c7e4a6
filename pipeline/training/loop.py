"""The one training loop, used by every stage (source prompts, distillation, target adaptation).

nanoGPT order: set the learning rate, compute the loss, backward, clip, step, zero the grads.
Only the prompt module's parameters are optimised; the backbone is frozen and never wrapped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from pipeline.training.checkpoint import Checkpointer
from pipeline.training.selection import DevCurve
from pipeline.errors import PipelineError


@dataclass
class TrainConfig:
    """Settings of one training run."""

    steps: int  # optimizer steps (the budget every method gets)
    param_groups: list[dict] = field(default_factory=list)  # [{"params": [...], "lr": float}, ...]
    warmup_steps: int = 0  # linear warm-up, then linear decay to 0
    max_grad_norm: float = 1.0  # prompt gradients spike early on; clipping keeps lr 0.3-style rates stable
    seed: int = 0
    checkpoint: Checkpointer | None = None  # resume point that survives a killed stage
    dev: DevCurve | None = None  # dev evaluations at the steps it names, and the checkpoint the run ends with


@dataclass
class TrainResult:
    """What a run did: per-step losses (and components), its length and its wall time."""

    history: list[dict[str, float]]
    steps: int
    seconds: float
    dev_seconds: float = 0.0  # of ``seconds``, the dev evaluations after step 0 (the initial one precedes the clock)

    @property
    def final_loss(self) -> float:
        tail = self.history[-10:]
        return sum(h["loss"] for h in tail) / max(len(tail), 1)


def make_accelerator() -> Accelerator:
    """The device, without autocast: the frozen weights already have their dtype (``backbone.dtype``, cast once at
    load time), and autocast would only add a cast per op; the trained prompts stay fp32."""
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no")


def trainable_parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def train(
    module: nn.Module,
    batches: Iterator,
    compute_loss: Callable[[nn.Module, object], dict[str, torch.Tensor]],
    config: TrainConfig,
    description: str,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Optimise ``module`` for ``config.steps`` steps.

    ``compute_loss(module, batch)`` returns a dict with the total ``"loss"`` and any components to log.
    A non-finite loss stops the run with a PipelineError naming the step; the last good checkpoint stays.
    With ``config.checkpoint``, a run resumes from the last checkpoint of the same inputs.
    With ``config.dev``, the module is scored on dev at the steps it names (step 0 too) and ends as the checkpoint
    its rule selects; the curve and the kept state travel in the training checkpoint.
    """
    torch.manual_seed(config.seed)
    accelerator = accelerator or make_accelerator()
    groups = config.param_groups or [{"params": [p for p in module.parameters() if p.requires_grad]}]
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(config.warmup_steps, config.steps))
    dev = config.dev
    start, history = config.checkpoint.restore(module, optimizer, schedule, dev) if config.checkpoint else (0, [])
    if dev and start == 0 and dev.due(0, config.steps):
        dev.record(0, module)  # the initial prompt: the method's zero-step score
    if start and accelerator.is_local_main_process:
        # Says that the rerun continues rather than starts over (scripts/chaos.py counts these lines).
        print(f"{description}: resuming after step {start} of {config.steps} from the checkpoint in "
              f"{config.checkpoint.folder}", file=sys.stderr, flush=True)
    for _ in range(start):
        next(batches)  # replay the seeded batch stream up to the checkpoint
    module, optimizer = accelerator.prepare(module, optimizer)
    module.train()
    started, dev_seconds = time.perf_counter(), 0.0
    progress = tqdm(
        range(start, config.steps), desc=description, initial=start, total=config.steps,
        disable=not accelerator.is_local_main_process,
    )
    for step in progress:
        batch = next(batches)
        if accelerator.num_processes > 1:
            # Data parallel: every process draws the same seeded global batch and trains on its own slice;
            # DDP averages the gradients, which equals the global batch's mean gradient.
            batch = batch.shard(accelerator.process_index, accelerator.num_processes)
        with accelerator.autocast():
            parts = compute_loss(module, batch)
        loss = parts["loss"]
        logged = {name: accelerator.reduce(value.detach(), "mean") for name, value in parts.items()}
        if not torch.isfinite(logged["loss"]):
            kept = f"; the last good checkpoint is kept in {config.checkpoint.folder}" if config.checkpoint else ""
            raise PipelineError(
                f"{description}: loss became {logged['loss'].item()} at step {step}; lower the learning rate{kept}"
            )
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(module.parameters(), config.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        record = {name: float(value) for name, value in logged.items()}
        record["step"] = step
        history.append(record)
        progress.set_postfix(loss=f"{record['loss']:.4f}")
        if dev and dev.due(step + 1, config.steps):
            evaluating = time.perf_counter()
            dev.record(step + 1, accelerator.unwrap_model(module))
            dev_seconds += time.perf_counter() - evaluating
        if config.checkpoint and config.checkpoint.due(step, config.steps) and accelerator.is_main_process:
            config.checkpoint.save(step + 1, accelerator.unwrap_model(module), optimizer, schedule, history, dev)
    if dev:
        dev.select(accelerator.unwrap_model(module))
    seconds = time.perf_counter() - started
    return TrainResult(history=history, steps=config.steps, seconds=seconds, dev_seconds=dev_seconds)


def _linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor

