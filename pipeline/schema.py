"""The one schema for params.yaml, checked before any stage does work.

Every error is one line that names the key path and says what is allowed. Torch-free, so the cheap
stages (data@) stay cheap; checks that need the backbone (hidden size, tokenizer) happen where it is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError
from pipeline.params import PARAMS_FILE, check_keys, require, section

TOP_LEVEL_KEYS = (
    "seed", "seeds", "backbone", "model", "source", "distill", "adapt", "source_tasks", "target_tasks", "tasks",
    "checkpoint_every", "source_teachers",
)
DISTILL_KEYS = ("steps", "lr", "factor_lr", "warmup_steps", "rank", "lambda", "temperature", "decomposition")
BACKBONE_KINDS = ("causal", "seq2seq")
BACKBONE_KEYS = ("name", "kind", "source", "dtype")  # dtype optional (auto)
BACKBONE_DTYPES = ("auto", "float32", "bfloat16")  # pipeline.precision resolves them (it needs torch)
BACKBONE_SOURCE_KEYS = {  # required keys per kind
    "package": ("kind", "package", "version", "sha256", "member", "format"),
    "local": ("kind", "path", "format"),
    "hub": ("kind", "model"),  # a Hub model id (or a local folder), read with from_pretrained
}
BACKBONE_OPTIONAL_KEYS = {"hub": ("revision",)}
BACKBONE_FORMATS = {"package": ("gguf",), "local": ("hf", "gguf")}  # a hub model is in the Hub's own layout
# Names of the target methods (the builders live in pipeline.methods, which needs torch).
METHODS = ("pt", "mpt", "mpt_full", "spot", "attempt", "prefix", "ptuning", "cpt")
MIN_SOURCE_TASKS = 2  # stochastic task sampling draws K from [2, κ]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise PipelineError(
                    f"params.yaml: line {key_node.start_mark.line + 1}: key {key!r} is given twice; names must be unique"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml with duplicate keys refused (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: params file not found")
    try:
        params = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PipelineError(f"{path}: not valid YAML{where}") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{path}: expected a mapping at the top level")
    return params


def load_checked_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read and validate params.yaml; every stage starts here."""
    params = read_params(path)
    validate(params)
    return params


def validate(params: dict[str, Any]) -> None:
    """Check the whole of params.yaml; raise a one-line PipelineError at the first problem."""
    # Imported here: settings/tasks import params helpers, and keeping this module's import list short
    # keeps the dependency direction obvious (schema uses them, not the reverse).
    from pipeline.settings import (
        DistillSettings, MethodSettings, ModelSettings, StepSettings, freeze_shared, seed_of, seeds_of,
    )
    from pipeline.tasks import TaskSpec

    check_keys(params, TOP_LEVEL_KEYS, "params")
    seed_of(params)
    seeds_of(params)
    if "checkpoint_every" in params:
        _positive_int(params, "checkpoint_every", "params")
    check_backbone_spec(section(params, "backbone"))
    model = ModelSettings.from_params(params)
    for stage in ("source", "distill", "adapt"):
        StepSettings.from_params(params, stage)
    _positive_int(section(params, "source"), "teacher_examples", "source")
    check_keys(section(params, "distill"), DISTILL_KEYS, "distill")  # a typo would silently skip an ablation
    DistillSettings.from_params(params, model.prompt_length, hidden_size=None)
    _check_methods(section(params, "adapt"))
    MethodSettings.from_params(params)
    freeze_shared(params)
    tasks = section(params, "tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise PipelineError("params.yaml: tasks must be a mapping of task name -> task spec")
    for name, spec in tasks.items():
        TaskSpec.from_params(str(name), spec)
    sources = _task_list(params, "source_tasks", tasks)
    targets = _task_list(params, "target_tasks", tasks)
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
    for key in BACKBONE_SOURCE_KEYS[source_kind] + tuple(key for key in optional_keys if key in source):
        value = require(source, key, (str, int, float) if key == "version" else str, where)
        if value == "":
            raise PipelineError(f"params.yaml: {where}.{key} must not be empty")
    allowed = BACKBONE_FORMATS.get(source_kind)
    if allowed and source["format"] not in allowed:
        raise PipelineError(f"params.yaml: {where}.format must be one of {', '.join(allowed)}, got {source['format']!r}")


def source_teachers(params: dict[str, Any]) -> dict[str, str]:
    """Optional params ``source_teachers``: source task -> folder of a PEFT prompt-tuning adapter.

    A listed task's teacher is loaded from that adapter instead of trained (pipeline.export.load_peft_prompt).
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


def _check_methods(adapt: dict[str, Any]) -> None:
    methods = require(adapt, "methods", list, "adapt")
    if not methods:
        raise PipelineError("params.yaml: adapt.methods must list at least one method")
    for method in methods:
        if method not in METHODS:
            raise PipelineError(f"params.yaml: adapt.methods: unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise PipelineError("params.yaml: adapt.methods lists a method twice")


def _task_list(params: dict[str, Any], key: str, tasks: dict[str, Any]) -> list[str]:
    names = section(params, key)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise PipelineError(f"params.yaml: {key} must be a non-empty list of task names defined under tasks")
    for name in names:
        if name not in tasks:
            raise PipelineError(f"params.yaml: {key} names {name!r}, which is not defined under tasks")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineError(f"params.yaml: {key} lists {duplicates[0]!r} twice")
    return names


def _positive_int(node: dict[str, Any], key: str, where: str) -> int:
    value = require(node, key, int, where)
    if value <= 0:
        raise PipelineError(f"params.yaml: {where}.{key} must be > 0, got {value}")
    return value
