"""Each training stage of a fan-out takes a GPU no other running stage holds (pipeline/store/gpu_slots.py)."""

import os
import subprocess
import sys
from pathlib import Path

from pipeline.store import gpu_slots
from pipeline.store.gpu_slots import GPUS_VAR, LOCKS_VAR, claim_gpu


def test_stages_running_at_once_get_different_gpus_and_a_finished_one_frees_its_own(tmp_path):
    env = {GPUS_VAR: "0,1", LOCKS_VAR: str(tmp_path)}
    # Another process holds GPU 0 while this one claims: it gets GPU 1. Once that process ends, GPU 0 is free.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.store.gpu_slots import claim_gpu; "
         "print(claim_gpu(), flush=True); sys.stdin.read()"],
        env={**os.environ, **env}, cwd=Path(__file__).resolve().parents[1], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "0"
        mine = dict(env)
        assert claim_gpu(mine) == "1" and mine["CUDA_VISIBLE_DEVICES"] == "1"
    finally:
        holder.communicate("")
    again = dict(env)
    assert claim_gpu(again) == "0"
    while gpu_slots._held:  # this test's locks, not the process's for good
        os.close(gpu_slots._held.pop())


def test_nothing_is_pinned_outside_a_fanout_or_under_a_launcher(tmp_path):
    plain: dict[str, str] = {}
    assert claim_gpu(plain) is None and "CUDA_VISIBLE_DEVICES" not in plain
    launched = {GPUS_VAR: "0,1", LOCKS_VAR: str(tmp_path), "RANK": "1"}
    assert claim_gpu(launched) is None and "CUDA_VISIBLE_DEVICES" not in launched
