"""P8's profile: where a prompt-tuning step's time goes, per operator, in each weight dtype (issue 11).

P8 compares whole steps; this says why the ratio is what it is. For each dtype (``--dtypes``, default float32 and
bfloat16) it runs ``--warmup`` untimed steps of the library's loop, then ``--repeats`` steps under
``torch.profiler`` and prints the operators with the most self CPU time per step, grouped as matmul (mm, addmm,
bmm, linear's kernels), attention, elementwise/norm/activation, dtype casts and copies, and the rest. The last line
gives the share of a bf16 step outside matrix products: what a faster matmul cannot remove.

    python benchmarks/p8_profile.py [--tiny] [--repeats N] [--dtypes float32 bfloat16] [--top K]
"""

from __future__ import annotations

from collections import defaultdict

import common
from torch.profiler import ProfilerActivity, profile

# Operator name (aten:: removed) -> the first group with a prefix of it; the order matters ("addmm" is a matmul).
GROUPS = (
    ("matmul", ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "mkldnn_", "_mkl")),
    ("attention", ("_scaled_dot_product", "scaled_dot_product", "_flash_attention", "_efficient_attention")),
    ("casts/copies/gathers", ("to", "_to_copy", "copy_", "clone", "contiguous", "cat", "index", "embedding", "gather")),
    ("elementwise/norm", (
        "mul", "add", "sub", "div", "pow", "rsqrt", "mean", "sum", "silu", "gelu", "tanh", "neg", "exp", "softmax",
        "_softmax", "log_softmax", "_log_softmax", "where", "masked_fill", "sigmoid", "rms_norm", "_fused_rms_norm",
        "native_layer_norm", "fill_", "zero_", "threshold",
    )),
)


def group_of(name: str) -> str:
    bare = name.removeprefix("aten::")
    for group, prefixes in GROUPS:
        if bare.startswith(prefixes):
            return group
    return "other"


def profile_step(step, repeats: int) -> dict[str, float]:
    """Self CPU seconds per step of every leaf operator over ``repeats`` steps."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith("aten::") and event.self_cpu_time_total > 0:
            totals[event.key] += event.self_cpu_time_total / 1e6 / repeats
    return dict(totals)


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], help="weight dtypes to profile")
    p.add_argument("--top", type=int, default=12, help="operators listed per dtype; default 12")
    args = p.parse_args()
    outside = {}
    for dtype in args.dtypes:
        backbone = common.setup(args, dtype)
        common.describe(args, backbone)
        batch = common.fixed_batch(backbone, args.batch, args.tokens)
        labels = backbone.label_words([" positive", " negative"], "benchmark")
        step = common.prompt_tuning_side(backbone, batch, labels, args.prompt_length)
        for _ in range(args.warmup):
            step()
        ops = profile_step(step, args.repeats)
        total = sum(ops.values())
        groups: dict[str, float] = defaultdict(float)
        for name, seconds in ops.items():
            groups[group_of(name)] += seconds
        print(f"\n{common.dtype_name(backbone.dtype)}: {total:.3f} s of operator self time per step")
        print("| group | s/step | share |\n|---|---:|---:|")
        for group, seconds in sorted(groups.items(), key=lambda kv: -kv[1]):
            print(f"| {group} | {seconds:.3f} | {seconds / total:.0%} |")
        print("| operator | group | s/step | share |\n|---|---|---:|---:|")
        for name, seconds in sorted(ops.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"| {name} | {group_of(name)} | {seconds:.3f} | {seconds / total:.0%} |")
        outside[common.dtype_name(backbone.dtype)] = 1 - groups["matmul"] / total
    print()
    print("share of operator time outside matrix products: "
          + ", ".join(f"{dtype} {share:.2f}" for dtype, share in outside.items()))


if __name__ == "__main__":
    main()
