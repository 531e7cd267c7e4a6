import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# One thread: two busy-waiting threads on a shared core run ~10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

torch.set_num_threads(1)


@dataclass(frozen=True)
class TinyRun:
    """The end-to-end tests' tiny DVC repo after one full `dvc repro`, committed to git.

    Built once per session (ten stage processes, the suite's most expensive setup) and shared: tests that only
    read it use ``repo``; a test that runs `dvc` commands which change it works on its own ``copy``.
    """

    repo: Path
    repro_output: str  # stdout of that one `dvc repro`

    def copy(self, root: Path) -> Path:
        """``root/repo``: a private copy with its git history and DVC cache; the task csvs and the tiny backbone it
        reads stay where the shared repo's params.yaml points."""
        target = Path(root) / "repo"
        shutil.copytree(self.repo, target, symlinks=True)
        return target


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    from test_end_to_end import dvc, git, tiny_e2e_repo  # the e2e module owns the tiny setup

    repo = tiny_e2e_repo(tmp_path_factory.mktemp("tiny-run"))
    output = dvc(repo, "repro").stdout
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baseline run")
    return TinyRun(repo, output)

