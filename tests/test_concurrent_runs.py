"""Two runs at once in one pipeline folder: a second `dvc repro` is refused with DVC's one clear message, and
`predict` / `export` never load an artifact while a stage replaces it (store/locks.py).

The other process is one this test starts and controls through a pipe: it says when it holds the lock and lets it
go when told, so nothing here depends on timing.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.store import locks
from pipeline.store.atomic import write_bytes
from pipeline.store.locks import LOCK_FILE, artifacts_locked

ROOT = Path(__file__).resolve().parents[1]
RUN = "results/adapt/tgt_a-mpt/seed0/kall"
HOLDER = """
import sys
from pathlib import Path
from pipeline.store.locks import artifacts_locked

with artifacts_locked(Path(sys.argv[1]), exclusive=sys.argv[2] == "exclusive"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes the pipe
"""


class Holder:
    """A process holding the artifacts lock of ``folder`` (``exclusive`` or shared) until :meth:`release`."""

    def __init__(self, folder: Path, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder), mode], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=60) == 0


@pytest.fixture
def pipeline_folder(tmp_path) -> Path:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


@pytest.fixture(scope="module")
def repo(tiny_run, tmp_path_factory) -> Path:
    return tiny_run.copy(tmp_path_factory.mktemp("concurrent"))


def test_a_second_dvc_repro_is_refused_with_a_clear_message_and_changes_nothing(repo):
    from dvc.repo import Repo

    lock_file = (repo / "dvc.lock").read_bytes()
    with Repo(str(repo)).lock:  # what a running `dvc repro` holds
        second = subprocess.run(
            [sys.executable, "-m", "dvc", "repro", "--force", "--single-item", "report"], cwd=repo,
            capture_output=True, text=True, timeout=300,
        )
    assert second.returncode != 0
    assert "Unable to acquire lock. Most likely another DVC process is running" in second.stderr
    assert (repo / "dvc.lock").read_bytes() == lock_file


def test_a_reader_refuses_after_waiting_while_a_stage_replaces_artifacts(pipeline_folder, capsys):
    holder = Holder(pipeline_folder, "exclusive")
    try:
        with pytest.raises(PipelineError, match=r"artifacts\.lock: another process is replacing artifacts"):
            with artifacts_locked(pipeline_folder / "results", exclusive=False, wait_s=0):
                pass
    finally:
        holder.release()
    with artifacts_locked(pipeline_folder / "results", exclusive=False, wait_s=0):  # free again
        pass


def test_a_stage_write_waits_for_readers_and_never_replaces_under_them(pipeline_folder, monkeypatch):
    target = pipeline_folder / "results" / "metrics.json"
    write_bytes(target, b"old")
    holder = Holder(pipeline_folder, "shared")
    monkeypatch.setattr(locks, "WAIT_SECONDS", 0)
    try:
        with pytest.raises(PipelineError, match=r"another process is reading artifacts"):
            write_bytes(target, b"new")
        assert target.read_bytes() == b"old"
        assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # its temporary removed
    finally:
        holder.release()
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"


def test_readers_share_the_lock(pipeline_folder):
    holder = Holder(pipeline_folder, "shared")
    try:
        with artifacts_locked(pipeline_folder, exclusive=False, wait_s=0):
            pass
    finally:
        holder.release()


def test_the_lock_is_reentrant_within_a_process_but_never_upgraded(pipeline_folder):
    with artifacts_locked(pipeline_folder, exclusive=True):
        with artifacts_locked(pipeline_folder / "results", exclusive=True), artifacts_locked(
            pipeline_folder, exclusive=False
        ):
            pass
    with artifacts_locked(pipeline_folder, exclusive=False):
        with pytest.raises(RuntimeError, match="held shared by this process"):
            with artifacts_locked(pipeline_folder, exclusive=True):
                pass


def test_paths_outside_a_pipeline_folder_are_not_locked(tmp_path):
    with artifacts_locked(tmp_path / "elsewhere", exclusive=True):
        pass
    assert not (tmp_path / LOCK_FILE).exists()


def test_predict_beside_a_running_stage_waits_for_the_replaced_artifact(repo):
    """`predict` started while a stage swaps outputs in: it says that it waits, then labels from the whole new run."""
    holder = Holder(repo, "exclusive")
    predict = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "predict", RUN, "--text", "good movie"], cwd=repo,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        waiting = next(line for line in predict.stderr if line.startswith(("waiting:", "error:", "Traceback")))
        assert waiting.startswith(f"waiting: {repo / LOCK_FILE}: another process is replacing artifacts")
    finally:
        holder.release()
    out, err = predict.communicate(timeout=300)
    assert predict.returncode == 0, err[-2000:]
    assert out.strip().endswith("good movie")
