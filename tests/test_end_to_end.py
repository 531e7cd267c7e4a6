"""`dvc repro` end to end in a temporary git repo, on a tiny random backbone and tiny local data.

Checks the promises of the pipeline's DVC layout: every stage runs; a forced rerun repeats every artifact; a new
target, seed or method adds only its own stages (plus the report). The one full `dvc repro` is the session's shared
``tiny_run`` (tests/conftest.py); the tests that change the repo share one copy of it, in the order written here.
Adding the other six methods is the shared ``every_method_run``'s own `dvc repro`, read here.
That `dvc exp run -S` experiments show up in `dvc exp show --json` with their params and metrics is checked on the
user guide's repo (tests/test_user_guide.py), which runs the README's experiments anyway.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.cli import dvc_run
from pipeline.config.load import section
from pipeline.config.method_inputs import KNOBS
from pipeline.store.tracking import read_sections
from tiny import WORDS, save_tiny_backbone

REPO = Path(__file__).resolve().parents[1]
VOCAB = [w for w in WORDS if w not in {"positive", "negative", "spam", "normal"}]
BINARY = {"good": " positive", "bad": " negative"}


def write_task_csv(path: Path, labels: list[str], rows: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(rows):
        label = labels[i % len(labels)]
        # Label-correlated words give the tiny model something to learn; the index keeps texts unique.
        words = rng.sample(VOCAB, 5) + [label[:3], str(i)]
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def task_spec(csv: Path, labels: dict[str, str]) -> dict:
    return {
        "source": {"kind": "file", "path": str(csv), "format": "csv"},
        "columns": {"text": "text", "label": "label"},
        "template": "{text} sentiment :",
        "label_words": labels,
        "splits": {"train": 24, "dev": 6, "test": 6},
    }


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        # Stage commands call `python`: make it this interpreter (the project's venv).
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=repo, check=True, capture_output=True,
    )


def make_repo(root: Path, backbone: dict, tasks: dict, sources: list[str], targets: list[str]) -> Path:
    """``root/repo``: the project's code, params.yaml with 3-step budgets, this backbone and these tasks; git and DVC
    initialised, nothing run yet."""
    repo = root / "repo"
    repo.mkdir()
    for item in ("pipeline", "stages", "dvc.yaml", ".dvcignore"):
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / item)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["backbone"] = {"dtype": "auto", **backbone}  # the stages track backbone.dtype, so it must be there
    params["numerics"]["threads"] = 1  # one thread per stage, as the suite runs (two pytest workers on two cores)
    params["model"] = {"prompt_length": 4, "max_length": 16, "batch_size": 4, "eval_batch_size": 8}
    for section in ("source", "distill", "adapt"):
        params[section]["steps"], params[section]["warmup_steps"] = 3, 1
    params["source"]["teacher_examples"] = 8
    params["tasks"], params["source_tasks"], params["target_tasks"] = tasks, sources, targets
    params["adapt"]["methods"] = ["mpt", "pt"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    git(repo, "init", "-q")
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.analytics", "false")
    dvc(repo, "config", "core.check_update", "false")
    return repo


def tiny_e2e_repo(root: Path) -> Path:
    """``root/repo``: the tiny random backbone, sources src_a and src_b, target tgt_a trained at k=4 and on all
    its examples; not run yet."""
    save_tiny_backbone(root / "tiny-backbone")
    for name, seed in [("src_a", 1), ("src_b", 2), ("tgt_a", 3)]:
        write_task_csv(root / f"{name}.csv", list(BINARY), rows=48, seed=seed)
    backbone = {
        "name": "tiny-llama", "kind": "causal",
        "source": {"kind": "local", "path": str(root / "tiny-backbone"), "format": "hf"},
    }
    tasks = {name: task_spec(root / f"{name}.csv", BINARY) for name in ("src_a", "src_b", "tgt_a")}
    tasks["tgt_a"]["k_shot"] = [4, "all"]  # one adapt@ stage trains both; seeds stays [0]
    return make_repo(root, backbone, tasks, ["src_a", "src_b"], ["tgt_a"])


@pytest.fixture(scope="module")
def repo(tiny_run, tmp_path_factory) -> Path:
    """This module's copy of the shared tiny run, for the tests that change it (they run in the order written)."""
    return tiny_run.copy(tmp_path_factory.mktemp("e2e"))


def ran_stages(output: str) -> set[str]:
    return set(dvc_run.ran_stages(output))


def test_repro_runs_every_stage(tiny_run):
    """The shared run's one `dvc repro` (tests/conftest.py), read here."""
    repo = tiny_run.repo
    expected = {
        "backbone", "data@src_a", "data@src_b", "data@tgt_a", "source@src_a", "source@src_b", "distill",
        "method_inputs", "adapt@tgt_a-mpt-0", "adapt@tgt_a-pt-0", "report",
    }
    assert ran_stages(tiny_run.repro_output) == expected
    rows = (repo / "reports" / "transfer.csv").read_text().splitlines()
    assert rows[0].startswith("target,method,k,seed,accuracy")
    expected_runs = {("tgt_a", method, k, "0") for method in ("mpt", "pt") for k in ("4", "all")}
    assert {tuple(r.split(",")[:4]) for r in rows[1:]} == expected_runs
    runs = repo / "results" / "adapt"
    metrics = json.loads((runs / "tgt_a-mpt" / "seed0" / "kall" / "metrics.json").read_text())
    assert metrics["trainable_params"] == 4 + 32  # l + d: only the rank-one factor L is trained
    assert metrics["train_examples"] == 24 and (runs / "tgt_a-mpt" / "seed0" / "kall" / "params.safetensors").is_file()
    few = json.loads((runs / "tgt_a-pt" / "seed0" / "k4" / "metrics.json").read_text())
    assert few["trainable_params"] == 4 * 32 and few["train_examples"] == 4 and few["k"] == 4
    assert set(json.loads((runs / "tgt_a-pt" / "seed0.timing.json").read_text())) == {"k4", "kall"}
    assert "n=1 (one seed, no interval)" in (repo / "reports" / "transfer.md").read_text()
    assert dvc(repo, "status").stdout.strip().endswith("Data and pipelines are up to date.")


def test_each_training_stage_logs_its_params_metrics_and_curves_with_dvclive(tiny_run):
    repo = tiny_run.repo
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    training = sorted(name for name in lock if name.split("@")[0] in {"source", "distill", "adapt"})
    assert len(training) == 5
    for stage in training:
        folder = repo / "dvclive" / stage.replace("@", "_")
        logged = yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8"))
        tracked = lock[stage]["params"]["params.yaml"]  # what dvc.yaml says the stage reads
        # and for an adapt@ run, its method's own params, which DVC tracks through its method_inputs file
        own = KNOBS[stage.split("-")[1]] if stage.startswith("adapt@") else ()
        assert read_sections(logged, (*tracked, *own)) == logged, stage  # nothing logged that DVC does not track
        assert {key: section(logged, key) for key in tracked} == tracked, stage
        inputs = json.loads((repo / f"results/method_inputs/{stage.split('-')[1]}.json").read_text()) if own else {}
        assert read_sections(logged, own) == inputs.get("params", {}), stage
        runs = ["k4/", "kall/"] if stage.startswith("adapt@") else [""]  # an adapt@ stage logs each k
        for run in runs:
            curve = (folder / "plots" / "metrics" / "train" / f"{run}loss.tsv").read_text().splitlines()
            assert curve[0] == "step\tloss" and [line.split("\t")[0] for line in curve[1:]] == ["0", "1", "2"]
            if stage.startswith("adapt@"):  # dev scored before training and after the last of the 3 steps
                dev = (folder / "plots" / "metrics" / "dev" / f"{run}accuracy.tsv").read_text().splitlines()
                assert [line.split("\t")[0] for line in dev[1:]] == ["0", "3"], stage
        summary = json.loads((folder / "metrics.json").read_text())
        assert summary["step"] == 2 and section(summary["train"], f"{runs[-1]}loss".replace("/", "."))
    curves = repo / "dvclive" / "distill" / "plots" / "metrics" / "train"
    assert sorted(path.name for path in curves.iterdir()) == ["kl.tsv", "loss.tsv", "mse.tsv", "task.tsv"]
    adapt = json.loads((repo / "dvclive" / "adapt_tgt_a-mpt-0" / "metrics.json").read_text())
    assert adapt["kall"]["trainable_params"] == 4 + 32 and 0 <= adapt["k4"]["test"]["accuracy"] <= 1


def lock_hashes(repo: Path) -> dict[str, str]:
    """Every output path in dvc.lock with its md5."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


# Wall time is not reproducible; it lives in timing.json and in the report's time column only.
TIMED = ("timing.json", "transfer.csv", "transfer.md")


def test_forced_rerun_repeats_every_artifact_byte_for_byte(repo):
    before = lock_hashes(repo)
    result = dvc(repo, "repro", "--force")
    assert len(ran_stages(result.stdout)) == 11
    after = lock_hashes(repo)
    assert set(after) == set(before)
    changed = sorted(path for path in before if before[path] != after[path] and not path.endswith(TIMED))
    assert changed == []
    assert any(path.endswith("timing.json") for path in before)  # the timings are tracked, just not compared


def test_adding_a_target_and_a_seed_runs_only_their_stages(repo):
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    csv = repo.parent / "tgt_b.csv"
    write_task_csv(csv, list(BINARY), rows=48, seed=4)
    params["tasks"]["tgt_b"] = task_spec(csv, {"good": " positive", "bad": " negative"})
    params["target_tasks"].append("tgt_b")
    params["seeds"] = [0, 1]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    # tgt_b's stages for both seeds, seed 1 of tgt_a; nothing that already ran for tgt_a under seed 0.
    expected = {"data@tgt_b", "report"} | {f"adapt@{t}-{m}-1" for t in ("tgt_a", "tgt_b") for m in ("mpt", "pt")}
    expected |= {f"adapt@tgt_b-{m}-0" for m in ("mpt", "pt")}
    assert set(json.loads(dvc(repo, "status", "--json").stdout)) == expected
    assert ran_stages(dvc(repo, "repro").stdout) == expected
    rows = (repo / "reports" / "transfer.csv").read_text().splitlines()[1:]
    runs = {(t, m, k, s) for t, ks in (("tgt_a", ("4", "all")), ("tgt_b", ("all",))) for k in ks
            for m in ("mpt", "pt") for s in ("0", "1")}
    assert {tuple(r.split(",")[:4]) for r in rows} == runs
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert metrics["tgt_b"]["mpt"]["seeds"] == 2 and "accuracy_ci95" in metrics["tgt_b"]["mpt"]
    assert "accuracy_vs_pt_ci95" in metrics["tgt_a@k4"]["mpt"]
    assert "**tgt_b**, k=all, 2 seeds" in (repo / "reports" / "transfer.md").read_text()


def test_adding_every_other_method_runs_only_their_stages(every_method_run):
    """The six other methods join the tiny run, and only their adapt@ stages and the report run: read from the
    shared every-method run (tests/conftest.py), whose one `dvc repro` is that change, and which test_graph*.py
    start from."""
    repo = every_method_run.repo
    new = ["spot", "mpt_full", "attempt", "prefix", "ptuning", "cpt"]
    methods = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))["adapt"]["methods"]
    assert sorted(methods) == sorted(["mpt", "pt", *new])  # the change: these six added to the tiny run's two
    expected = {"report"} | {f"adapt@tgt_a-{m}-0" for m in new}
    assert ran_stages(every_method_run.repro_output) == expected
    rows = (repo / "reports" / "transfer.csv").read_text().splitlines()[1:]
    assert {r.split(",")[1] for r in rows} == {"mpt", "pt", *new}
    spot = json.loads((repo / "results/adapt/tgt_a-spot/seed0/kall/metrics.json").read_text())
    assert spot["spot_source"] in {"src_a", "src_b"}
    report = (repo / "reports" / "transfer.md").read_text()
    assert "## spot: what each run reports besides its scores" in report  # its extras, shown generically
    assert f"| tgt_a | all | 0 | {spot['spot_source']} |" in report
