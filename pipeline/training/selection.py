"""The dev curve of a training run and the checkpoint its test score comes from: the same rule for every method.

The training loop calls :meth:`DevCurve.record` at the steps :meth:`DevCurve.due` names: step 0 (the initial
prompt, a method's zero-step score), every ``every`` steps and the last step. ``best_dev`` keeps, in memory, the
module state of the earliest step with the best dev accuracy; ``last`` keeps none. The curve and the kept state
travel in the training checkpoint, so a resumed run selects exactly what an uninterrupted one would.

The curve also keeps the full dev metrics of the state its rule selects (:attr:`DevCurve.selected_dev`): the run's
final dev metrics, so the selected prompt is never scored on dev a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

LAST, BEST_DEV = "last", "best_dev"
BEST_PREFIX = "best."  # the kept state's tensor names in a checkpoint


@dataclass
class DevCurve:
    """Dev accuracy per evaluated step and the selected checkpoint.

    ``evaluate(module, step)`` scores the module as it is: metrics per split (each with ``"accuracy"``),
    ``{"dev": {"accuracy": 0.71, ...}}``, or at step 0 with the test split too (the zero-step test score), whose
    accuracies :attr:`zero_step` keeps and whose full metrics :attr:`initial` keeps.
    """

    evaluate: Callable[[nn.Module, int], dict[str, dict[str, float]]]
    every: int
    rule: str = BEST_DEV
    points: list[tuple[int, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    zero_step: dict[str, float] = field(default_factory=dict)  # accuracy per split of the initial prompt
    # Full metrics per split of the initial prompt, and the dev metrics of the state the rule selects so far.
    # None where unknown (a checkpoint written before they were kept): the caller scores them itself then.
    initial: dict[str, dict[str, float]] | None = None
    selected_dev: dict[str, float] | None = None

    def due(self, steps_done: int, total: int) -> bool:
        """Evaluate after ``steps_done`` optimizer steps: at 0, every ``every`` steps and at ``total``."""
        if self.every <= 0:
            return False
        return steps_done == 0 or steps_done == total or steps_done % self.every == 0

    def record(self, steps_done: int, module: nn.Module) -> None:
        """Score ``module`` on dev (in eval mode, restoring its mode) and keep its state if it is a new best."""
        training = module.training
        module.eval()
        scores = {split: dict(metrics) for split, metrics in self.evaluate(module, steps_done).items()}
        module.train(training)
        accuracy = float(scores["dev"]["accuracy"])
        if steps_done == 0:
            self.zero_step = {split: float(metrics["accuracy"]) for split, metrics in scores.items()}
            self.initial = scores
        best = self.best_accuracy
        self.points.append((steps_done, accuracy))
        if self.rule != BEST_DEV:
            self.selected_dev = scores["dev"]  # last: the latest state, which the last step's evaluation replaces
        elif best is None or accuracy > best:  # strictly better: the earliest best stays
            self.best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            self.selected_dev = scores["dev"]

    @property
    def best_accuracy(self) -> float | None:
        return max((accuracy for _, accuracy in self.points), default=None)

    def selected_step(self, total: int) -> int:
        """The step the test score comes from: the earliest best dev step (best_dev), else ``total``."""
        if self.rule == BEST_DEV and self.points:
            best = self.best_accuracy
            return next(step for step, accuracy in self.points if accuracy == best)
        return total

    def select(self, module: nn.Module) -> None:
        """Load the selected state into ``module`` (nothing to do for ``last``)."""
        if self.rule == BEST_DEV and self.best_state is not None:
            module.load_state_dict(self.best_state)

    # --- checkpoint --------------------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON part, tensors) for a checkpoint."""
        tensors = {BEST_PREFIX + k: v.contiguous() for k, v in (self.best_state or {}).items()}
        saved = {"points": [list(point) for point in self.points], "zero_step": self.zero_step}
        return {**saved, "initial": self.initial, "selected_dev": self.selected_dev}, tensors

    def load(self, saved: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.points = [(int(step), float(accuracy)) for step, accuracy in saved.get("points", [])]
        self.zero_step = dict(saved.get("zero_step", {}))
        self.initial, self.selected_dev = saved.get("initial"), saved.get("selected_dev")
        kept = {k[len(BEST_PREFIX):]: v for k, v in tensors.items() if k.startswith(BEST_PREFIX)}
        self.best_state = kept or None
