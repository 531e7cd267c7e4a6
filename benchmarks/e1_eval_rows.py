"""E1: evaluation cost, seconds per 100 evaluated rows, with the fixed prompt's keys/values per batch ÷ once per pass.

:func:`pipeline.evaluate.predict` (length-sorted batches of ``--eval-batch`` rows, inference mode) scores ``--rows``
review-like rows of 8 to ``--tokens`` tokens after a (l, d) prompt, twice per round, interleaved: once as the
library does it (the prompt's keys and values computed for the first batch and reused while the prompt is the
same, ``Backbone._shared_keys_values``) and once recomputing them for every batch, as before. Prints seconds
per 100 rows of each and, as the last line, the ratio per-batch ÷ once-per-pass.

    python benchmarks/e1_eval_rows.py [--tiny] [--repeats N] [--rows N] [--eval-batch N] [--dtype ...]
"""

from __future__ import annotations

import statistics
import time

import common
import torch

from pipeline.data.batching import EncodedSplit
from pipeline.training.evaluate import predict


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=96, help="rows per pass; default 96")
    p.add_argument("--eval-batch", type=int, default=32, help="rows per evaluation batch; default 32 (params.yaml)")
    p.set_defaults(repeats=3, warmup=1)
    args = p.parse_args()
    backbone = common.setup(args)
    common.describe(args, backbone)
    full = common.fixed_batch(backbone, 1, args.tokens).input_ids[0].tolist()
    # Rows of varied lengths (the end of one long review), so that length sorting and dynamic padding matter.
    token_ids = [full[-(8 + (i * 37) % max(1, args.tokens - 8)):] for i in range(args.rows)]
    split = EncodedSplit(token_ids, [i % 2 for i in range(args.rows)], backbone.tokenizer.pad_token_id)
    labels = backbone.label_words([" positive", " negative"], "benchmark")
    prompt = common.prompt_init(backbone, args.prompt_length)

    def score(batch) -> torch.Tensor:
        return backbone(prompt, batch.input_ids, batch.attention_mask, labels).logits

    def timed(reuse: bool):
        def run() -> float:
            backbone._kv_memo = None  # every pass starts cold, as a stage's evaluation does
            if not reuse:
                backbone._shared_keys_values = backbone._prompt_keys_values  # the old path: once per batch
            try:
                started = time.perf_counter()
                predict(score, split, args.eval_batch, backbone.device)
                common.synchronize(backbone.device)
                return (time.perf_counter() - started) * 100 / args.rows
            finally:
                backbone.__dict__.pop("_shared_keys_values", None)

        return run

    times = common.interleave({"per batch": timed(False), "once per pass": timed(True)}, args.repeats, args.warmup)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name}: median {medians[name]:.3f} s per 100 rows (range {min(values):.3f}-{max(values):.3f})")
    print(f"E1 eval s/100 rows, per-batch/once-per-pass: {medians['per batch'] / medians['once per pass']:.2f}")


if __name__ == "__main__":
    main()
