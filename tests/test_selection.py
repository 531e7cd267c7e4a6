"""The dev-curve hook of the training loop and the checkpoint rule (pipeline.training.selection)."""

import pytest
import torch

from pipeline.training.checkpoint import Checkpointer
from pipeline.training.loop import TrainConfig, train
from pipeline.training.selection import DevCurve


def scalar_module() -> torch.nn.Module:
    module = torch.nn.Module()
    module.weight = torch.nn.Parameter(torch.ones(2))
    return module


def quadratic(module, _batch):
    return {"loss": (module.weight**2).sum()}


def scripted(accuracies: dict[int, float], calls: list[tuple[int, torch.Tensor, bool]]):
    """An evaluator that returns ``accuracies[step]`` and notes the step, the weight it saw and the module's mode."""

    def evaluate(module, step):
        calls.append((step, module.weight.detach().clone(), module.training))
        scores = {"dev": {"accuracy": accuracies[step], "loss": float(step)}}
        return {**scores, "test": {"accuracy": 0.5, "loss": 0.0}} if step == 0 else scores

    return evaluate


def test_the_hook_evaluates_at_step_0_every_eval_every_steps_and_the_last_step():
    calls: list = []
    curve = DevCurve(scripted({0: 0.1, 3: 0.2, 6: 0.3, 8: 0.4}, calls), every=3, rule="last")
    module = scalar_module()
    train(module, iter(range(8)), quadratic, TrainConfig(steps=8, seed=0, dev=curve), "hook-test")
    assert [step for step, _, _ in calls] == [0, 3, 6, 8]
    assert not any(training for _, _, training in calls)  # scored in eval mode
    assert torch.equal(calls[0][1], torch.ones(2))  # step 0 is the initial prompt
    assert curve.points == [(0, 0.1), (3, 0.2), (6, 0.3), (8, 0.4)] and curve.zero_step == {"dev": 0.1, "test": 0.5}
    assert curve.selected_step(8) == 8 and torch.equal(module.weight.detach(), calls[-1][1])  # last: as trained
    assert curve.selected_dev == {"accuracy": 0.4, "loss": 8.0}  # the last step's dev metrics: never scored again
    assert curve.initial == {"dev": {"accuracy": 0.1, "loss": 0.0}, "test": {"accuracy": 0.5, "loss": 0.0}}
    assert module.training


def test_best_dev_picks_the_earliest_best_step_and_ends_with_its_weights():
    calls: list = []
    curve = DevCurve(scripted({0: 0.5, 2: 0.7, 4: 0.7, 6: 0.6}, calls), every=2, rule="best_dev")
    module = scalar_module()
    train(module, iter(range(6)), quadratic, TrainConfig(steps=6, seed=0, dev=curve), "best-test")
    assert curve.selected_step(6) == 2 and curve.selected_dev == {"accuracy": 0.7, "loss": 2.0}  # step 2's, not 4's
    assert torch.equal(module.weight.detach(), calls[1][1])  # the weights seen at step 2
    assert not torch.equal(calls[1][1], calls[2][1])  # and training did move them after it


def test_eval_every_0_never_evaluates():
    calls: list = []
    curve = DevCurve(scripted({}, calls), every=0, rule="last")
    train(scalar_module(), iter(range(4)), quadratic, TrainConfig(steps=4, seed=0, dev=curve), "off-test")
    assert calls == [] and curve.points == [] and curve.selected_step(4) == 4


class Killed(Exception):
    pass


@pytest.mark.parametrize("kill_after", [2, 3])  # killed at the dev score of step 4 or 6: resumed from 2 or 4
def test_a_resumed_run_keeps_its_curve_and_its_best_state(tmp_path, kill_after):
    accuracies = {0: 0.5, 2: 0.9, 4: 0.6, 6: 0.7}
    reference_calls: list = []
    reference = DevCurve(scripted(accuracies, reference_calls), every=2, rule="best_dev")
    expected = scalar_module()
    train(expected, iter(range(6)), quadratic, TrainConfig(steps=6, seed=0, dev=reference), "ref")

    checkpoint = Checkpointer(tmp_path / "ckpt", every=2, run_fingerprint="f")
    calls: list = []

    def dying(module, step):
        if len(calls) >= kill_after:
            raise Killed()
        return scripted(accuracies, calls)(module, step)

    with pytest.raises(Killed):
        train(scalar_module(), iter(range(6)), quadratic,
              TrainConfig(steps=6, seed=0, checkpoint=checkpoint, dev=DevCurve(dying, 2, "best_dev")), "killed")
    resumed_curve = DevCurve(scripted(accuracies, []), every=2, rule="best_dev")
    resumed = scalar_module()
    config = TrainConfig(steps=6, seed=0, checkpoint=checkpoint, dev=resumed_curve)
    train(resumed, iter(range(6)), quadratic, config, "re")
    assert resumed_curve.points == reference.points and resumed_curve.zero_step == reference.zero_step
    assert resumed_curve.selected_step(6) == 2 and torch.equal(resumed.weight, expected.weight)
    assert resumed_curve.selected_dev == reference.selected_dev == {"accuracy": 0.9, "loss": 2.0}
    assert resumed_curve.initial == reference.initial
