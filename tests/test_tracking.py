"""dvclive logging of a finished run: layout, exact repeats, no network, no repository needed or touched."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pipeline.store.tracking import STUDIO_OFFLINE, live_dir, log_run, read_sections

PARAMS = {"seed": 0, "model": {"prompt_length": 4}, "adapt": {"steps": 2, "lr": 0.02, "methods": ["pt"]}}
METRICS = {"target": "toy", "test": {"accuracy": 0.5, "macro_f1": 1 / 3}, "trainable_params": 36, "final": None}
HISTORY = [{"loss": 0.9, "task": 0.8, "step": 0}, {"loss": 0.7123456789, "task": 0.6, "step": 1}]


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_folder_name_per_stage_instance():
    assert live_dir("adapt@sms_spam-mpt") == Path("dvclive/adapt_sms_spam-mpt")
    assert live_dir("distill", Path("x")) == Path("x/distill")


def test_read_sections_keeps_dotted_keys_only_and_skips_absent_optional_ones():
    picked = read_sections(PARAMS, ("seed", "model", "adapt.steps", "adapt.lr", "source_teachers"))
    assert picked == {"seed": 0, "model": {"prompt_length": 4}, "adapt": {"steps": 2, "lr": 0.02}}


def test_params_metrics_and_curves_in_dvclive_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no git, no DVC here
    folder = log_run("adapt@toy-mpt", read_sections(PARAMS, ("seed", "adapt.steps")), METRICS, HISTORY)
    assert folder == (tmp_path / "dvclive" / "adapt_toy-mpt").resolve()
    written = files(folder)
    curves = {"plots/metrics/train/loss.tsv", "plots/metrics/train/task.tsv"}
    assert set(written) == {"params.yaml", "metrics.json", *curves}
    assert written["params.yaml"].decode() == "seed: 0\nadapt:\n  steps: 2\n"
    assert written["plots/metrics/train/loss.tsv"].decode().splitlines() == ["step\tloss", "0\t0.9", "1\t0.712346"]
    summary = json.loads(written["metrics.json"])
    assert summary["test"] == {"accuracy": 0.5, "macro_f1": 0.333333}
    assert summary["trainable_params"] == 36 and summary["step"] == 1 and summary["train"]["loss"] == 0.712346
    assert "target" not in summary and "final" not in summary  # only numbers are metrics
    assert Path.cwd() == tmp_path and STUDIO_OFFLINE not in os.environ  # both put back


def test_repeats_byte_for_byte_and_replaces_the_folder_whole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = files(log_run("source@toy", PARAMS, METRICS, HISTORY))
    stale = tmp_path / "dvclive" / "source_toy" / "plots" / "metrics" / "train" / "old.tsv"
    stale.write_text("step\told\n")
    assert files(log_run("source@toy", PARAMS, METRICS, HISTORY)) == first  # no timestamps; the stale file is gone



def test_the_ignore_files_dvc_wrote_in_the_folder_are_kept(tmp_path, monkeypatch):
    """DVC lists the cached logs in .gitignore files inside the folder; a rerun by hand keeps them."""
    monkeypatch.chdir(tmp_path)
    folder = log_run("source@toy", PARAMS, METRICS, HISTORY)
    (folder / ".gitignore").write_text("/params.yaml\n/metrics.json\n")
    (folder / "plots" / ".gitignore").write_text("/metrics\n")
    after = files(log_run("source@toy", PARAMS, METRICS, HISTORY))
    assert after[".gitignore"] == b"/params.yaml\n/metrics.json\n" and after["plots/.gitignore"] == b"/metrics\n"

def test_an_imported_teacher_gets_a_header_only_curve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    written = files(log_run("source@toy", PARAMS, {"test": {"accuracy": 1.0}}, []))
    assert written["plots/metrics/train/loss.tsv"] == b"step\tloss\n"  # dvc.yaml declares the folder: it must exist


def test_never_posts_to_studio_even_with_a_token(tmp_path, monkeypatch):
    import dvc_studio_client.post_live_metrics as studio

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STUDIO_TOKEN", "isat_not_a_real_token")
    monkeypatch.setenv("DVC_STUDIO_REPO_URL", "https://example.invalid/repo.git")
    monkeypatch.setenv(STUDIO_OFFLINE, "false")

    def refuse(*args, **kwargs):
        raise AssertionError("dvclive tried to reach Studio")

    monkeypatch.setattr(studio, "post_live_metrics", refuse)
    monkeypatch.setattr("dvclive.studio.post_live_metrics", refuse)
    log_run("distill", PARAMS, METRICS, HISTORY)
    assert os.environ[STUDIO_OFFLINE] == "false"  # the user's setting is put back


@pytest.mark.parametrize("commit", [False, True])
def test_inside_a_git_repository_with_or_without_commits(tmp_path, monkeypatch, commit):
    """dvclive 3.49 alone fails in a repository without commits; the repository is never touched."""
    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    if commit:
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    log_run("distill", PARAMS, METRICS, HISTORY)
    assert not (tmp_path / ".dvc").exists()  # dvclive would `dvc init` a git repository it opened
    status = subprocess.run(["git", "status", "--porcelain"], check=True, capture_output=True, text=True).stdout
    assert status.splitlines() == ["?? dvclive/"]  # nothing staged


def test_logged_files_do_not_depend_on_the_order_of_a_records_keys(tmp_path):
    """A history restored from a checkpoint has its keys sorted; a fresh one has them in loss-dict order."""
    from pipeline.store.tracking import live_dir, log_run

    fresh = [{"task": 0.5, "kl": 0.1, "loss": 0.7, "step": 0}, {"task": 0.4, "kl": 0.1, "loss": 0.6, "step": 1}]
    restored = [dict(sorted(record.items())) for record in fresh]
    log_run("order@a", {"model": {"l": 4}}, {"test": {"accuracy": 0.5}}, fresh, root=tmp_path)
    log_run("order@b", {"model": {"l": 4}}, {"test": {"accuracy": 0.5}}, restored, root=tmp_path)
    files_a = {p.relative_to(live_dir("order@a", tmp_path)): p.read_bytes()
               for p in live_dir("order@a", tmp_path).rglob("*") if p.is_file()}
    files_b = {p.relative_to(live_dir("order@b", tmp_path)): p.read_bytes()
               for p in live_dir("order@b", tmp_path).rglob("*") if p.is_file()}
    assert files_a == files_b and files_a


def test_dev_curves_are_logged_at_their_own_steps_and_repeat_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    curves = {"dev/k16/accuracy": [[0, 0.5], [10, 0.6251234], [20, 0.7]]}
    first = files(log_run("adapt@toy-pt-0", PARAMS, METRICS, HISTORY, curves=curves))
    assert first["plots/metrics/dev/k16/accuracy.tsv"] == b"step\taccuracy\n0\t0.5\n10\t0.625123\n20\t0.7\n"
    assert files(log_run("adapt@toy-pt-0", PARAMS, METRICS, HISTORY, curves=curves)) == first
