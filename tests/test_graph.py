"""Each adapt@ run reruns for what it reads and nothing else (issue 13, part 1), checked with real `dvc repro`s.

`dvc status` and `dvc repro --dry` list only the stages whose own deps changed, not those that rerun after them, so
every test here edits params.yaml (or forces a stage) in its own copy of one repo, runs a real `dvc repro` of
everything upstream of the adapt@ runs (``method_inputs`` and what it reads), and then asks `dvc status` which adapt@
runs are out of date: with their upstream rerun, those are the ones whose own deps changed, i.e. the ones a full
`dvc repro` would run (tests/test_graph_upstream.py runs that full repro once and checks that it agrees). Training
the adapt@ runs themselves would add nothing to the rule and cost ~7 s each. The deps DVC records are read from
dvc.lock.

The repo is the shared tiny run with all eight target methods added, run once for the suite (``every_method_run``,
tests/conftest.py): one target, one seed. Here the adapt@ runs' own inputs (the deps they record, a method's knob, a
shared key, a rerun that repeats its outputs); the changes upstream of them (distill, the sources) are in
tests/test_graph_upstream.py, a file of its own so that the two halves run on both test workers at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.config.method_inputs import KNOBS, SHARED_KEYS
from pipeline.config.schema import METHODS
from pipeline.store.atomic import sha256_file
from pipeline.store.tracking import read_sections
from test_end_to_end import dvc, ran_stages

STANDALONE = ("pt", "prefix", "ptuning", "cpt")  # read no other stage's training output
DISTILLED = ("mpt", "mpt_full")  # read distill's P and factors
FROM_SOURCES = ("spot", "attempt")  # read the source prompts


def adapt(*methods: str) -> set[str]:
    return {f"adapt@tgt_a-{method}-0" for method in methods}


@pytest.fixture
def repo(every_method_run, tmp_path) -> Path:
    """A private copy of the every-method run (its git history and DVC cache, not .dvc/tmp) for one test's edits."""
    return every_method_run.copy(tmp_path)


def edit_params(repo: Path, change) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def repro(repo: Path, *args: str) -> set[str]:
    return ran_stages(dvc(repo, "repro", *args).stdout)


def rerun_by_a_change(repo: Path) -> set[str]:
    """The stages a `dvc repro` after the change runs, the report aside: those upstream of the adapt@ runs, run for
    real, and the adapt@ runs then out of date (see the module docstring). The report reads every run and reruns
    after any of them (tests/test_end_to_end.py checks that), so it says nothing about which ones rerun."""
    ran = repro(repo, "method_inputs")
    pending = set(json.loads(dvc(repo, "status", "--json").stdout))
    return (ran | pending) - {"report"}


def lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]


def test_each_run_records_as_deps_only_the_files_its_method_reads(every_method_run):
    """dvc.lock: no adapt@ stage depends on results/source or results/distill; its method's inputs file names what
    it reads there, by hash; it tracks the shared params only (its own come through that file)."""
    every_method = every_method_run.repo
    stages = lock(every_method)
    params = yaml.safe_load((every_method / "params.yaml").read_text(encoding="utf-8"))
    for method in METHODS:
        stage = stages[f"adapt@tgt_a-{method}-0"]
        data = sorted(d["path"] for d in stage["deps"] if not d["path"].startswith(("pipeline", "stages/")))
        assert data == ["data/prepared/tgt_a", "models/backbone", f"results/method_inputs/{method}.json"], method
        assert set(stage["params"]["params.yaml"]) == {*SHARED_KEYS, "tasks.tgt_a"}, method
        inputs = json.loads((every_method / "results" / "method_inputs" / f"{method}.json").read_text())
        reads = sorted(inputs["reads"])
        if method in DISTILLED:
            assert reads == ["results/distill/shared.safetensors"], method
        elif method in FROM_SOURCES:
            assert reads == [f"results/source/{task}/prompt.safetensors" for task in ("src_a", "src_b")], method
        else:
            assert reads == [], method
        for path, digest in inputs["reads"].items():
            assert sha256_file(every_method / path) == digest
        assert inputs["params"] == read_sections(params, KNOBS[method]), method
    distill = {d["path"] for d in stages["distill"]["deps"]}
    assert "results/source" in distill and not [path for path in distill if "timing" in path]


def test_a_method_knob_reruns_that_methods_runs_only(repo):
    """adapt.cpt_epsilon is cpt's, adapt.ptuning_encoder ptuning's, adapt.factor_lr mpt's and mpt_full's."""
    edit_params(repo, lambda params: params["adapt"].update(cpt_epsilon=0.2, ptuning_encoder="lstm", factor_lr=0.1))
    assert rerun_by_a_change(repo) == {"method_inputs"} | adapt("cpt", "ptuning", *DISTILLED)


def test_a_shared_key_reruns_every_run(repo):
    edit_params(repo, lambda params: params["adapt"].update(warmup_steps=2))
    assert rerun_by_a_change(repo) == adapt(*METHODS)


def test_a_rerun_that_repeats_its_outputs_invalidates_nothing_after_it(repo):
    """A teacher or the distillation rerun with the same inputs writes the same prompts (only its wall time
    differs): nothing downstream reruns."""
    assert repro(repo, "--force", "--single-item", "source@src_a") == {"source@src_a"}
    assert repro(repo, "--force", "--single-item", "distill") == {"distill"}
    assert repro(repo) == set()
