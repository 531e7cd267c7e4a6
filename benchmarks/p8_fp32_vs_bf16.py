"""P8: our prompt-tuning step with fp32 weights ÷ the same step with bf16 weights, default backbone. Target >= 2.5.

Two copies of the backbone in one process, one per dtype (``backbone.dtype: float32`` and ``bfloat16``: weights
cast once at load, no autocast), the same batch and the library's loop on each (see benchmarks/common.py),
interleaved. Forcing bfloat16 here shows what ``auto`` would buy or cost on this machine: on a CPU without native
bf16 matmuls (no AMX-BF16 / AVX512-BF16) the ratio is far below 1, which is why ``auto`` stays fp32 there.

    python benchmarks/p8_fp32_vs_bf16.py [--tiny] [--repeats N]
"""

from __future__ import annotations

import common


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    sides = {}
    for dtype in ("float32", "bfloat16"):
        backbone = common.setup(args, dtype)
        common.describe(args, backbone)
        batch = common.fixed_batch(backbone, args.batch, args.tokens)
        labels = backbone.label_words([" positive", " negative"], "benchmark")
        sides[dtype] = common.prompt_tuning_side(backbone, batch, labels, args.prompt_length)
    common.compare(args, sides, "P8 our float32/bfloat16 step time ratio")


if __name__ == "__main__":
    main()
