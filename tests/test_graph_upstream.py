"""Each adapt@ run reruns for what it reads and nothing else (issue 13, part 1), checked with real `dvc repro`s: the
changes upstream of the adapt@ runs (distill, the source prompts, a new source task). The rules on the runs' own
inputs, the helpers and the method groups are in tests/test_graph.py, which says how the checks work (a real repro up
to the adapt@ runs, then `dvc status`); the distill change here then runs the full `dvc repro` too, to check that it
runs just the adapt@ runs `dvc status` named. This half is a file of its own so that xdist (--dist loadfile) runs it
beside that one, on the other worker.
"""

from __future__ import annotations

from test_end_to_end import BINARY, task_spec, write_task_csv
from test_graph import DISTILLED, FROM_SOURCES, adapt, edit_params, repro, rerun_by_a_change
from test_graph import repo  # noqa: F401  (the fixture: a private copy of the every-method run per test)


def test_a_distill_change_reruns_the_runs_that_read_p_and_no_other(repo):
    """mpt and mpt_full read P and the factors; pt, prefix, ptuning, cpt, spot and attempt do not."""
    edit_params(repo, lambda params: params["distill"].update({"lambda": 0.3}))
    assert rerun_by_a_change(repo) == {"distill", "method_inputs"} | adapt(*DISTILLED)
    assert repro(repo) == {"report"} | adapt(*DISTILLED)  # what `dvc status` named, and the report after them


def test_new_source_prompts_rerun_the_transfer_runs_and_no_standalone_run(repo):
    """New teachers: distill and every method that reads P or the source prompts; never pt, prefix, ptuning, cpt."""
    # select last: the trained prompt (best_dev may keep the untrained one, which the lr does not change)
    edit_params(repo, lambda params: params["source"].update(lr=0.05, select="last"))
    sources = {"source@src_a", "source@src_b", "distill", "method_inputs"}
    assert rerun_by_a_change(repo) == sources | adapt(*DISTILLED, *FROM_SOURCES)


def test_adding_a_source_task_runs_its_stages_distill_and_the_transfer_runs_only(repo):
    csv = repo.parent / "src_c.csv"
    write_task_csv(csv, list(BINARY), rows=48, seed=5)

    def add_source(params: dict) -> None:
        params["tasks"]["src_c"] = task_spec(csv, BINARY)
        params["source_tasks"].append("src_c")

    edit_params(repo, add_source)
    new = {"data@src_c", "source@src_c", "distill", "method_inputs"}
    assert rerun_by_a_change(repo) == new | adapt(*DISTILLED, *FROM_SOURCES)
