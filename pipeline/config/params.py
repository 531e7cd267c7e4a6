"""Typed views of the training sections of params.yaml (model, source, distill, adapt)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.errors import PipelineError
from pipeline.config.load import check_keys, optional, positive, require, section
from pipeline.config.method_inputs import SHARED_KEYS, knob_keys

NUMBER = (int, float)


@dataclass(frozen=True)
class ModelSettings:
    """Shared by every run on the backbone (params ``model``)."""

    prompt_length: int  # virtual tokens l
    max_length: int  # input tokens after the prompt; longer inputs lose their start
    batch_size: int
    eval_batch_size: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ModelSettings:
        node = section(params, "model")
        return cls(**{key: positive(node, key, int, "model") for key in cls.__dataclass_fields__})


@dataclass(frozen=True)
class StepSettings:
    """A training budget and its learning rates (params ``source``, ``distill`` or ``adapt``)."""

    steps: int
    lr: float  # for full prompts (P, a teacher prompt)
    factor_lr: float  # for low-rank factors (U, V, L), which start at 1 and move on another scale
    warmup_steps: int

    @classmethod
    def from_params(cls, params: dict[str, Any], key: str) -> StepSettings:
        node = section(params, key)
        warmup = require(node, "warmup_steps", int, key)
        steps = positive(node, "steps", int, key)
        if not 0 <= warmup < steps:
            raise PipelineError(f"params.yaml: {key}.warmup_steps must be in [0, {key}.steps), got {warmup}")
        return cls(
            steps=steps,
            lr=float(positive(node, "lr", NUMBER, key)),
            factor_lr=float(positive(node, "factor_lr", NUMBER, key)) if "factor_lr" in node else 0.0,
            warmup_steps=warmup,
        )


@dataclass(frozen=True)
class DistillSettings:
    """MPT distillation (params ``distill``): loss = task + λ·(KL_T + MSE)."""

    rank: int
    lambda_: float
    temperature: float
    # False: one shared prompt P for every source task, no task factors (the "no decomposition" ablation).
    decomposition: bool = True

    @classmethod
    def from_params(cls, params: dict[str, Any], prompt_length: int, hidden_size: int | None) -> DistillSettings:
        """``hidden_size`` None checks the rank against the prompt length only (the backbone is not loaded yet)."""
        node = section(params, "distill")
        rank = positive(node, "rank", int, "distill")
        limit = prompt_length if hidden_size is None else min(prompt_length, hidden_size)
        if rank > limit:
            raise PipelineError(
                f"params.yaml: distill.rank must be <= {limit} (a rank-r factor of an l x d prompt needs "
                f"r <= min(l, d); model.prompt_length is {prompt_length}), got {rank}"
            )
        lam = require(node, "lambda", NUMBER, "distill")
        if lam < 0:
            raise PipelineError(f"params.yaml: distill.lambda must be >= 0, got {lam}")
        return cls(
            rank=rank,
            lambda_=float(lam),
            temperature=float(positive(node, "temperature", NUMBER, "distill")),
            decomposition=optional(node, "decomposition", bool, "distill", True),
        )


def freeze_shared(params: dict[str, Any]) -> bool:
    """``adapt.freeze_shared``: whether target ``mpt`` keeps P frozen (True, the paper) or trains it with L."""
    return require(section(params, "adapt"), "freeze_shared", bool, "adapt")


def seeds_of(params: dict[str, Any]) -> list[int]:
    """``seeds``: the adapt@ runs' seeds (prompt init, batch order, few-shot draw); distinct integers >= 0."""
    seeds = section(params, "seeds")
    if (
        not isinstance(seeds, list) or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise PipelineError(f"params.yaml: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise PipelineError("params.yaml: seeds lists a seed twice")
    return seeds


def seed_of(params: dict[str, Any]) -> int:
    return require(params, "seed", int, "params")


def task_names(params: dict[str, Any], key: str) -> list[str]:
    """``source_tasks`` or ``target_tasks``: a non-empty list of distinct names, each defined under ``tasks``."""
    names, tasks = section(params, key), section(params, "tasks")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise PipelineError(f"params.yaml: {key} must be a non-empty list of task names defined under tasks")
    for name in names:
        if name not in tasks:
            raise PipelineError(f"params.yaml: {key} names {name!r}, which is not defined under tasks")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineError(f"params.yaml: {key} lists {duplicates[0]!r} twice")
    return names


PTUNING_ENCODERS = ("mlp", "lstm")
PT_INITS = ("vocab", "label_words")


@dataclass(frozen=True)
class MethodSettings:
    """Knobs of single target methods (params ``adapt``); a key left out takes the default given here."""

    encoder_lr: float = 0.001  # weights of small networks: ptuning's prompt encoder, attempt's attention projection
    ptuning_encoder: str = "mlp"  # ptuning's prompt encoder: mlp | lstm (PEFT's PromptEncoder)
    cpt_examples: int = 4  # cpt: training examples written out as the context (class-balanced, seeded)
    cpt_epsilon: float = 0.1  # cpt: L2 radius of each context token's change, times sqrt(d / 2048) as PEFT scales it
    # pt's initial prompt: vocab (sampled vocabulary embeddings) | label_words (the target's label-word embeddings
    # first, sampled vocabulary after them: Lester et al. 2021's class-label init)
    pt_init: str = "vocab"
    # mpt, mpt_full: rank of the target factor L = U V; 0: distill.rank (L starts as the mean source factors). A
    # larger rank lets a target say more with P still frozen: the extra components start with a product of zero.
    rank: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MethodSettings:
        node, defaults = section(params, "adapt"), cls()
        encoder = defaults.ptuning_encoder
        if "ptuning_encoder" in node:
            encoder = require(node, "ptuning_encoder", str, "adapt")
        if encoder not in PTUNING_ENCODERS:
            raise PipelineError(
                f"params.yaml: adapt.ptuning_encoder must be one of {', '.join(PTUNING_ENCODERS)}, got {encoder!r}"
            )

        def number(key: str, kind: type | tuple[type, ...]) -> Any:
            return positive(node, key, kind, "adapt") if key in node else getattr(defaults, key)

        pt_init = optional(node, "pt_init", str, "adapt", defaults.pt_init)
        if pt_init not in PT_INITS:
            raise PipelineError(f"params.yaml: adapt.pt_init must be one of {', '.join(PT_INITS)}, got {pt_init!r}")
        return cls(
            pt_init=pt_init,
            rank=_non_negative(node, "rank", defaults.rank),
            encoder_lr=float(number("encoder_lr", NUMBER)),
            ptuning_encoder=encoder,
            cpt_examples=number("cpt_examples", int),
            cpt_epsilon=float(number("cpt_epsilon", NUMBER)),
        )


def _non_negative(node: dict[str, Any], key: str, default: int) -> int:
    value = optional(node, key, int, "adapt", default)
    if value < 0:
        raise PipelineError(f"params.yaml: adapt.{key} must be >= 0, got {value}")
    return value


SELECT_RULES = ("last", "best_dev")


@dataclass(frozen=True)
class DevSettings:
    """The dev curve a training stage records and the checkpoint rule (params ``<section>.eval_every``,
    ``<section>.select``): ``adapt`` for every target method, so no method is judged by a different rule, and
    ``source`` for the teachers (trained until dev plateaus, the best-dev prompt kept)."""

    eval_every: int = 10  # steps between dev evaluations, besides step 0 (the initial prompt) and the last; 0: none
    # best_dev: the earliest step with the best dev accuracy, as the prompt-tuning papers select (Lester et al. 2021,
    # ATTEMPT, MPT); it spares a method that overshoots late in a short budget. last: the final step.
    select: str = "best_dev"

    @classmethod
    def from_params(cls, params: dict[str, Any], key: str = "adapt") -> DevSettings:
        node, defaults = section(params, key), cls()
        every = optional(node, "eval_every", int, key, defaults.eval_every)
        if every < 0:
            raise PipelineError(f"params.yaml: {key}.eval_every must be >= 0 (0: no dev curve), got {every}")
        select = optional(node, "select", str, key, defaults.select)
        if select not in SELECT_RULES:
            raise PipelineError(f"params.yaml: {key}.select must be one of {', '.join(SELECT_RULES)}, got {select!r}")
        if select == "best_dev" and every == 0:
            raise PipelineError(f"params.yaml: {key}.select: best_dev needs a dev curve; set {key}.eval_every > 0")
        return cls(eval_every=every, select=select)


CPU_MATH = ("native", "portable")


@dataclass(frozen=True)
class NumericsSettings:
    """How the training stages compute (params ``numerics``): with the data, the seeds and the other params, these
    fix a trained artifact's bytes, so the environment a stage runs in (OMP_NUM_THREADS, MKL_CBWR, ...) cannot
    change them. pipeline.model.numerics applies them at the start of a training stage."""

    # Intra-op CPU threads. Not a speed knob only: parallel kernels split their work by thread count (torch's
    # reductions to one value, MKL calls from per-thread buffers in CPU attention), so it changes the rounding.
    threads: int = 2  # the count the README's figures were measured with (a 2-core machine)
    # native: MKL's reproducible (CNR) mode on the branch it picks for this CPU, torch's kernels for this CPU: the
    # same bytes on machines with the same CPU type. portable: MKL's COMPATIBLE branch and torch's AVX2 kernels on
    # every x86-64 CPU: the same bytes on any x86-64 CPU with AVX2 (Intel or AMD), at ~3x the matmul time.
    cpu_math: str = "native"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> NumericsSettings:
        node, defaults = params.get("numerics", {}), cls()
        if not isinstance(node, dict):
            raise PipelineError("params.yaml: numerics must be a mapping with keys threads, cpu_math")
        check_keys(node, cls.__dataclass_fields__, "numerics")
        threads = positive(node, "threads", int, "numerics") if "threads" in node else defaults.threads
        cpu_math = optional(node, "cpu_math", str, "numerics", defaults.cpu_math)
        if cpu_math not in CPU_MATH:
            raise PipelineError(
                f"params.yaml: numerics.cpu_math must be one of {', '.join(CPU_MATH)}, got {cpu_math!r}"
            )
        return cls(threads=threads, cpu_math=cpu_math)

    def record(self) -> dict[str, Any]:
        """What an artifact records of them (its metadata) and a checkpoint is valid for."""
        return {"threads": self.threads, "cpu_math": self.cpu_math}


# What each stage reads from params.yaml: the one list behind dvc.yaml's `params:` (tests/test_dvc_yaml.py keeps
# them equal), the params dvclive logs and the params a checkpoint is valid for. ``{task}`` is the stage's own
# task (data@, source@) or target (adapt@). adapt@'s seed comes on its command line (the matrix), so adding a seed
# to ``seeds`` reruns no existing stage.
TRACKED: dict[str, tuple[str, ...]] = {
    # Not backbone.dtype: the backbone stage always writes fp32; the training stages cast on load.
    "backbone": ("backbone.name", "backbone.kind", "backbone.source"),
    "data": ("seed", "tasks.{task}"),
    # The training stages: numerics too (threads, math path), which stage_main applies to each of them.
    "source": ("seed", "backbone.dtype", "numerics", "model", "source", "source_teachers"),
    "distill": ("seed", "backbone.dtype", "numerics", "model", "distill", "source_tasks", "distill_from"),
    # adapt@ tracks the keys every method reads; a method's own keys reach its runs through the file stage
    # method_inputs writes for it (pipeline/config/method_inputs.py says why), so they rerun that method only.
    "adapt": (*SHARED_KEYS, "tasks.{task}"),
    "method_inputs": knob_keys(),
    "report": ("source_tasks", "target_tasks", "adapt.methods", "seeds", "tasks"),
}


def tracked_keys(stage: str, task: str = "") -> tuple[str, ...]:
    """The params keys stage ``stage`` (of task or target ``task``) reads, as dotted paths."""
    return tuple(key.format(task=task) for key in TRACKED[stage])
