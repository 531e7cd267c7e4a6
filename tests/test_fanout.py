"""Fan-out with DVC's own machinery (issue 13, part 2), end to end on the shared tiny run.

Every clone starts from ``origin``: the tiny run at seeds [0, 1, 2] with one method (pt) and a local-folder DVC
remote, committed; seed 0 ran in the tiny run itself. Two plain clones run their part with `dvc repro` and push
their outputs and run-cache (clone A seeds 0-1, clone B seed 2): the multi-machine recipe of the README. A third
clone, fresh from git, runs `dvc repro --pull`, which pulls what it restores and trains nothing. The fan-out
command runs seeds 1 and 2 on two workers in one more copy; its runs must have the bytes of the plain clones' runs,
and its collecting `dvc repro` must restore them and run the report alone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import TinyRun
from pipeline.__main__ import main
from pipeline.cli.fanout import Part, fanout, plan_parts, set_threads, worker_threads
from pipeline.errors import PipelineError
from test_end_to_end import dvc, git, lock_hashes, ran_stages
from test_graph import edit_params

RUN = "adapt@tgt_a-pt-{}"


def adapt_outputs(repo: Path, *seeds: int) -> dict[str, str]:
    """md5 of each adapt@ output of these seeds in dvc.lock (the wall-time file aside, which never repeats)."""
    return {path: md5 for path, md5 in lock_hashes(repo).items()
            if any(f"tgt_a-pt/seed{seed}" in path for seed in seeds) and not path.endswith("timing.json")}


@pytest.fixture(scope="module")
def origin(tiny_run, tmp_path_factory) -> Path:
    repo = tiny_run.copy(tmp_path_factory.mktemp("origin"))

    def three_seeds(params: dict) -> None:
        params["seeds"], params["adapt"]["methods"] = [0, 1, 2], ["pt"]

    edit_params(repo, three_seeds)
    dvc(repo, "remote", "add", "-d", "shared", str(repo.parent / "remote"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "three seeds, a shared remote")
    return repo


@pytest.fixture(scope="module")
def machines(origin, tmp_path_factory) -> dict[str, Path]:
    """Clones A and B of ``origin`` (its DVC cache with them, as machines that ran the shared stages), each having
    run its seeds with a plain `dvc repro` and pushed outputs and run-cache to the shared remote."""
    clones = {}
    for name, seeds, ran in (("a", "[01]", {RUN.format(1)}), ("b", "2", {RUN.format(2)})):
        clone = TinyRun(origin, "").copy(tmp_path_factory.mktemp(f"machine-{name}"))
        assert ran_stages(dvc(clone, "repro", "--glob", f"adapt@*-{seeds}").stdout) == ran  # seed 0 ran in origin
        dvc(clone, "push", "--run-cache")
        clones[name] = clone
    return clones


def test_a_clone_that_pulls_the_run_cache_trains_nothing(origin, machines, tmp_path):
    clone = tmp_path / "c"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    output = dvc(clone, "repro", "--pull").stdout  # the run-cache and, for each run it restores, its outputs
    assert ran_stages(output) == {"report"}, output
    assert all(f"Stage '{RUN.format(seed)}' is cached" in output for seed in (1, 2)), output
    assert adapt_outputs(clone, 1) == adapt_outputs(machines["a"], 1)
    assert adapt_outputs(clone, 2) == adapt_outputs(machines["b"], 2)
    assert {row.split(",")[3] for row in (clone / "reports" / "transfer.csv").read_text().splitlines()[1:]} == {
        "0", "1", "2"
    }


def test_fanout_runs_the_seeds_on_two_workers_and_the_collecting_repro_trains_nothing(
    origin, machines, tmp_path, monkeypatch, capsys
):
    repo = TinyRun(origin, "").copy(tmp_path)
    edit_params(repo, lambda params: params.update(seeds=[1, 2]))  # two parts for two workers; seed 0 is done
    monkeypatch.chdir(repo)
    # --threads 1: the tiny run's numerics.threads, whatever this machine's cores // 2 is
    assert main(["fanout", "--jobs", "2", "--by", "seed", "--threads", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("fanout:")]
    assert lines[-1] == "fanout: collected: 2 stages restored from the run-cache, ran report", lines
    assert any("fanout-seed-1, fanout-seed-2" in line for line in lines), lines
    assert not any("numerics.threads" in line for line in lines), lines  # the params point stays the tiny run's
    assert adapt_outputs(repo, 1) == adapt_outputs(machines["a"], 1)  # the bytes of a plain `dvc repro`
    assert adapt_outputs(repo, 2) == adapt_outputs(machines["b"], 2)
    assert dvc(repo, "status").stdout.strip().endswith("Data and pipelines are up to date.")
    assert not [name for name in dvc(repo, "exp", "list", "--name-only").stdout.split() if name.startswith("fanout")]


def test_parts_threads_and_params_edit(tmp_path):
    params = {"seeds": [0, 3], "target_tasks": ["sms_spam"]}
    assert [p.name for p in plan_parts(params, "seed")] == ["fanout-seed-0", "fanout-seed-3"]
    assert plan_parts(params, "target") == [Part("target", "sms_spam")]
    assert Part("target", "sms_spam").override() == "target_tasks=[sms_spam]"
    assert Part("seed", 3).override() == "seeds=[3]"
    with pytest.raises(PipelineError, match="params.yaml: seeds is empty"):
        plan_parts({"seeds": []}, "seed")
    assert worker_threads(jobs=2, cores=2) == 1 and worker_threads(jobs=3, cores=16) == 5
    assert worker_threads(jobs=4, cores=2) == 1 and worker_threads(jobs=2, cores=2, asked=2) == 2
    with pytest.raises(PipelineError, match="--jobs must be at least 1"):
        worker_threads(jobs=0, cores=2)
    path = tmp_path / "params.yaml"
    path.write_text("# how stages compute\nnumerics:\n  threads: 2  # CPU threads\n  cpu_math: native\n")
    assert set_threads(tmp_path, 2) is None and set_threads(tmp_path, 1) == 2
    assert path.read_text() == "# how stages compute\nnumerics:\n  threads: 1  # CPU threads\n  cpu_math: native\n"
    assert yaml.safe_load(path.read_text())["numerics"]["threads"] == 1


def test_a_folder_without_a_commit_is_refused_before_anything_changes(tmp_path):
    (tmp_path / "params.yaml").write_text("seeds: [0]\nnumerics:\n  threads: 2\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(PipelineError, match="no git commit to start the experiments from"):
        fanout(tmp_path, jobs=2, by="seed")
    assert (tmp_path / "params.yaml").read_text() == "seeds: [0]\nnumerics:\n  threads: 2\n"
