"""The README's user paths on a second tiny repo, end to end with `dvc`.

The backbone is a tiny random T5 (kind seq2seq) given as a `hub` source and one task is a `hub` dataset, both local
folders in the Hub layout read offline (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE). On it: every stage runs; the commands
of the README's "Experiments" and "Ablations" blocks run as written (the queue runs one of its experiments), and
each experiment shows up in `dvc exp show --json` with its params and metrics; one stage trains on two processes
and is recorded with `dvc commit` (the multi-GPU recipe, here on CPU processes).
tests/test_readme.py maps every README command to the test here (or elsewhere) that runs it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from test_end_to_end import BINARY, dvc, git, make_repo, ran_stages, task_spec, write_task_csv
from tiny import save_tiny_backbone

UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("guide")
    with pytest.MonkeyPatch.context() as env:  # read by every dvc call below, and by the stages it runs
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setenv("HF_DATASETS_OFFLINE", "1")
        env.setenv("HF_HOME", str(root / "hf-home"))  # the datasets cache, away from the user's
        save_tiny_backbone(root / "tiny-t5", "seq2seq")
        hub_data = root / "hub-src_a"  # a dataset folder as on the Hub: data/<split>.csv
        (hub_data / "data").mkdir(parents=True)
        write_task_csv(hub_data / "data" / "train.csv", list(BINARY), rows=48, seed=1)
        for name, seed in [("src_b", 2), ("tgt_a", 3)]:
            write_task_csv(root / f"{name}.csv", list(BINARY), rows=48, seed=seed)
        tasks = {name: task_spec(root / f"{name}.csv", BINARY) for name in ("src_b", "tgt_a")}
        tasks["src_a"] = {**tasks["src_b"], "source": {"kind": "hub", "dataset": str(hub_data), "split": "train"}}
        backbone = {"name": "tiny-t5", "kind": "seq2seq", "source": {"kind": "hub", "model": str(root / "tiny-t5")}}
        yield make_repo(root, backbone, tasks, ["src_a", "src_b"], ["tgt_a"])


def test_every_stage_runs_on_an_encoder_decoder_backbone_from_hub_sources(repo):
    stages = set(dvc(repo, "stage", "list", "--name-only").stdout.split())
    result = dvc(repo, "repro")
    assert ran_stages(result.stdout) == stages and len(stages) == 11
    summaries = [line for line in result.stdout.splitlines() if re.match(r"\[[\w@-]+\] ", line)]
    assert len(summaries) == len(stages), summaries  # one summary line per stage
    assert json.loads((repo / "models" / "backbone" / "backbone.json").read_text())["kind"] == "seq2seq"
    methods = yaml.safe_load((repo / "params.yaml").read_text())["adapt"]["methods"]
    rows = (repo / "reports" / "transfer.csv").read_text().splitlines()[1:]
    assert {tuple(row.split(",")[:2]) for row in rows} == {("tgt_a", method) for method in methods}
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baseline run")  # dvc exp needs a commit


def test_the_compare_runs_commands_of_the_readme(repo):
    dvc(repo, "exp", "run", "-n", "rank2", "-S", "distill.rank=2")
    dvc(repo, "exp", "run", "-n", "label-init", "-S", "adapt.pt_init=label_words")
    table = dvc(repo, "exp", "show", "--only-changed").stdout
    assert "[rank2]" in table and "[label-init]" in table
    found = experiments(json.loads(dvc(repo, "exp", "show", "--json").stdout))
    assert {"rank2", "label-init"} <= set(found)
    assert found["rank2"][0]["distill"]["rank"] == 2 and found["label-init"][0]["adapt"]["pt_init"] == "label_words"
    methods = yaml.safe_load((repo / "params.yaml").read_text())["adapt"]["methods"]
    for _, metrics in (found["rank2"], found["label-init"]):  # each experiment with its own metrics
        assert 0.0 <= metrics["tgt_a"]["mpt"]["accuracy"] <= 1.0 and set(metrics["mean"]) == set(methods)
    assert "adapt.pt_init" in dvc(repo, "params", "diff").stdout  # the workspace holds the last experiment
    dvc(repo, "metrics", "diff")
    html = repo / "dvc_plots" / "index.html"
    for command in ("show", "diff"):  # README, Learning curves and Compare runs
        html.unlink(missing_ok=True)
        dvc(repo, "plots", command)
        assert "dvclive/distill/plots/metrics/train/loss.tsv" in html.read_text(encoding="utf-8")
    dvc(repo, "exp", "apply", "label-init")
    assert yaml.safe_load((repo / "params.yaml").read_text())["adapt"]["pt_init"] == "label_words"
    assert dvc(repo, "status").stdout.strip().endswith(UP_TO_DATE)
    pipeline_command(repo, "compare")
    compared = (repo / "reports" / "compare" / "compare.md").read_text(encoding="utf-8")
    assert "rank2" in compared and "label-init" in compared


def experiments(shown: list[dict]) -> dict[str, tuple[dict, dict]]:
    """Experiment name -> (its params.yaml, its reports/metrics.json) from `dvc exp show --json`."""
    found = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for revision in exp.get("revs", []):
                data = revision.get("data") or {}
                params = data.get("params", {}).get("params.yaml", {}).get("data", {})
                metrics = data.get("metrics", {}).get("reports/metrics.json", {}).get("data", {})
                found[revision.get("name")] = (params, metrics)
    return found


QUEUED = [  # the README's ablation sweep, as written
    ("rank", "distill.rank=1,2,4"), ("no-distill", "distill.lambda=0"), ("no-decomp", "distill.decomposition=false"),
    ("train-p", "adapt.freeze_shared=false"),
]


def test_the_ablation_queue_commands_of_the_readme(repo):
    """Every README queue command is queued as written; one experiment (train-p, the cheapest: only the adapt@
    stages and the report rerun) is run through the queue, the rest are removed again (six would take minutes)."""
    for name, change in QUEUED:
        dvc(repo, "exp", "run", "--queue", "-n", name, "-S", change)
    queued = {"rank-1", "rank-2", "rank-3", "no-distill", "no-decomp", "train-p"}
    assert queued <= set(dvc(repo, "queue", "status").stdout.split())  # a sweep queues one per value
    dvc(repo, "queue", "remove", *sorted(queued - {"train-p"}))
    try:
        dvc(repo, "queue", "start", "-j", "1")
        deadline = time.monotonic() + 300
        while not re.search(r"train-p.*(Success|Failed)", dvc(repo, "queue", "status").stdout):
            assert time.monotonic() < deadline, "the queued experiment did not finish in 5 minutes"
            time.sleep(2)
    finally:
        dvc(repo, "queue", "stop", "--kill", check=False)  # leave no worker behind
    assert re.search(r"train-p.*Success", dvc(repo, "queue", "status").stdout)
    assert "Running stage 'adapt@tgt_a-mpt-0'" in dvc(repo, "queue", "logs", "train-p").stdout
    assert dvc(repo, "exp", "show", "--json").stdout.count('"train-p"') >= 1


def pipeline_command(repo: Path, *args: str) -> str:
    """``python -m pipeline <args>`` in ``repo``, with this interpreter's venv (and its dvc) first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_stage_trained_on_two_processes_is_recorded_with_dvc_commit(repo):
    """README, GPU section: `torchrun --nproc_per_node 2 -m stages.distill`, then `dvc commit -f distill`."""
    launcher = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}  # CPU processes (gloo) here
    command = [str(launcher), "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "stages.distill"]
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert len(re.findall(r"^\[distill\] ", result.stdout, flags=re.M)) == 1  # one process reports
    dvc(repo, "commit", "-f", "distill")
    assert "distill" not in json.loads(dvc(repo, "status", "--json").stdout)  # recorded; downstream stages rerun
