"""A DVC local-folder remote on the tiny e2e setup: push, a fresh `git clone`, pull, and nothing reruns."""

from __future__ import annotations

import subprocess

from benchmarks.scratch_repo import dvc, git, ran_stages

UP_TO_DATE = "Data and pipelines are up to date."
OUTPUTS = ("models/backbone/backbone.json", "results/distill/shared.safetensors", "reports/transfer.csv")


def test_push_then_pull_into_a_fresh_clone_reruns_nothing(tiny_run, tmp_path):
    repo = tiny_run.copy(tmp_path / "origin")  # the shared tiny run, already reproduced and committed
    remote = tmp_path / "remote"
    dvc(repo, "remote", "add", "-d", "local", str(remote))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny run with a local remote")
    dvc(repo, "push")
    assert any(remote.rglob("*")), "dvc push wrote nothing to the remote"
    assert "Cache and remote 'local' are in sync" in dvc(repo, "status", "--cloud").stdout

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, capture_output=True)
    assert not (clone / OUTPUTS[1]).exists()  # outputs live in DVC, not in git
    dvc(clone, "pull")
    for path in OUTPUTS:
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path
    assert dvc(clone, "status").stdout.strip().endswith(UP_TO_DATE)
    assert ran_stages(dvc(clone, "repro").stdout) == set()
