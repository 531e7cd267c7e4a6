"""E2: a cost model of the default `dvc repro`, from per-step and per-evaluated-row costs measured in one process.

Measured here, interleaved in one process (a loaded machine slows every side alike): a training step of the
library's loop (batch ``--batch``, l virtual tokens) and an evaluation pass (length-sorted batches of
``--eval-batch``, inference mode, the prompt's keys/values once per pass), each at two input lengths, giving
seconds = a + b·tokens for a step and for an evaluated row. Each task's tokens come from its prepared data
(``--workspace``): the mean padded length of its training batches and of its evaluation batches.

A stage is then start-up + steps × step(task) + evaluated rows × row(task), with rows counted from the params as
the stages evaluate them (dev curve points, zero-step, final test, teacher outputs, distilled students, the
template alone), before and after this branch's "no work twice" change. The load factor of this machine is
removed by scaling the compute to a stage measured on a quiet machine (``--calibrate``, seconds of
adapt@amazon_sentiment-pt-0 under today's params, from the README), and the model is checked against the other
stages of that run. Prints the table of candidates; the last line the ratio row / step at 64 tokens.

    python benchmarks/e2_repro_cost.py --workspace DIR [--tiny] [--repeats N]
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import common
import numpy as np
import torch
import yaml

from pipeline.data.batching import EncodedSplit, load_task, shuffled_batches
from pipeline.training.evaluate import predict

README_QUIET = {  # README, "Results of the default run" (commit 250145b, quiet machine except rotten_tomatoes)
    "source@trec": 194.9, "source@bbc_news": 287.1, "distill": 209.9,
    "adapt@amazon_sentiment-mpt-0": 185.1, "adapt@amazon_sentiment-pt-0": 173.3,
    "adapt@sms_spam-mpt-0": 192.2, "adapt@sms_spam-pt-0": 198.5,
}
FIXED_STAGES = 46.0 + 10.0 + 1.5  # backbone (45.7 s), data@ for every task (~10 s), report (1.5 s)


@dataclass(frozen=True)
class Plan:
    """One candidate default: what `dvc repro` would run."""

    name: str
    sources: tuple[str, ...] = ("rotten_tomatoes", "trec", "bbc_news")
    source_steps: int = 50
    source_every: int = 10  # 0: no dev curve (select: last), so no step-0 scores and a final dev pass instead
    teacher_examples: int = 256
    distill_steps: int = 50
    targets: tuple[str, ...] = ("amazon_sentiment", "sms_spam")
    k_shot: tuple = ("all",)
    methods: tuple[str, ...] = ("mpt", "pt")
    adapt_steps: int = 60
    adapt_every: int = 10
    once: bool = True  # this branch: dev not rescored, step 0 once per stage, the template once per target


@dataclass
class Costs:
    """Seconds per step and per evaluated row as a + b·tokens, and each task's tokens and split sizes."""

    step: tuple[float, float]
    row: tuple[float, float]
    train_tokens: dict[str, float] = field(default_factory=dict)
    eval_tokens: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    startup: float = 12.0
    scale: float = 1.0  # quiet-machine seconds per measured second
    distill_scale: float = 1.0  # a distillation step (K prompts, KL and hidden-state terms) per mean source step

    def steps(self, task: str, count: int) -> float:
        a, b = self.step
        return count * (a + b * self.train_tokens[task]) * self.scale

    def rows(self, task: str, count: int) -> float:
        a, b = self.row
        return count * (a + b * self.eval_tokens[task]) * self.scale


def points(steps: int, every: int) -> int:
    """Dev evaluations of a run: step 0, every ``every`` steps and the last step."""
    return len({0, steps} | set(range(every, steps + 1, every))) if every > 0 else 0


def stage_seconds(plan: Plan, costs: Costs) -> dict[str, float]:
    """Estimated seconds of every stage of ``plan`` (one seed), rows counted as the stages evaluate them."""
    out: dict[str, float] = {}
    for task in plan.sources:
        dev, test = costs.sizes[task]["dev"], costs.sizes[task]["test"]
        if plan.source_every > 0:
            rows = points(plan.source_steps, plan.source_every) * dev + 2 * test + (0 if plan.once else dev)
        else:
            rows = dev + test
        rows += min(plan.teacher_examples, costs.sizes[task]["train"])  # teacher outputs: logits, hidden states
        out[f"source@{task}"] = costs.startup + costs.steps(task, plan.source_steps) + costs.rows(task, rows)
    distill_step = statistics.mean(costs.steps(t, 1) for t in plan.sources) * costs.distill_scale
    students = sum(costs.rows(t, costs.sizes[t]["dev"] + costs.sizes[t]["test"]) for t in plan.sources)
    out["distill"] = costs.startup + plan.distill_steps * distill_step + students
    for target in plan.targets:
        dev, test = costs.sizes[target]["dev"], costs.sizes[target]["test"]
        for i, method in enumerate(plan.methods):
            ks = len(plan.k_shot)
            curve = points(plan.adapt_steps, plan.adapt_every) * dev
            if plan.once:  # step 0 scored once per stage; template once per target; no second dev pass
                rows = ks * (curve + test) - (ks - 1) * dev + test + (test if i == 0 else 0)
            else:
                rows = ks * (curve + test + dev + test) + test
            seconds = costs.startup + costs.steps(target, ks * plan.adapt_steps) + costs.rows(target, rows)
            out[f"adapt@{target}-{method}-0"] = seconds
    return out


def measure(args, backbone, workspace: Path, tasks: list[str], max_length: int) -> Costs:
    """Step and row costs at two lengths (interleaved), and each task's padded token counts from its data."""
    labels = backbone.label_words([" positive", " negative"], "benchmark")
    prompt = common.prompt_init(backbone, args.prompt_length)
    sides = {}
    for tokens in (16, 64):
        batch = common.fixed_batch(backbone, args.batch, tokens)
        sides[f"step {tokens}"] = common.prompt_tuning_side(backbone, batch, labels, args.prompt_length)
        rows = common.fixed_batch(backbone, args.rows, tokens)
        ids = rows.input_ids.tolist()
        split = EncodedSplit(ids, [i % 2 for i in range(len(ids))], backbone.tokenizer.pad_token_id)

        def evaluate(split=split) -> float:
            backbone._kv_memo = None  # every pass starts cold, as a stage's evaluation does
            started = time.perf_counter()
            predict(lambda b: backbone(prompt, b.input_ids, b.attention_mask, labels).logits, split,
                    args.eval_batch, backbone.device)
            common.synchronize(backbone.device)
            return (time.perf_counter() - started) / len(split)

        sides[f"row {tokens}"] = evaluate
    if args.measured:  # medians of an earlier run: the model again without timing
        med = dict(zip(sides, (float(value) for value in args.measured.split(","))))
    else:
        times = common.interleave(sides, args.repeats, args.warmup)
        med = {name: statistics.median(values) for name, values in times.items()}
        for name, values in times.items():
            print(f"{name} tokens: median {med[name]:.4f} s (range {min(values):.4f}-{max(values):.4f})")
    print("measured medians (for --measured): " + ",".join(f"{med[name]:.4f}" for name in sides))
    line = {kind: (med[f"{kind} 64"] - med[f"{kind} 16"]) / 48 for kind in ("step", "row")}
    costs = Costs(
        step=(med["step 16"] - 16 * line["step"], line["step"]), row=(med["row 16"] - 16 * line["row"], line["row"])
    )
    for task in tasks:
        data = load_task(backbone, workspace / "data" / "prepared" / task, max_length)
        train, dev = data.splits["train"], data.splits["dev"]
        lengths = [len(t) for t in train.token_ids]
        stream = shuffled_batches(len(train), args.batch, 0, lengths)
        batches = [next(stream) for _ in range(50)]
        costs.train_tokens[task] = float(np.mean([max(lengths[r] for r in rows) for rows in batches]))
        padded = [len(rows) * max(len(dev.token_ids[r]) for r in rows) for rows in dev.length_sorted_batches(32)]
        costs.eval_tokens[task] = sum(padded) / len(dev)
        costs.sizes[task] = {split: len(data.splits[split]) for split in ("train", "dev", "test")}
        print(f"{task}: {costs.train_tokens[task]:.1f} tokens per training row, "
              f"{costs.eval_tokens[task]:.1f} per evaluated row; sizes {costs.sizes[task]}")
    return costs


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, default=common.REPO, help="a repo whose data/prepared/ holds the tasks")
    p.add_argument("--rows", type=int, default=64, help="rows per timed evaluation pass; default 64")
    p.add_argument("--eval-batch", type=int, default=32, help="model.eval_batch_size; default 32")
    p.add_argument("--startup", type=float, default=12.0, help="quiet seconds per training stage outside compute")
    p.add_argument("--calibrate", type=float, default=README_QUIET["adapt@amazon_sentiment-pt-0"],
                   help="quiet seconds of adapt@amazon_sentiment-pt-0 under today's params (README); 0: no scaling")
    p.add_argument("--measured", help="step16,row16,step64,row64 medians of an earlier run: no timing")
    p.add_argument("--row-scale", type=float, default=1.0,
                   help="multiply the row cost: (evaluated row / step inside a stage, from P10's dev_seconds and "
                        "training seconds) / (the same ratio measured here at that task's lengths); default 1")
    p.set_defaults(repeats=3, warmup=1)
    args = p.parse_args()
    backbone = common.setup(args)
    common.describe(args, backbone)
    plans = candidates()
    tasks = sorted({t for plan in plans for t in (*plan.sources, *plan.targets)})
    costs = measure(args, backbone, args.workspace, tasks, 64)
    costs.startup = args.startup
    costs.row = (costs.row[0] * args.row_scale, costs.row[1] * args.row_scale)
    today = Plan("today (k all, 3 sources x 50, eval 10)", once=False)
    if args.calibrate:
        unscaled = stage_seconds(today, costs)["adapt@amazon_sentiment-pt-0"] - args.startup
        costs.scale = (args.calibrate - args.startup) / unscaled
        distill = stage_seconds(today, costs)["distill"] - args.startup
        costs.distill_scale = (README_QUIET["distill"] - args.startup) / distill
    print(f"quiet-machine scale {costs.scale:.3f}, distill step / mean source step {costs.distill_scale:.2f} "
          f"(start-up {args.startup:.0f} s per training stage)")
    check = stage_seconds(today, costs)
    print("model check, today's params (before): " + ", ".join(
        f"{name} {check[name]:.0f} s (measured {seconds:.0f})" for name, seconds in README_QUIET.items()))
    print("| candidate | sources | distill | adapt each | adapt all | total (with backbone, data, report) |")
    print("|---|---:|---:|---:|---:|---:|")
    for plan in [today, *plans]:
        stages = stage_seconds(plan, costs)
        source = sum(v for k, v in stages.items() if k.startswith("source@"))
        adapt = [v for k, v in stages.items() if k.startswith("adapt@")]
        total = sum(stages.values()) + FIXED_STAGES
        print(f"| {plan.name} | {source:.0f} | {stages['distill']:.0f} | {min(adapt):.0f}-{max(adapt):.0f} | "
              f"{sum(adapt):.0f} | {total:.0f} s = {total / 60:.1f} min |")
    a_row, b_row = costs.row
    a_step, b_step = costs.step
    print(f"E2 evaluated row / training step at 64 tokens: {(a_row + 64 * b_row) / (a_step + 64 * b_step):.3f}")


def candidates() -> list[Plan]:
    base = Plan("k all, eval 10 (this branch)")
    k16 = replace(base, k_shot=(16,), adapt_every=20)
    five = ("rotten_tomatoes", "trec", "bbc_news", "subjectivity", "dialog_reply")
    return [
        base,
        replace(base, name="k 16, eval 10", k_shot=(16,)),
        replace(k16, name="k 16, eval 20"),
        replace(base, name="k 16+all, eval 10", k_shot=(16, "all")),
        replace(k16, name="k 16+all, eval 20", k_shot=(16, "all")),
        replace(k16, name="k 16, eval 30", adapt_every=30),
        replace(k16, name="k 16, eval 20, sources 50 (dev every 25)", source_every=25),
        replace(k16, name="k 16, eval 20, sources 50 (dev every 50)", source_every=50),
        replace(k16, name="k 16, eval 30, sources 50 (dev every 50)", adapt_every=30, source_every=50),
        replace(k16, name="k 16, eval 30, sources 50 (no dev curve: last)", adapt_every=30, source_every=0),
        replace(k16, name="k 16, eval 30, sources 50 (no dev curve), 128 teacher rows", adapt_every=30,
                source_every=0, teacher_examples=128),
        replace(k16, name="k 16, eval 20, sources 30", source_steps=30),
        replace(k16, name="k 16, eval 20, sources 80 (dev every 40)", source_steps=80, source_every=40),
        replace(k16, name="k 16, eval 20, sources 100 (dev every 50)", source_steps=100, source_every=50),
        replace(k16, name="k 16, eval 20, sources 100 (every 20), distill 100", source_steps=100, source_every=20,
                distill_steps=100),
        replace(k16, name="study: 5 sources x 120 (every 20), distill 100, k 16, eval 20", sources=five,
                source_steps=120, source_every=20, distill_steps=100),
    ]


if __name__ == "__main__":
    main()
