"""SIGTERM and Ctrl-C (SIGINT) during training: one line, exit status 143 / 130, the checkpoint kept, the previous
outputs and no temporaries left; the rerun resumes and ends with the bytes of an uninterrupted run.

The signal goes to a stage process this test starts (default signal handlers), once the stage has written its
first checkpoint: an event, not a delay. scripts/chaos.py sends the same signals at random points
(tests/test_chaos.py).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.store.interrupts import Stopped, held_off, raise_on_stop_signals

STAGE = "distill"
STEPS = 400  # long enough that the stage is still training when its first checkpoint appears
CHECKPOINT_EVERY = 5


@pytest.fixture
def own_handlers():
    """raise_on_stop_signals() changes this process's handlers: put pytest's back afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    # As in a terminal, whatever started pytest: a runner started with `... &` from a script ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_stop_signal_raises_stopped_with_the_shell_exit_status(own_handlers):
    raise_on_stop_signals()
    with pytest.raises(Stopped) as caught:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes, right after the signal
            pass
    assert (caught.value.signal_name, caught.value.exit_status) == ("SIGTERM", 143)
    assert isinstance(caught.value, KeyboardInterrupt)  # code that handles Ctrl-C handles SIGTERM too


def test_held_off_finishes_the_block_then_stops(own_handlers):
    raise_on_stop_signals()
    finished = False
    with pytest.raises(Stopped) as caught:
        with held_off():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            finished = True
    assert finished and caught.value.exit_status == 130


def test_an_ignored_sigint_stays_ignored(own_handlers):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under `nohup … &` from a non-interactive shell
    raise_on_stop_signals()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def output_digests(repo: Path) -> dict[str, str]:
    folder = repo / "results" / STAGE
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.name != "timing.json"}


def start_stage(repo: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", f"stages.{STAGE}"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_stop_handlers,  # an ignored SIGINT is inherited: give the stage a terminal's handlers
    )


def _default_stop_handlers() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


@pytest.fixture(scope="module")
def long_run(tiny_run, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of the tiny run whose distill trains long, and the digests of its uninterrupted outputs."""
    repo = tiny_run.copy(tmp_path_factory.mktemp("stop-signals"))
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params[STAGE]["steps"], params["checkpoint_every"] = STEPS, CHECKPOINT_EVERY
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    stage = start_stage(repo)
    _, err = stage.communicate(timeout=900)
    assert stage.returncode == 0, err[-2000:]
    return repo, output_digests(repo)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_stage_keeps_its_checkpoint_and_resumes_to_the_same_bytes(long_run, signum, status):
    repo, uninterrupted = long_run
    state = repo / ".checkpoints" / STAGE / "state.json"
    stage = start_stage(repo)
    while not state.is_file() and stage.poll() is None:  # the first checkpoint is written: training is under way
        time.sleep(0.02)
    stage.send_signal(signum)
    _, err = stage.communicate(timeout=300)
    assert stage.returncode == status, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(f"stopped: {STAGE}: {signal.Signals(signum).name}; outputs left")
    assert "Traceback" not in err
    steps_done = json.loads(state.read_text(encoding="utf-8"))["steps_done"]
    assert CHECKPOINT_EVERY <= steps_done < STEPS  # kept, and mid-way
    assert output_digests(repo) == uninterrupted  # the previous outputs, whole
    assert not [p for p in repo.rglob(".*.tmp") if ".dvc" not in p.parts]  # no temporary left behind
    rerun = start_stage(repo)
    _, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err[-2000:]
    assert output_digests(repo) == uninterrupted
    assert not state.exists()  # cleared once the outputs are written
