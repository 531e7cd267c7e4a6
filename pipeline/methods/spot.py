"""SPoT (Vu et al., 2022): prompt tuning that starts from the source teacher prompt that suits the target best.

Here "best" is the highest dev accuracy of each source prompt on the target before any training (zero steps);
a tie goes to the first source in ``source_tasks`` order. The choice and every candidate's accuracy come back
as extras, so the run's metrics.json says which source was used and why.
Trainable: the l x d prompt, as ``pt``.
"""

from __future__ import annotations


import torch

from pipeline.model.backbone import Backbone
from pipeline.data.batching import TaskData
from pipeline.training.evaluate import evaluate_prompt
from pipeline.methods.base import Built, MethodContext, source_prompts, target_task
from pipeline.methods.prompt_tuning import SoftPrompt



def zero_step_scores(
    backbone: Backbone, prompts: dict[str, torch.Tensor], task: TaskData, batch_size: int
) -> dict[str, float]:
    """Dev accuracy of each (l, d) prompt on ``task``, untrained, in the order given."""
    return {
        name: evaluate_prompt(backbone, lambda _batch, p=prompt: p, task, ("dev",), batch_size)["dev"]["accuracy"]
        for name, prompt in prompts.items()
    }


def build(ctx: MethodContext) -> Built:
    """``spot``: a prompt initialised from the best source prompt on the target's dev split, then trained (lr)."""
    prompts = source_prompts(ctx, "spot")
    scores = zero_step_scores(ctx.backbone, prompts, target_task(ctx, "spot"), ctx.model.eval_batch_size)
    best = max(scores, key=scores.__getitem__)  # max keeps the first of equal scores: ties go to source order
    module = SoftPrompt(prompts[best])
    extras = {"spot_source": best, "spot_candidates": {name: round(acc, 6) for name, acc in scores.items()}}
    return Built(module, [{"params": [module.weight], "lr": ctx.steps.lr}], extras)
