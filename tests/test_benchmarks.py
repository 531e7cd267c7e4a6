"""The benchmarks run on the tiny backbone and end with their figure; no timing thresholds (noisy machines).

P4 (two full tiny `dvc repro` runs first, ~3 min), P5 (a full run) and P6 are left to docs/benchmarks.md; P5's
log parser is checked here on a synthetic log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NUMBER_AT_END = re.compile(r"\d+(?:\.\d+)?$")


def run_benchmark(name: str, *args: str) -> list[str]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    output = f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, f"{name} exited {result.returncode}:\n{output}"
    return result.stdout.strip().splitlines()


@pytest.mark.parametrize(
    "name", ["p1_peft_vs_ours", "p2_distill_vs_pt", "p3_ours_vs_bare", "p8_fp32_vs_bf16", "p9_matmul_efficiency"]
)
def test_step_benchmark_ends_with_its_ratio(name):
    last = run_benchmark(name, "--tiny", "--repeats", "2")[-1]
    assert last.startswith(f"P{name[1]} ") and NUMBER_AT_END.search(last), last


@pytest.mark.parametrize(
    "args, start", [(("--dtype", "bfloat16"), "P1 "), (("--ours-dtype", "bfloat16"), "P1d peft float32/ours bfloat16")]
)
def test_p1_in_bf16_and_p1d_end_with_their_ratio(args, start):
    last = run_benchmark("p1_peft_vs_ours", "--tiny", "--repeats", "1", "--warmup", "1", *args)[-1]
    assert last.startswith(start) and "bfloat16" in last and NUMBER_AT_END.search(last), last


def test_step_profile_groups_every_operator_and_ends_with_the_share_outside_matmuls():
    lines = run_benchmark("p8_profile", "--tiny", "--repeats", "1", "--warmup", "1", "--dtypes", "float32")
    shares = [float(row.split("|")[3].strip().rstrip("%")) for row in lines
              if row.startswith("| ") and row.count("|") == 4 and not row.startswith("| group")]
    assert 95 <= sum(shares) <= 105, lines  # the groups share out the whole step (rounded percentages)
    assert re.fullmatch(r"share of operator time outside matrix products: float32 0\.\d\d", lines[-1]), lines[-1]


def test_evaluation_benchmark_ends_with_its_ratio():
    last = run_benchmark("e1_eval_rows", "--tiny", "--repeats", "1", "--rows", "40", "--eval-batch", "8")[-1]
    assert last.startswith("E1 ") and NUMBER_AT_END.search(last), last


def test_stage_overhead_benchmark_ends_with_its_ratio():
    last = run_benchmark("p10_stage_overhead", "--tiny")[-1]
    assert last.startswith("P10 ") and re.search(r": \d\.\d\d ", last), last


def test_repro_log_parser(tmp_path):
    log = tmp_path / "repro.log"
    log.write_text(
        "Running stage 'data@a':\n> python stages/prepare.py a\n[data@a] a: 10/2/2 examples (0.5 s)\n"
        "Stage 'backbone' didn't change, skipping\n"
        "Running stage 'source@a':\n> python stages/source.py a\nsource@a: 50%|##| 1/2\rsource@a: 100%|##| 2/2\n"
        "[source] teacher for a: test accuracy 0.700 -> results/source/a (89.5 s)\n",
        encoding="utf-8",
    )
    lines = run_benchmark("p5_default_repro", "--from-log", str(log))
    assert any(re.match(r"source@a\s+89\.5 s", line) for line in lines), lines
    assert lines[-1] == "P5 default dvc repro total: 1.5 min (target <= 20)"


def test_the_cost_model_counts_the_rows_each_stage_evaluates():
    """E2's row counts, at one second per row and no steps or start-up: a stage's seconds are its evaluated rows.
    An adapt@ stage at k = all, 60 steps, dev every 10 (dev 100, test 200): 7 dev points + final test; before this
    change also the step-0 test, the final dev again and the template; now the template only in the first method's
    stage of a target, and a second k shares the step-0 dev and test."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import e2_repro_cost as e2
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    tasks = ("rotten_tomatoes", "trec", "bbc_news", "amazon_sentiment", "sms_spam")
    costs = e2.Costs(step=(0.0, 0.0), row=(1.0, 0.0), startup=0.0)
    for task in tasks:
        costs.train_tokens[task] = costs.eval_tokens[task] = 30.0
        costs.sizes[task] = {"train": 2000, "dev": 100, "test": 200}
    assert e2.points(60, 10) == 7 and e2.points(60, 20) == 4 and e2.points(50, 20) == 4 and e2.points(6, 0) == 0
    before = e2.stage_seconds(e2.Plan("before", once=False), costs)
    after = e2.stage_seconds(e2.Plan("after"), costs)
    assert before["adapt@sms_spam-pt-0"] == 700 + 200 + 200 + 100 + 200
    assert after["adapt@sms_spam-mpt-0"] == 700 + 200 + 200 + 200 and after["adapt@sms_spam-pt-0"] == 700 + 200 + 200
    two = e2.stage_seconds(e2.Plan("two k", k_shot=(16, "all")), costs)
    assert two["adapt@sms_spam-pt-0"] == 2 * (700 + 200) + 200 - 100
    assert before["source@trec"] == 6 * 100 + 2 * 200 + 100 + 256 and after["source@trec"] == before["source@trec"] - 100
    assert before["distill"] == 3 * 300
    # Teachers without a dev curve: the final dev and test passes and the teacher outputs only.
    assert e2.stage_seconds(e2.Plan("no curve", source_every=0), costs)["source@trec"] == 100 + 200 + 256
