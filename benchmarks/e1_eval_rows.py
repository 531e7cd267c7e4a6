"""E1: evaluation cost, seconds per 100 evaluated rows: the library's pass against the ways it avoids.

:func:`pipeline.evaluate.predict` scores ``--rows`` review-like rows of 8 to ``--tokens`` tokens after a (l, d)
prompt, each side once per round, interleaved in one process (so a loaded machine slows every side alike):

- ``library``: as a stage evaluates: length-sorted batches of ``--eval-batch`` rows, the prompt's keys and values
  computed for the first batch and reused while the prompt is the same (``Backbone._shared_keys_values``);
- ``keys/values per batch``: the prompt run through the model again for every batch (before the reuse);
- ``rows in split order``: batches cut in row order, padded to their longest row (no length sorting);
- ``eval batch N``: the library's pass with other batch sizes (``--batch-sizes``), to size ``model.eval_batch_size``;
- ``template alone``: no prompt at all (l = 0), what the template baseline costs.

Prints each side's median seconds per 100 rows and its ratio to ``library``; the last line is the library's
figure with the ratio per-batch ÷ library.

    python benchmarks/e1_eval_rows.py [--tiny] [--repeats N] [--rows N] [--eval-batch N] [--batch-sizes 8,16,64]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import common
import torch

from pipeline.data.batching import EncodedSplit
from pipeline.training.evaluate import predict


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=96, help="rows per pass; default 96")
    p.add_argument("--eval-batch", type=int, default=32, help="rows per evaluation batch; default 32 (params.yaml)")
    p.add_argument("--batch-sizes", default="8,16,64", help="other eval batch sizes to time; default 8,16,64")
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
    empty = prompt[:0]

    def timed(batch_size: int, reuse: bool = True, sorted_rows: bool = True, scored: torch.Tensor = prompt):
        def score(batch) -> torch.Tensor:
            return backbone(scored, batch.input_ids, batch.attention_mask, labels).logits

        def run() -> float:
            backbone._kv_memo = None  # every pass starts cold, as a stage's evaluation does
            if not reuse:
                backbone._shared_keys_values = backbone._prompt_keys_values  # the old path: once per batch
            if not sorted_rows:
                in_order = [list(range(i, min(i + batch_size, len(split)))) for i in range(0, len(split), batch_size)]
                split.length_sorted_batches = lambda size: in_order
            try:
                started = time.perf_counter()
                predict(score, split, batch_size, backbone.device)
                common.synchronize(backbone.device)
                return (time.perf_counter() - started) * 100 / args.rows
            finally:
                backbone.__dict__.pop("_shared_keys_values", None)
                split.__dict__.pop("length_sorted_batches", None)

        return run

    sides: dict[str, Callable[[], float]] = {
        "library": timed(args.eval_batch),
        "keys/values per batch": timed(args.eval_batch, reuse=False),
        "rows in split order": timed(args.eval_batch, sorted_rows=False),
        "template alone": timed(args.eval_batch, scored=empty),
    }
    for size in (int(s) for s in args.batch_sizes.split(",") if s.strip()):
        if size != args.eval_batch:
            sides[f"eval batch {size}"] = timed(size)
    times = common.interleave(sides, args.repeats, args.warmup)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        ratio = medians[name] / medians["library"]
        print(f"{name}: median {medians[name]:.3f} s per 100 rows (range {min(values):.3f}-{max(values):.3f}), "
              f"{ratio:.2f}x library")
    print(f"E1 eval s/100 rows, library (eval batch {args.eval_batch}): {medians['library']:.3f}; "
          f"per-batch keys/values / library: {medians['keys/values per batch'] / medians['library']:.2f}")


if __name__ == "__main__":
    main()
