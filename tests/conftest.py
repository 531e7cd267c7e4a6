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
    """The end-to-end tests' tiny DVC repo after one full `dvc repro`, committed to git (``tiny_run``; or that
    repo with more stages, run too: ``every_method_run``).

    Built once per test run (ten stage processes, the suite's most expensive setup) and shared: tests that only
    read it use ``repo``; a test that runs `dvc` commands which change it works on its own ``copy``.
    """

    repo: Path
    repro_output: str  # stdout of the `dvc repro` that built it

    def copy(self, root: Path) -> Path:
        """``root/repo``: a private copy with its git history and DVC cache; the task csvs and the tiny backbone it
        reads stay where the shared repo's params.yaml points. Not .dvc/tmp: the shared repo's lock and state files
        belong to whatever dvc command may be running in it on another worker (the copy rebuilds its own)."""
        target = Path(root) / "repo"
        dvc_dir = self.repo / ".dvc"
        shutil.copytree(
            self.repo, target, symlinks=True, ignore=lambda folder, names: ["tmp"] if Path(folder) == dvc_dir else []
        )
        return target


def built_once(tmp_path_factory, worker_id: str, name: str, build) -> tuple[Path, str]:
    """``build(folder) -> str`` run once for the whole test run, in ``folder`` = ``<shared temp>/<name>``; returns
    the folder and the string ``build`` returned. Under pytest-xdist the first worker to need it builds it in the
    workers' shared temporary folder while the others wait on a file lock, then every worker reads the same one."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the folder all workers' temporary folders share
    folder, output_file = root / name, root / f"{name}.output"
    with FileLock(str(root / f"{name}.lock")):
        if not output_file.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a build cut short by a crashed worker
            folder.mkdir()
            output_file.write_text(build(folder), encoding="utf-8")
    return folder, output_file.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id) -> TinyRun:
    """Built once for the whole suite (see :func:`built_once`)."""

    def build(folder: Path) -> str:
        from test_end_to_end import dvc, git, tiny_e2e_repo  # the e2e module owns the tiny setup

        repo = tiny_e2e_repo(folder)
        output = dvc(repo, "repro").stdout
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "baseline run")
        return output

    folder, output = built_once(tmp_path_factory, worker_id, "tiny-run", build)
    return TinyRun(folder / "repo", output)  # tiny_e2e_repo's root/repo


@pytest.fixture(scope="session")
def every_method_run(tiny_run, tmp_path_factory, worker_id) -> TinyRun:
    """The tiny run with all eight target methods in params (adapt.methods), run and committed: its `dvc repro`
    runs the six new methods' adapt@ stages. Built once (see :func:`built_once`) for the test in
    test_end_to_end.py that checks that repro and for test_graph*.py, whose rule checks all start from it."""

    def build(folder: Path) -> str:
        from pipeline.config.schema import METHODS
        from test_end_to_end import dvc, git
        from test_graph import edit_params

        repo = tiny_run.copy(folder)
        edit_params(repo, lambda params: params["adapt"].update(methods=list(METHODS)))
        output = dvc(repo, "repro").stdout
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "every method")
        return output

    folder, output = built_once(tmp_path_factory, worker_id, "every-method", build)
    return TinyRun(folder / "repo", output)


# The files whose tests run `dvc` end to end, longest first, then the slowest unit-test files: xdist hands out whole
# files (--dist loadfile) in collection order (with --no-loadscope-reorder, as the Makefile runs it), so starting
# with these keeps one long file from running alone at the end. test_graph.py builds the shared tiny run and the
# every-method run on the first worker; test_user_guide.py, which needs neither, keeps the second busy meanwhile
# (a file that needed them would wait on their lock), and test_graph_upstream.py, the other half of the graph
# checks, follows on whichever worker is free first.
LONG_FILES = ("test_graph.py", "test_user_guide.py", "test_graph_upstream.py", "test_end_to_end.py",
              "test_fanout.py", "test_chaos.py", "test_full_disk.py", "test_stop_signals.py", "test_benchmarks.py",
              "test_numerics.py", "test_distributed.py", "test_remote.py", "test_concurrent_runs.py",
              "test_dvc_yaml.py", "test_methods.py", "test_report.py", "test_checkpoint.py", "test_train.py",
              "test_data.py", "test_bad_labels.py")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(LONG_FILES)))  # stable: files keep order

