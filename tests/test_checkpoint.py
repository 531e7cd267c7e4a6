"""Checkpoints: a run killed mid-way and resumed ends bit-identical to an uninterrupted one (CPU)."""

import pytest
import torch

from pipeline.training.checkpoint import Checkpointer
from pipeline.errors import PipelineError
from pipeline.methods import MethodContext, build_method
from pipeline.config.params import DevSettings, ModelSettings, StepSettings
from pipeline.training.fit import fit_and_evaluate
from pipeline.training.loop import TrainConfig, train
from test_train import toy_task
from tiny import tiny_backbone

MODEL = ModelSettings(prompt_length=4, max_length=16, batch_size=4, eval_batch_size=8)
STEPS = StepSettings(steps=9, lr=0.05, factor_lr=0.1, warmup_steps=2)


class Killed(Exception):
    """Stands in for SIGKILL inside one process."""


def run(checkpoint, kill_at=None, dev=None):
    backbone = tiny_backbone("causal")
    task = toy_task(backbone)
    module, groups = build_method("pt", MethodContext(backbone, MODEL, STEPS, 0))
    if kill_at is not None:
        real = backbone.forward
        calls = {"n": 0}

        def dying(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > kill_at:
                raise Killed()
            return real(*args, **kwargs)

        backbone.forward = dying
    config = TrainConfig(STEPS.steps, groups, STEPS.warmup_steps, seed=0, checkpoint=checkpoint)
    return fit_and_evaluate(backbone, module, task, MODEL, config, "ckpt-test", dev=dev)


@pytest.mark.parametrize(("kill_at", "dev"), [
    (1, None), (4, None), (7, None),
    # With a dev curve (one forward pass per dev score at 0, 2, 4, 6, 8, 9, one for test at 0, one per training
    # step): killed in training step 4 (resumes from the checkpoint after 3 steps, curve [0, 2]) and in step 7 (from
    # the one after 6, curve [0 .. 6]). The tiny model's dev curve is flat, so best_dev selects step 0: the resumed
    # run must end on the kept state from the checkpoint, not on its trained weights.
    (8, DevSettings(eval_every=2, select="best_dev")), (12, DevSettings(eval_every=2, select="last")),
])
def test_resume_after_a_kill_is_bit_identical(tmp_path, kill_at, dev, capsys):
    reference = run(None, dev=dev)
    checkpoint = Checkpointer(tmp_path / "ckpt", every=3, run_fingerprint="f")
    with pytest.raises(Killed):
        run(checkpoint, kill_at=kill_at, dev=dev)
    saved = (tmp_path / "ckpt" / "state.json").is_file()  # not when killed before the first checkpoint
    capsys.readouterr()
    resumed = run(checkpoint, dev=dev)
    assert ("ckpt-test: resuming after step " in capsys.readouterr().err) == saved  # scripts/chaos.py counts it
    assert torch.equal(resumed.module.weight, reference.module.weight)
    assert [h["loss"] for h in resumed.result.history] == [h["loss"] for h in reference.result.history]
    assert resumed.metrics == reference.metrics and resumed.selection == reference.selection
    assert (dev is None) == (resumed.selection == {})


def test_checkpoint_of_other_inputs_is_ignored(tmp_path, capsys):
    reference = run(None)
    with pytest.raises(Killed):
        run(Checkpointer(tmp_path / "ckpt", every=3, run_fingerprint="old"), kill_at=5)
    capsys.readouterr()
    fresh = run(Checkpointer(tmp_path / "ckpt", every=3, run_fingerprint="new"))
    assert "resuming" not in capsys.readouterr().err
    assert torch.equal(fresh.module.weight, reference.module.weight)


def test_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path):
    weight = torch.nn.Parameter(torch.ones(2))
    module = torch.nn.Module()
    module.weight = weight
    checkpoint = Checkpointer(tmp_path / "ckpt", every=2, run_fingerprint="f")

    def compute(m, step):
        return {"loss": (m.weight**2).sum() * (float("inf") if step == 5 else 1.0)}

    with pytest.raises(PipelineError, match=r"at step 5.*last good checkpoint is kept in .*ckpt"):
        train(module, iter(range(10)), compute, TrainConfig(steps=10, seed=0, checkpoint=checkpoint), "inf-test")
    fresh = torch.nn.Module()
    fresh.weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([fresh.weight])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    steps_done, history = checkpoint.restore(fresh, optimizer, schedule)
    assert steps_done == 4 and len(history) == 4 and torch.isfinite(fresh.weight).all()
