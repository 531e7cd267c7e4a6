"""P3: our prompt-tuning step ÷ a bare forward + backward of the frozen model on the same tokens. Target <= 1.15.

* Ours: SoftPrompt + label-word scoring + task loss + AdamW through the library's loop (as in P1 and P2).
* Bare: the frozen decoder on ``[prompt; input]`` embeddings (a leaf tensor with requires_grad, built once),
  loss = sum of the last hidden state, backward to the input embeddings only; no optimizer, no loop. Both sides
  run the backbone in ``--dtype`` (weights cast once, no autocast, as the library does).

The ratio is what the library adds on top of the unavoidable model compute.

    python benchmarks/p3_ours_vs_bare.py [--tiny] [--repeats N]
"""

from __future__ import annotations

import time

import common
import torch


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    backbone = common.setup(args)
    common.describe(args, backbone)
    batch = common.fixed_batch(backbone, args.batch, args.tokens)
    labels = backbone.label_words([" positive", " negative"], "benchmark")
    device = backbone.device

    with torch.no_grad():
        prompt = common.prompt_init(backbone, args.prompt_length).unsqueeze(0).expand(args.batch, -1, -1)
        embeds = torch.cat([prompt, backbone.input_embeddings(batch.input_ids)], dim=1)
    embeds = embeds.detach().to(backbone.dtype).requires_grad_(True)
    mask = torch.cat([batch.attention_mask.new_ones(args.batch, args.prompt_length), batch.attention_mask], dim=1)
    decoder = backbone.model.get_decoder()

    def bare_step() -> float:
        common.synchronize(device)
        started = time.perf_counter()
        states = decoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        states.float().sum().backward()
        common.synchronize(device)
        seconds = time.perf_counter() - started
        embeds.grad = None
        return seconds

    ours = common.prompt_tuning_side(backbone, batch, labels, args.prompt_length)
    common.compare(args, {"ours": ours, "bare": bare_step}, "P3 ours/bare step time ratio")


if __name__ == "__main__":
    main()
