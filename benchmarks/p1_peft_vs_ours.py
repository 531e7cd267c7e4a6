"""P1: one prompt-tuning training step, PEFT's PromptTuningConfig ÷ ours. Target >= 1.4.

Both sides: the same causal LM (one copy in memory), the same batch of real-looking reviews at a fixed token
count, the same number of virtual tokens, AdamW on the prompt only, and the library's training loop
(:func:`pipeline.training.loop.train`: autocast, backward, clipping, step, schedule) so that only the model differs.

* PEFT: ``get_peft_model(model, PromptTuningConfig(CAUSAL_LM))``; the model's forward computes the
  full-vocabulary LM head (at every position, as ``PeftModelForCausalLM`` does by default). The loss, with
  ``--peft-loss last`` (default), is the cross-entropy of the last position's logits against the label word's
  token: exactly the same tokens as ours. With ``--peft-loss model`` it is the model's own loss, PEFT's usual
  recipe: the label token appended to the input (one more token) and ``labels`` -100 everywhere else.
* Ours: :class:`pipeline.model.backbone.Backbone` (the decoder only; hidden state at the prediction position times
  the label words' output rows) with :class:`pipeline.methods.prompt_tuning.SoftPrompt`.

``--dtype`` sets both sides' backbone dtype (P1 is reported for float32 and bfloat16). ``--ours-dtype`` gives our
side another one, on a second copy of the backbone: ``--dtype float32 --ours-dtype auto`` is P1d, PEFT in its
default (fp32) ÷ ours in our default (``backbone.dtype: auto``).

``--peft-logits-to-keep 1`` passes ``logits_to_keep=1`` to the PEFT model (last-position logits only), to show
how much of the gap is the full LM head at every position.

    python benchmarks/p1_peft_vs_ours.py [--tiny] [--repeats N] [--dtype float32|bfloat16] [--ours-dtype auto]
"""

from __future__ import annotations

import common
import torch
import torch.nn.functional as F
from peft import PromptTuningConfig, TaskType, get_peft_model
from torch import nn


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--peft-loss", choices=["last", "model"], default="last", help="see the module docstring")
    p.add_argument("--peft-logits-to-keep", type=int, default=0, help="0 (PEFT default): logits at every position")
    p.add_argument("--ours-dtype", choices=common.DTYPE_SETTINGS, help="our side's dtype (default: --dtype); P1d")
    args = p.parse_args()
    backbone = common.setup(args)
    common.describe(args, backbone)
    mine = backbone
    if args.ours_dtype and common.resolve_dtype(args.ours_dtype, backbone.device) != backbone.dtype:
        mine = common.setup(args, args.ours_dtype)
        print(f"ours: {args.ours_dtype} -> {common.dtype_name(mine.dtype)} (a second copy of the backbone)")
    batch = common.fixed_batch(backbone, args.batch, args.tokens)
    labels = backbone.label_words([" positive", " negative"], "benchmark")
    targets = labels.first_ids.to(backbone.device)[batch.labels]

    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.prompt_length)
    peft_model = get_peft_model(backbone.model, config)
    peft_params = [p for p in peft_model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in peft_params) == args.prompt_length * backbone.hidden_size
    extra = {"logits_to_keep": args.peft_logits_to_keep} if args.peft_logits_to_keep else {}

    if args.peft_loss == "model":
        ids = torch.cat([batch.input_ids, targets[:, None]], dim=1)
        mask = torch.cat([batch.attention_mask, batch.attention_mask[:, -1:]], dim=1)
        lm_labels = torch.full_like(ids, -100)
        lm_labels[:, -1] = targets
        peft_inputs = {"input_ids": ids, "attention_mask": mask, "labels": lm_labels}
    else:
        peft_inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}

    def peft_loss(model: nn.Module, inputs: dict) -> dict[str, torch.Tensor]:
        out = model(**inputs, **extra)  # logits (B, l+T, |V|)
        if "labels" in inputs:
            return {"loss": out.loss}
        return {"loss": F.cross_entropy(out.logits[:, -1].float(), targets)}

    def peft_step() -> float:
        groups = [{"params": peft_params, "lr": 0.02}]
        seconds = common.train_step_seconds(peft_model, groups, peft_loss, peft_inputs, backbone.device)
        backbone.model.eval()  # the loop put the shared model in training mode; ours runs it in eval mode
        return seconds

    ours = common.prompt_tuning_side(mine, batch.to(mine.device), labels, args.prompt_length)
    if args.ours_dtype:
        label = f"P1d peft {common.dtype_name(backbone.dtype)}/ours {args.ours_dtype} ({common.dtype_name(mine.dtype)}) step time ratio"
    else:
        label = f"P1 peft/ours step time ratio ({common.dtype_name(backbone.dtype)})"
    common.compare(args, {"peft": peft_step, "ours": ours}, label)


if __name__ == "__main__":
    main()
