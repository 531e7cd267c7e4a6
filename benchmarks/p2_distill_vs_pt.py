"""P2: our distillation step ÷ our plain prompt-tuning step, on the same batch. Target <= 1.1.

* Distillation: :func:`pipeline.training.distill.distill` itself, one step per call (its MultitaskPrompt student, its
  per-task label-word scoring, task + λ(KL + MSE) against cached teacher logits and hidden states, its
  parameter groups and the library's loop). distill() draws its batches from ``pipeline.training.distill.mixed_batches``;
  the benchmark swaps that one function for a clock that hands out the fixed batch, so both sides see the same
  tokens. The batch mixes three source tasks (rows 0,1,2,0,1,2,...), the worst case of the sampler's K ~ U{2..3}.
* Prompt tuning: SoftPrompt + label-word scoring + task loss through the same loop, with task 0's label words.

Label words: the default source tasks' from params.yaml (2, 6 and 5 classes); with --tiny, words of the tiny
tokenizer in the same shape.

    python benchmarks/p2_distill_vs_pt.py [--tiny] [--repeats N]
"""

from __future__ import annotations

import contextlib
import io

import common
import torch
import yaml

import pipeline.training.distill
from pipeline.data.batching import EncodedSplit, TaskData
from pipeline.data.prepared import TaskInfo
from pipeline.config.params import DistillSettings, StepSettings

TINY_LABEL_WORDS = [[" positive", " negative"], [" question", " person", " place", " answer", " topic", " what"],
                    [" business", " sport", " tech", " market", " game"]]


def source_label_words(tiny: bool) -> list[list[str]]:
    if tiny:
        return TINY_LABEL_WORDS
    params = yaml.safe_load((common.REPO / "params.yaml").read_text(encoding="utf-8"))
    return [list(params["tasks"][name]["label_words"].values()) for name in params["source_tasks"]]


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    backbone = common.setup(args)
    common.describe(args, backbone)
    words = source_label_words(args.tiny)
    count = len(words)
    batch = common.fixed_batch(backbone, args.batch, args.tokens, task_ids=[i % count for i in range(args.batch)])
    batch.labels = torch.tensor([i % len(words[k]) for i, k in enumerate(batch.task_ids.tolist())],
                                device=backbone.device)
    split = EncodedSplit(batch.input_ids.tolist(), batch.labels.tolist(), backbone.tokenizer.pad_token_id)
    tasks, teachers = [], []
    generator = torch.Generator().manual_seed(0)
    for k, label_words in enumerate(words):
        info = TaskInfo(name=f"task{k}", labels=[str(c) for c in range(len(label_words))], label_words=label_words,
                        template="{text}", sizes={"train": args.batch}, label_counts={}, source_sha256="benchmark")
        tasks.append(TaskData(info=info, labels=backbone.label_words(label_words, info.name), splits={"train": split}))
        teachers.append({  # cached teacher outputs for every row of the batch
            "prompt": common.prompt_init(backbone, args.prompt_length).cpu(),
            "logits": torch.randn(args.batch, len(label_words), generator=generator),
            "hidden": torch.randn(args.batch, backbone.hidden_size, generator=generator),
            "rows": torch.arange(args.batch),
        })
    settings = DistillSettings(rank=1, lambda_=0.9, temperature=2.0)
    one_step = StepSettings(steps=1, lr=0.01, factor_lr=0.05, warmup_steps=0)
    clock = common.StepClock(batch, backbone.device)
    drawn = []

    def fixed_mixed_batches(*_args, **_kwargs):
        drawn.append(True)
        return clock

    pipeline.training.distill.mixed_batches = fixed_mixed_batches  # distill() looks the name up at call time

    def distill_step() -> float:
        with contextlib.redirect_stderr(io.StringIO()):
            pipeline.training.distill.distill(backbone, tasks, teachers, settings, one_step, 0, args.batch)
        if not drawn:
            raise SystemExit("error: distill() no longer draws batches through pipeline.training.distill.mixed_batches")
        (seconds,) = clock.stop()
        return seconds

    pt = common.prompt_tuning_side(backbone, batch, tasks[0].labels, args.prompt_length)
    common.compare(args, {"distill": distill_step, "pt": pt}, "P2 distill/pt step time ratio")


if __name__ == "__main__":
    main()
