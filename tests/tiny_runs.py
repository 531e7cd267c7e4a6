"""Finished runs on disk as the stages leave them, on a tiny random backbone: for export, import and predict tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import PeftConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from pipeline.store.tensors import save_tensors
from pipeline.store.atomic import write_json
from pipeline.model.backbone import INFO_FILE, Backbone, BackboneInfo, load_backbone
from pipeline.data.batching import TaskData
from pipeline.data.prepared import INFO_FILE as TASK_INFO_FILE
from pipeline.data.prepared import TaskInfo
from pipeline.flows.runs import artifact_meta, task_meta
from pipeline.config.params import ModelSettings, NumericsSettings
from tiny import BACKBONE_KIND, save_tiny_backbone, tiny_tokenizer

LENGTH = 4  # prompt length l of every test run
TASK = TaskInfo(
    name="toy", labels=["pos", "neg"], label_words=[" positive", " negative"], template="Review: {text} sentiment :",
    sizes={}, label_counts={}, source_sha256="toy",
)
# A second source task for the multitask exports: another template and verbalizer.
OTHER_TASK = TaskInfo(
    name="spam", labels=["ham", "spam"], label_words=[" normal", " spam"], template="{text} . is it spam ?",
    sizes={}, label_counts={}, source_sha256="spam",
)
AUTO = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM}  # loading a backbone folder for PEFT
TEXTS = ["good movie", "what is the plot of the film ? bad bad", "awful"]


def save_backbone_folder(folder: Path, kind: str = "causal") -> Backbone:
    """A tiny backbone folder (weights, tokenizer, backbone.json) as the backbone stage writes it, loaded back."""
    save_tiny_backbone(folder, kind)
    info = BackboneInfo(
        name=f"tiny-{kind}", kind=BACKBONE_KIND[kind], hidden_size=32, vocab_size=len(tiny_tokenizer()),
        fingerprint=f"tiny-{kind}-fp",
    )
    write_json(Path(folder) / INFO_FILE, info.to_dict())
    return load_backbone(folder)


def save_task_info(prepared_dir: Path, task: TaskInfo = TASK) -> None:
    """Only the task.json of ``data/prepared/<task>/``: what export and predict read."""
    path = Path(prepared_dir) / task.name / TASK_INFO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(task.to_json(), encoding="utf-8")


def random_prompt(seed: int = 0) -> torch.Tensor:
    """An (l, d) prompt on the scale of trained ones (the tiny model's embeddings have std ≈ 0.02)."""
    return 0.5 * torch.randn(LENGTH, 32, generator=torch.Generator().manual_seed(seed))


def save_repo(root: Path) -> Backbone:
    """The repo layout the CLI expects under ``root``: models/backbone, data/prepared/toy, results/adapt/toy-pt."""
    backbone = save_backbone_folder(Path(root) / "models" / "backbone")
    save_task_info(Path(root) / "data" / "prepared")
    save_run(Path(root) / "results" / "adapt" / "toy-pt", backbone, random_prompt(), method="pt")
    return backbone


def save_run(
    run_dir: Path, backbone: Backbone, prompt: torch.Tensor, method: str | None = "mpt",
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """An adapt@ run (``params.safetensors``) for a ``method``, or a source@ teacher (``prompt.safetensors``);
    ``tensors``: what the method's module exports besides the prompt (an mpt run's P, U, V)."""
    task = TaskData(info=TASK, labels=backbone.label_words(TASK.label_words, "test"))
    extra = {"method": method} if method else {}
    path = Path(run_dir) / ("params.safetensors" if method else "prompt.safetensors")
    meta = artifact_meta(backbone, tiny_settings(prompt.shape[0]), NumericsSettings(), **extra, **task_meta(task))
    save_tensors(path, {**(tensors or {}), "prompt": prompt}, meta)
    return path


def tiny_settings(length: int = LENGTH) -> ModelSettings:
    return ModelSettings(prompt_length=length, max_length=32, batch_size=8, eval_batch_size=8)


def save_distill(
    folder: Path, backbone: Backbone, shared: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
    tasks: tuple[TaskInfo, ...] = (TASK, OTHER_TASK),
) -> Path:
    """``results/distill/shared.safetensors`` as the distill stage writes it: P, U, V and each factor's task."""
    names = [task.name for task in tasks]
    meta = artifact_meta(
        backbone, tiny_settings(shared.shape[0]), NumericsSettings(), rank=u.shape[-1], source_tasks=names, factor_tasks=names,
        label_words={task.name: task.label_words for task in tasks},
    )
    save_tensors(Path(folder) / "shared.safetensors", {"shared": shared, "u": u, "v": v}, meta)
    return Path(folder)


def peft_label_logits(model, backbone: Backbone, task: TaskInfo = TASK, **forward) -> torch.Tensor:
    """A PEFT model's own full-vocabulary logits at our prediction position, for ``task``'s label words on
    ``TEXTS``: (B, C). ``forward``: more arguments for its forward (``task_ids``)."""
    encoded = backbone.tokenize([task.template.format(text=t) for t in TEXTS], max_length=32)
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    with torch.no_grad():
        if backbone.info.kind == "causal":
            # PEFT prepends l virtual tokens; with right padding the last real token sits at l + length - 1.
            logits = model(input_ids=ids, attention_mask=mask, **forward).logits
            rows = logits[torch.arange(len(TEXTS)), LENGTH + mask.sum(1) - 1]
        else:
            # The decoder's first position, as we score it. Given as labels (T5 shifts them right to
            # [decoder_start_token_id]): PEFT's MultitaskPromptTuning seq2seq forward drops decoder_input_ids.
            start = torch.zeros((len(TEXTS), 1), dtype=torch.long)
            rows = model(input_ids=ids, attention_mask=mask, labels=start, **forward).logits[:, 0]
    return rows[:, backbone.label_words(task.label_words, "test").first_ids]


def our_label_logits(backbone: Backbone, prompt: torch.Tensor, task: TaskInfo = TASK) -> torch.Tensor:
    """Our backbone's label-word scores of ``TEXTS`` after ``prompt`` (l, d): (B, C)."""
    encoded = backbone.tokenize([task.template.format(text=t) for t in TEXTS], max_length=32)
    labels = backbone.label_words(task.label_words, "test")
    with torch.no_grad():
        return backbone(prompt, encoded["input_ids"], encoded["attention_mask"], labels).logits


def layout_as_peft_saves(adapter: Path, backbone_folder: Path, config: PeftConfig, scratch: Path) -> dict:
    """Assert that ``adapter`` has the config fields and weight keys and shapes of PEFT's own save_pretrained of
    ``config`` on the backbone (the backbone path aside); return the weights' shapes."""
    kind = json.loads((Path(backbone_folder) / INFO_FILE).read_text())["kind"]
    get_peft_model(AUTO[kind].from_pretrained(backbone_folder), config).save_pretrained(scratch)
    ours, theirs = (json.loads((d / "adapter_config.json").read_text()) for d in (adapter, scratch))
    assert ours.pop("base_model_name_or_path") == str(Path(backbone_folder).resolve())
    theirs.pop("base_model_name_or_path")
    assert ours == theirs
    ours, theirs = (load_file(d / "adapter_model.safetensors") for d in (adapter, scratch))
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    return {k: tuple(v.shape) for k, v in ours.items()}
