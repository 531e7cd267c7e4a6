"""The one training loop on tiny causal and encoder-decoder backbones: learns, leaves the backbone alone, repeats."""

import pytest
import torch

from pipeline.data.batching import EncodedSplit, TaskData
from pipeline.data.prepared import TaskInfo
from pipeline.training.distill import distill
from pipeline.errors import PipelineError
from pipeline.methods import MethodContext, build_method
from pipeline.config.params import DevSettings, DistillSettings, ModelSettings, StepSettings
from pipeline.training import fit as fit_module
from pipeline.training.evaluate import evaluate_prompt
from pipeline.training.fit import fit_and_evaluate, teacher_outputs
from pipeline.training.loop import TrainConfig, train
from tiny import tiny_backbone

MODEL = ModelSettings(prompt_length=4, max_length=16, batch_size=8, eval_batch_size=8)
STEPS = StepSettings(steps=25, lr=0.05, factor_lr=0.1, warmup_steps=2)


def toy_task(backbone, name="toy", positive="good", negative="bad") -> TaskData:
    """A separable task: the label is the first word; the tiny random model must learn to read it."""
    texts, labels = [], []
    fillers = ["movie", "film", "plot", "actor", "review", "game", "team", "phone"]
    for i in range(48):
        label = i % 2
        texts.append(f"{positive if label == 0 else negative} {fillers[i % 8]} {fillers[(i * 3) % 8]} sentiment :")
        labels.append(label)
    encoded = backbone.tokenize(texts, MODEL.max_length)
    ids = [row[m.bool()].tolist() for row, m in zip(encoded["input_ids"], encoded["attention_mask"])]
    pad = backbone.tokenizer.pad_token_id
    splits = {
        "train": EncodedSplit(ids[:32], labels[:32], pad),
        "dev": EncodedSplit(ids[32:40], labels[32:40], pad),
        "test": EncodedSplit(ids[40:], labels[40:], pad),
    }
    info = TaskInfo(
        name=name, labels=["pos", "neg"], label_words=[" positive", " negative"], template="{text}",
        sizes={k: len(v) for k, v in splits.items()}, label_counts={}, source_sha256="toy",
    )
    return TaskData(info=info, labels=backbone.label_words(info.label_words, "toy"), splits=splits)


def run_pt(kind: str, seed: int = 0):
    backbone = tiny_backbone(kind)
    task = toy_task(backbone)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    module, groups = build_method("pt", MethodContext(backbone, MODEL, STEPS, seed))
    config = TrainConfig(steps=STEPS.steps, param_groups=groups, warmup_steps=STEPS.warmup_steps, seed=seed)
    run = fit_and_evaluate(backbone, module, task, MODEL, config, "test")
    return backbone, before, run


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_prompt_tuning_learns_and_never_touches_the_backbone(kind):
    backbone, before, run = run_pt(kind)
    losses = [h["loss"] for h in run.result.history]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # it learns
    assert all(torch.equal(before[k], v) for k, v in backbone.model.state_dict().items())  # frozen
    assert run.trainable_params == MODEL.prompt_length * backbone.hidden_size
    assert set(run.metrics) == {"dev", "test"} and 0 <= run.metrics["test"]["accuracy"] <= 1


def counted_passes(monkeypatch) -> list[tuple[str, ...]]:
    """The splits of every evaluation pass fit_and_evaluate makes, in order."""
    passes: list[tuple[str, ...]] = []

    def counting(backbone, prompt, task, splits, *args, **kwargs):
        passes.append(tuple(splits))
        return evaluate_prompt(backbone, prompt, task, splits, *args, **kwargs)

    monkeypatch.setattr(fit_module, "evaluate_prompt", counting)
    return passes


@pytest.mark.parametrize("select", ["best_dev", "last"])
def test_dev_is_scored_once_per_curve_point_and_the_selected_points_metrics_are_the_final_ones(monkeypatch, select):
    """No dev pass after training: the selected state's dev metrics come from the curve, and they equal a fresh
    scoring of the prompt the run ends with, metric for metric (mcc too)."""
    backbone = tiny_backbone("causal")
    task = toy_task(backbone)
    module, groups = build_method("pt", MethodContext(backbone, MODEL, STEPS, 0))
    config = TrainConfig(steps=6, param_groups=groups, warmup_steps=0, seed=0)
    passes = counted_passes(monkeypatch)
    run = fit_and_evaluate(backbone, module, task, MODEL, config, "once", ("mcc",), DevSettings(3, select))
    assert passes == [("dev", "test"), ("dev",), ("dev",), ("test",)]  # steps 0, 3, 6, then test alone
    fresh = evaluate_prompt(backbone, run.module.eval(), task, ("dev", "test"), MODEL.eval_batch_size, ("mcc",))
    assert run.metrics == fresh and set(run.metrics["dev"]) >= {"accuracy", "macro_f1", "loss", "mcc"}
    assert run.metrics["dev"]["accuracy"] == dict(run.selection["dev_curve"])[run.selection["selected_step"]]


def test_a_run_from_an_already_scored_starting_state_does_not_score_it_again(monkeypatch):
    """Another k of one adapt@ stage starts from the same prompt: its step-0 metrics are handed over, not rescored,
    and its zero-step record is the same."""
    backbone = tiny_backbone("causal")
    task = toy_task(backbone)
    runs, passes = [], counted_passes(monkeypatch)
    for initial in (None, "first"):
        module, groups = build_method("pt", MethodContext(backbone, MODEL, STEPS, 0))
        config = TrainConfig(steps=2, param_groups=groups, warmup_steps=0, seed=0)
        known = runs[0].initial if initial else None
        runs.append(fit_and_evaluate(backbone, module, task, MODEL, config, "k", (), DevSettings(5), initial=known))
    assert passes == [("dev", "test"), ("dev",), ("test",), ("dev",), ("test",)]  # step 0 scored by the first only
    assert runs[1].selection == runs[0].selection and runs[1].metrics == runs[0].metrics
    assert set(runs[0].initial) == {"dev", "test"} and runs[0].initial["dev"]["accuracy"] == runs[0].selection["zero_step"]["dev"]


def test_same_seed_same_prompt():
    _, _, first = run_pt("causal", seed=3)
    _, _, second = run_pt("causal", seed=3)
    assert torch.equal(first.module.weight, second.module.weight)


def test_non_finite_loss_stops_with_the_step_number():
    weight = torch.nn.Parameter(torch.ones(2))
    module = torch.nn.Module()
    module.weight = weight
    batches = iter(range(10))

    def compute(m, step):
        return {"loss": m.weight.sum() * (float("nan") if step == 3 else 1.0)}

    with pytest.raises(PipelineError, match="at step 3"):
        train(module, batches, compute, TrainConfig(steps=10, seed=0), "nan-test")


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_distillation_runs_and_trains_p_and_factors(kind):
    backbone = tiny_backbone(kind)
    tasks = [toy_task(backbone, "a"), toy_task(backbone, "b", positive="great", negative="awful")]
    teachers = []
    for task in tasks:
        module, groups = build_method("pt", MethodContext(backbone, MODEL, STEPS, 0))
        prompt = module.weight.detach()
        teachers.append({**teacher_outputs(backbone, prompt, task, 16, 8), "prompt": prompt})
    assert teachers[0]["logits"].shape == (16, 2) and teachers[0]["hidden"].shape == (16, backbone.hidden_size)
    settings = DistillSettings(rank=1, lambda_=0.9, temperature=2.0)
    steps = StepSettings(steps=6, lr=0.05, factor_lr=0.1, warmup_steps=1)
    start = torch.stack([t["prompt"] for t in teachers]).mean(0)
    student, result = distill(backbone, tasks, teachers, settings, steps, seed=0, batch_size=8)
    assert result.steps == 6 and {"task", "kl", "mse", "loss"} <= set(result.history[0])
    assert not torch.equal(student.shared.detach(), start)  # P moved
    assert student.u.shape == (2, MODEL.prompt_length, 1)


def test_length_bucketed_batches_cover_every_row_and_cut_padding():
    import random

    from pipeline.data.batching import shuffled_batches

    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(400)]
    bucketed, plain = shuffled_batches(400, 8, 0, lengths), shuffled_batches(400, 8, 0)
    epoch = [next(bucketed) for _ in range(50)]
    assert sorted(row for batch in epoch for row in batch) == list(range(400))  # each row once per epoch

    def padding(batches):
        return sum(max(lengths[r] for r in b) * len(b) - sum(lengths[r] for r in b) for b in batches)

    assert padding(epoch) < 0.5 * padding([next(plain) for _ in range(50)])
