"""What the step-time benchmarks (P1-P3) share: options, the backbone, one fixed batch, timed steps, A/B medians.

Every figure is a ratio of medians. The two sides run interleaved in one process (A, B, A, B, ...) after
warm-up rounds, so machine noise (other jobs on shared cores) hits both sides alike.

Our steps go through the library's own loop, :func:`pipeline.training.loop.train` (accelerate, AdamW, clipping,
schedule, history), one step per call. The library has no public "one step" function, so a step is timed
from inside ``train``: the batch iterator records the time of each ``next()`` and the call's return, which
leaves out the per-call set-up (Accelerator, optimizer construction) and keeps only the step itself.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # busy-waiting OpenMP threads wreck shared cores
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests"):  # `pipeline` and the tiny test backbone (tests/tiny.py)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from pipeline.model.backbone import Backbone, LabelWords, load_backbone  # noqa: E402
from pipeline.data.batching import Batch, collate  # noqa: E402
from pipeline.training.losses import task_loss  # noqa: E402
from pipeline.methods.prompt_tuning import SoftPrompt  # noqa: E402
from pipeline.model.precision import DTYPE_SETTINGS, dtype_name, resolve_dtype  # noqa: E402
from pipeline.training.loop import TrainConfig, train  # noqa: E402

DEFAULT_BACKBONE = REPO / "models" / "backbone"

# Review-like sentences; each text strings several together so that every row has more than --tokens tokens
# and left truncation cuts all rows to exactly that many (no padding: a fixed token count per step).
SENTENCES = [
    "The plot of this movie is thin, but the actor in the lead role carries every scene with great charm.",
    "I bought this phone for my friend and the battery died after two days, which is awful for the price.",
    "What a fine film: the review in the paper was right, and the ending made the whole audience cheer.",
    "The team played a poor game on Sunday and the market reacted badly when the stock fell again.",
    "Call now to win a free meeting with the business team tomorrow, the message said, so I deleted it.",
    "Where is the best place to watch the game, and who is the person that answered the question first?",
    "Good sound, great screen and a fair price make this tech gadget the best thing I bought this year.",
    "The sentiment of the crowd turned bad when the actor forgot his lines in the second act of the play.",
    "Hello friend, the review of the new film is positive and the plot is good, so let us go tonight.",
    "This is the worst movie of the year: a bad plot, poor acting and a long, awful, boring ending.",
]


def parser(description: str) -> argparse.ArgumentParser:
    """The options every step benchmark takes; a script adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="tiny random backbone from tests/tiny.py (smoke runs)")
    p.add_argument("--repeats", type=int, default=7, help="timed steps per side (median); default 7")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds per side first; default 2")
    p.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE, help="materialised backbone folder")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (cuda when available)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default); default 1")
    p.add_argument("--batch", type=int, default=8, help="examples per step; default 8")
    p.add_argument("--tokens", type=int, default=64, help="input tokens per example; default 64")
    p.add_argument("--prompt-length", type=int, default=20, help="virtual tokens; default 20")
    p.add_argument(
        "--dtype", default="float32", choices=DTYPE_SETTINGS,
        help="backbone weights: float32 (default), bfloat16, or auto (bf16 where matmuls are native, see README)",
    )
    return p


def setup(args: argparse.Namespace, dtype: str | None = None) -> Backbone:
    """Threads, device and the backbone (tiny random, or the materialised one in ``--backbone``), its weights in
    ``dtype`` (a ``backbone.dtype`` setting; default ``--dtype``)."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA GPU")
    resolved = resolve_dtype(dtype or args.dtype, device)
    if args.tiny:
        from tiny import tiny_backbone

        backbone = tiny_backbone("causal")
        backbone.to(device=device, dtype=resolved)
    else:
        backbone = load_backbone(args.backbone, device, resolved)
    torch.manual_seed(0)
    return backbone


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fixed_batch(backbone: Backbone, size: int, tokens: int, task_ids: list[int] | None = None) -> Batch:
    """``size`` real-looking reviews cut to exactly ``tokens`` tokens each (no padding), on the backbone's device."""
    texts = []
    for i in range(size):
        body = " ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(8))
        texts.append(f"Review: {body}\nSentiment:")
    encoded = backbone.tokenize(texts, tokens)
    if encoded["input_ids"].shape[1] != tokens or not bool(encoded["attention_mask"].all()):
        raise SystemExit(f"error: the benchmark texts are shorter than --tokens {tokens}")
    ids = encoded["input_ids"].tolist()
    pad = backbone.tokenizer.pad_token_id
    return collate(ids, [i % 2 for i in range(size)], list(range(size)), pad, task_ids).to(backbone.device)


def prompt_init(backbone: Backbone, length: int) -> torch.Tensor:
    return backbone.sample_vocab_embeddings(length, torch.Generator().manual_seed(0))


class StepClock:
    """An endless iterator over one batch that notes the time of every ``next()``: step boundaries in ``train``."""

    def __init__(self, batch: object, device: torch.device) -> None:
        self.batch, self.device = batch, device
        self.marks: list[float] = []

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> object:
        synchronize(self.device)
        self.marks.append(time.perf_counter())
        return self.batch

    def stop(self) -> list[float]:
        """Seconds per step, the last one ending now."""
        self.__next__()
        marks, self.marks = self.marks, []
        return [b - a for a, b in zip(marks, marks[1:])]


def train_step_seconds(
    module: nn.Module,
    groups: list[dict],
    compute_loss: Callable[[nn.Module, object], dict[str, torch.Tensor]],
    batch: object,
    device: torch.device,
) -> float:
    """One step of the library's training loop on ``batch``; the seconds of the step alone."""
    clock = StepClock(batch, device)
    with contextlib.redirect_stderr(io.StringIO()):  # the loop's progress bar, once per timed step
        train(module, clock, compute_loss, TrainConfig(steps=1, param_groups=groups), "benchmark")
    (seconds,) = clock.stop()
    return seconds


def prompt_tuning_side(backbone: Backbone, batch: Batch, labels: LabelWords, length: int) -> Callable[[], float]:
    """Our plain prompt-tuning step: SoftPrompt, label-word scoring, task loss, the library's loop."""
    module = SoftPrompt(prompt_init(backbone, length)).to(backbone.device)
    groups = [{"params": [module.weight], "lr": 0.02}]

    def compute_loss(prompt: nn.Module, b: Batch) -> dict[str, torch.Tensor]:
        scores = backbone(prompt(b.task_ids), b.input_ids, b.attention_mask, labels)
        return {"loss": task_loss(scores.logits, b.labels % len(labels.token_ids))}

    return lambda: train_step_seconds(module, groups, compute_loss, batch, backbone.device)


def interleave(sides: dict[str, Callable[[], float]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Run the sides in turn (A, B, A, B, ...): ``warmup`` untimed rounds, then ``repeats`` timed ones."""
    if repeats < 1:
        raise SystemExit("error: --repeats must be at least 1")
    times: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(warmup + repeats):
        for name, step in sides.items():
            seconds = step()
            if round_ >= warmup:
                times[name].append(seconds)
    return times


def compare(args: argparse.Namespace, sides: dict[str, Callable[[], float]], label: str) -> float:
    """Time the two sides interleaved; print each median, then ``label: first/second`` as the last line."""
    times = interleave(sides, args.repeats, args.warmup)
    first, second = sides
    return report(times, args.batch * (args.tokens + args.prompt_length), first, second, label)


def report(times: dict[str, list[float]], tokens_per_step: int, numerator: str, denominator: str, label: str) -> float:
    """Print each side's median (and tokens/s), then the ratio as the last line; return the ratio."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        spread = f"{min(values):.4f}-{max(values):.4f}"
        print(
            f"{name}: median {medians[name]:.4f} s/step over {len(values)} (range {spread}), "
            f"{tokens_per_step / medians[name]:.0f} tokens/s"
        )
    ratio = medians[numerator] / medians[denominator]
    print(f"{label}: {ratio:.2f}")
    return ratio


def describe(args: argparse.Namespace, backbone: Backbone) -> None:
    print(
        f"backbone {backbone.info.name} ({dtype_name(backbone.dtype)}) on {backbone.device}, "
        f"threads {torch.get_num_threads()}, batch {args.batch}, "
        f"{args.tokens} input tokens, {args.prompt_length} virtual tokens, {args.warmup} warm-up + "
        f"{args.repeats} timed steps per side, interleaved"
    )
