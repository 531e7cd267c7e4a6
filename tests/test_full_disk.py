"""A write that finds no room (a full disk, a file-size limit) in any stage: one line naming the file, exit status 1,
the previous outputs intact, and the next run completes with the same bytes.

The room runs out for real: each stage (and `python -m pipeline export`) runs under a file-size limit
(RLIMIT_FSIZE, what `ulimit -f` sets; Python ignores SIGXFSZ, so the write fails with EFBIG). How the error is
recognised in each shape it comes in (OSError, safetensors' error text) is tested on its own below.
"""

import errno
import hashlib
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.store.atomic import atomic_dir, write_bytes
from pipeline.store.room import OutOfRoom, room_reason

# Checkpoints aside: a stage that fails writing its outputs keeps the checkpoint it wrote before them.
OUTPUT_ROOTS = ("models", "data/prepared", "results", "reports", "dvclive", "exported")
TIMED = ("timing.json", "transfer.csv", "transfer.md")  # wall time per run, and the report's time column
WRITTEN_ROOTS = {"models", "data", "results", "reports", "dvclive", "exported", ".checkpoints"}
# Smaller than the first file each command writes (an export's files are small), larger than nothing it must write.
LIMIT_BYTES = {"export": 256}
DEFAULT_LIMIT_BYTES = 1024
EXPORT = [sys.executable, "-m", "pipeline", "export", "results/adapt/tgt_a-mpt/seed0/kall", "exported"]
COMMANDS = {
    "backbone": [sys.executable, "-m", "stages.backbone"],
    "data": [sys.executable, "-m", "stages.prepare", "src_a"],
    "source": [sys.executable, "-m", "stages.source", "src_a"],
    "distill": [sys.executable, "-m", "stages.distill"],
    "adapt": [sys.executable, "-m", "stages.adapt", "tgt_a", "mpt", "0"],
    "report": [sys.executable, "-m", "stages.report"],
    "export": EXPORT,
}
ERROR_LINE = re.compile(r"^error: (?:([\w@]+): )?(\S+): not written: file too large for the file-size limit", re.M)


@pytest.mark.parametrize(
    "exc, expected",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
        (OSError(errno.EFBIG, "File too large"), "file too large"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "quota"),
        (RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"), "the disk is full"),
        (OSError(errno.EACCES, "Permission denied"), None),
        (RuntimeError("os error 28 mentioned without the form"), None),
    ],
)
def test_room_reason_recognises_each_shape(exc, expected):
    reason = room_reason(exc)
    assert (reason is None) if expected is None else (expected in reason)


def test_room_reason_follows_the_chain():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise ValueError("writing failed") from inner
    except ValueError as outer:
        assert room_reason(outer) == room_reason(OSError(errno.ENOSPC, "x"))


def test_atomic_dir_names_the_file_inside_the_folder_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(OutOfRoom) as caught:
        with atomic_dir(target) as tmp:
            write_bytes(tmp / "k16" / "params.safetensors", b"x")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "k16" / "metrics.json"))
    assert caught.value.path == target / "k16" / "metrics.json"
    assert str(caught.value).startswith(f"{target / 'k16' / 'metrics.json'}: not written: the disk is full")
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and (target / "old.txt").read_text() == "old"


def snapshot(repo: Path, timed: bool = True) -> dict[str, str]:
    """sha256 of every output file; ``timed=False``: the files that hold wall times aside (a rerun never repeats them)."""
    files = [p for root in OUTPUT_ROOTS if (repo / root).exists() for p in (repo / root).rglob("*") if p.is_file()]
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files if timed or not p.name.endswith(TIMED)
    }


def run_limited(repo: Path, command: list[str], limit: int | None) -> subprocess.CompletedProcess:
    def set_limit() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(command, cwd=repo, capture_output=True, text=True, preexec_fn=set_limit, timeout=600)


@pytest.fixture(scope="module")
def repo(tiny_run, tmp_path_factory) -> Path:
    """A private copy of the tiny run, with one earlier export (so export too has a previous output to keep)."""
    copy = tiny_run.copy(tmp_path_factory.mktemp("full-disk"))
    assert run_limited(copy, EXPORT, None).returncode == 0
    return copy


@pytest.mark.parametrize("stage", list(COMMANDS))
def test_a_write_without_room_is_one_line_and_the_next_run_completes(repo, stage):
    before = snapshot(repo)
    limited = run_limited(repo, COMMANDS[stage], LIMIT_BYTES.get(stage, DEFAULT_LIMIT_BYTES))
    assert limited.returncode == 1, limited.stderr[-2000:]
    assert "Traceback" not in limited.stderr, limited.stderr[-2000:]
    lines = ERROR_LINE.findall(limited.stderr)
    assert len(lines) == 1, limited.stderr[-2000:]
    named_stage, named_file = lines[0]
    assert named_stage.split("@")[0] == ("" if stage == "export" else stage)
    # The file is named where it belongs, never by its temporary sibling.
    assert ".tmp" not in named_file and named_file.split("/")[0] in WRITTEN_ROOTS
    assert snapshot(repo) == before  # the previous outputs (and checkpoints) as they were
    assert not [p for p in repo.rglob(".*.tmp") if ".dvc" not in p.parts]  # no temporary left behind
    rerun = run_limited(repo, COMMANDS[stage], None)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert snapshot(repo, timed=False) == {k: v for k, v in before.items() if not k.endswith(TIMED)}  # same bytes
