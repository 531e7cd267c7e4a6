"""P9: the matrix-multiply FLOP/s a bf16 prompt-tuning step achieves ÷ the bf16 matmul peak. Target >= 0.5.

Both in this process, on the same threads and dtype (``--dtype``, default bfloat16; ``--dtype float32`` gives the
fp32 figure):

* Step FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` over one forward + backward of our step (matrix
  products, attention included; the frozen weights get no gradient, so none is counted for them).
* Step time: the median of ``--repeats`` steps of the library's loop (as in P1-P3).
* Peak: the best of ``--repeats`` rounds of ten (batch·(tokens + prompt) × d) @ (d × MLP width) products, the
  step's MLP projection ((672 × 576) @ (576 × 1536) for SmolLM2 at 8 × 84 tokens), interleaved with the steps so
  that both see the same machine load.

    python benchmarks/p9_matmul_efficiency.py [--tiny] [--repeats N] [--dtype bfloat16|float32]
"""

from __future__ import annotations

import statistics
import time

import common
import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.training.losses import task_loss

PEAK_CALLS = 10


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.set_defaults(dtype="bfloat16")
    args = p.parse_args()
    backbone = common.setup(args)
    common.describe(args, backbone)
    batch = common.fixed_batch(backbone, args.batch, args.tokens)
    labels = backbone.label_words([" positive", " negative"], "benchmark")

    prompt = common.prompt_init(backbone, args.prompt_length).requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        scores = backbone(prompt, batch.input_ids, batch.attention_mask, labels)
        task_loss(scores.logits, batch.labels % 2).backward()
    step_flops = counter.get_total_flops()

    config = backbone.model.config
    m, k, n = args.batch * (args.tokens + args.prompt_length), config.hidden_size, config.intermediate_size
    a = torch.randn(m, k, device=backbone.device, dtype=backbone.dtype)
    b = torch.randn(k, n, device=backbone.device, dtype=backbone.dtype)

    def peak_round() -> float:
        common.synchronize(backbone.device)
        started = time.perf_counter()
        for _ in range(PEAK_CALLS):
            a @ b
        common.synchronize(backbone.device)
        return (time.perf_counter() - started) / PEAK_CALLS

    step = common.prompt_tuning_side(backbone, batch, labels, args.prompt_length)
    times = common.interleave({"step": step, "matmul": peak_round}, args.repeats, args.warmup)
    achieved = step_flops / statistics.median(times["step"])
    peak = 2 * m * k * n / min(times["matmul"])
    print(f"step: {step_flops / 1e9:.1f} GFLOP in {statistics.median(times['step']):.3f} s (median), "
          f"{achieved / 1e9:.1f} GFLOP/s")
    print(f"matmul peak ({m}x{k} @ {k}x{n}, {common.dtype_name(backbone.dtype)}): {peak / 1e9:.1f} GFLOP/s (best round)")
    print(f"P9 achieved/peak matmul FLOP/s ({common.dtype_name(backbone.dtype)}): {achieved / peak:.2f}")


if __name__ == "__main__":
    main()
