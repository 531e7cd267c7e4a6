"""Each stage's flow run in ``tmp_path`` on a tiny random backbone and tiny local data, without DVC.

The flows run in pipeline order on one shared repo folder (module-scoped fixtures): each test checks what its own
flow wrote, given what the earlier flows wrote. The end-to-end `dvc repro` is tests/test_end_to_end.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny import WORDS, full_params, save_tiny_backbone

from pipeline.config.schema import Params, load_params
from pipeline.errors import PipelineError
from pipeline.flows import adapt, backbone, distill, prepare, report, source
from pipeline.layout import METRICS_FILE, REPORTS_DIR, distill_dir, source_dir, stage_dir, timing_file

LABELS = {"good": " positive", "bad": " negative"}
TASKS = ("src_a", "src_b", "tgt")


@contextmanager
def inside(root: Path) -> Iterator[None]:
    """Run with ``root`` as the working directory: every path in pipeline.layout is relative to the repo root."""
    cwd = Path.cwd()
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(cwd)


def write_csv(path: Path, seed: int) -> None:
    rng, vocab = random.Random(seed), [w for w in WORDS if w not in {"positive", "negative"}]
    rows = [f"{' '.join(rng.sample(vocab, 4) + [label[:3], str(i)])},{label}" for i, label in
            enumerate(list(LABELS) * 12)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repo folder with params.yaml (2-step budgets), a tiny backbone and three tiny tasks; nothing run yet."""
    root = tmp_path_factory.mktemp("flows")
    save_tiny_backbone(root / "tiny-backbone")
    tasks = {}
    for seed, name in enumerate(TASKS):
        write_csv(root / f"{name}.csv", seed)
        tasks[name] = {
            "source": {"kind": "file", "path": f"{name}.csv", "format": "csv"},
            "columns": {"text": "text", "label": "label"}, "template": "{text} sentiment :",
            "label_words": LABELS, "splits": {"train": 12, "dev": 6, "test": 6},
        }
    tasks["tgt"]["k_shot"] = [4, "all"]
    params = full_params(tasks, ["src_a", "src_b"], ["tgt"])
    params["backbone"] = {"name": "tiny", "kind": "causal",
                          "source": {"kind": "local", "path": "tiny-backbone", "format": "hf"}}
    params["model"] = {"prompt_length": 4, "max_length": 16, "batch_size": 4, "eval_batch_size": 8}
    for stage in ("source", "distill", "adapt"):
        params[stage]["steps"], params[stage]["warmup_steps"] = 2, 0
    params["source"]["teacher_examples"] = 4
    params["adapt"]["methods"] = ["mpt", "pt", "spot"]
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


def params(root: Path) -> Params:
    return load_params(root / "params.yaml")


@pytest.fixture(scope="module")
def prepared(repo) -> Path:
    with inside(repo):
        backbone.run(params(repo))
        for name in TASKS:
            prepare.run(params(repo), name)
    return repo


@pytest.fixture(scope="module")
def taught(prepared) -> Path:
    with inside(prepared):
        for name in ("src_a", "src_b"):
            source.run(params(prepared), name)
    return prepared


@pytest.fixture(scope="module")
def distilled(taught) -> Path:
    with inside(taught):
        distill.run(params(taught))
    return taught


@pytest.fixture(scope="module")
def adapted(distilled) -> Path:
    with inside(distilled):
        for method in ("mpt", "pt", "spot"):
            adapt.run(params(distilled), "tgt", method, "0")
    return distilled


def test_backbone_and_prepare_write_the_backbone_and_each_task(prepared):
    info = json.loads((prepared / "data" / "prepared" / "tgt" / "task.json").read_text())
    assert info["sizes"] == {"train": 12, "dev": 6, "test": 6} and sorted(info["labels"]) == ["bad", "good"]
    assert (prepared / "models" / "backbone" / "backbone.json").is_file()
    with inside(prepared), pytest.raises(PipelineError, match=r"no task tasks\.nope"):
        prepare.run(params(prepared), "nope")


def test_source_writes_a_teacher_and_its_outputs(taught):
    with inside(taught):
        folder = source_dir("src_a")
        assert {path.name for path in folder.iterdir()} >= {"prompt.safetensors", "teacher.safetensors", "metrics.json"}
        assert json.loads((folder / "metrics.json").read_text())["steps"] == 2
        with pytest.raises(PipelineError, match=r"'tgt' is not listed in source_tasks"):
            source.run(params(taught), "tgt")


def test_distill_writes_the_shared_prompt_beside_the_teachers_scores(distilled):
    with inside(distilled):
        metrics = json.loads((distill_dir() / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"src_a", "src_b"} and metrics["steps"] == 2
    assert set(metrics["tasks"]["src_a"]["teacher"]) == {"dev", "test"}


def test_distill_imports_a_peft_multitask_adapter_instead_of_distilling(distilled, tmp_path):
    """results/distill exported as a PEFT adapter and named by distill_from comes back as the same P and factors,
    with the same student scores, in 0 steps; a P of another length is refused naming the adapter."""
    from pipeline.cli.export_mpt import export_multitask  # the CLI's module: it imports PEFT

    repo = shutil.copytree(distilled, tmp_path / "repo")
    with inside(repo):
        before = load_file(distill_dir() / "shared.safetensors")
        first = json.loads((distill_dir() / "metrics.json").read_text())
        export_multitask(distill_dir(), Path("adapter"), Path("models/backbone"))
        raw = yaml.safe_load(Path("params.yaml").read_text())
        Path("params.yaml").write_text(yaml.safe_dump({**raw, "distill_from": "adapter"}))
        assert "imported from adapter" in distill.run(params(repo))
        after = load_file(distill_dir() / "shared.safetensors")
        metrics = json.loads((distill_dir() / "metrics.json").read_text())
        assert sorted(after) == ["shared", "u", "v"] and all(torch.equal(before[k], after[k]) for k in after)
        assert metrics["steps"] == 0 and metrics["imported_from"] == "adapter"
        for task in ("src_a", "src_b"):
            assert metrics["tasks"][task]["test"] == first["tasks"][task]["test"]
            assert metrics["tasks"][task]["factors"] == task
        raw["model"]["prompt_length"] = 5
        Path("params.yaml").write_text(yaml.safe_dump({**raw, "distill_from": "adapter"}))
        with pytest.raises(PipelineError, match=r"^adapter: num_virtual_tokens is 4 but params.yaml model.prompt"):
            distill.run(params(repo))


def test_adapt_writes_one_run_folder_per_k_and_the_timings_apart(adapted):
    with inside(adapted):
        folder, timings = stage_dir("tgt", "mpt", 0), timing_file("tgt", "mpt", 0)
        assert sorted(path.name for path in folder.iterdir()) == ["k4", "kall"]
        few = json.loads((folder / "k4" / "metrics.json").read_text())
        assert few["train_examples"] == 4 and few["trainable_params"] == 4 + 32  # l + d: only L is trained
        assert set(json.loads(timings.read_text())) == {"k4", "kall"}
        # The dev curve's share of the loop's time (step 2's score), apart, so P10 can count it as evaluation.
        assert all(0 < t["dev_seconds"] < t["train_seconds"] for t in json.loads(timings.read_text()).values())
        assert "spot_source" in json.loads((stage_dir("tgt", "spot", 0) / "kall" / "metrics.json").read_text())
        # adapt.eval_every 10 > steps 2: dev scored at step 0 (the initial prompt) and the last step, test from the
        # earliest best-dev step, and the template alone (no prompt) scored once for the stage.
        assert [step for step, _ in few["dev_curve"]] == [0, 2] and few["select"] == "best_dev"
        best = max(accuracy for _, accuracy in few["dev_curve"])
        assert few["selected_step"] == next(step for step, accuracy in few["dev_curve"] if accuracy == best)
        assert few["dev"]["accuracy"] == pytest.approx(best) and set(few["zero_step"]) == {"dev", "test"}
        assert 0 <= few["template_accuracy"] <= 1
        curve = Path("dvclive/adapt_tgt-mpt-0/plots/metrics/dev/k4/accuracy.tsv").read_text().splitlines()
        assert curve[0].split("\t") == ["step", "accuracy"]
        assert [line.split("\t")[0] for line in curve[1:]] == ["0", "2"]
        with pytest.raises(PipelineError, match=r"seed '7' is not listed in seeds"):
            adapt.run(params(adapted), "tgt", "pt", "7")


def test_report_reads_every_planned_run(adapted):
    with inside(adapted):
        summary = report.run(params(adapted))
        rows = (REPORTS_DIR / "transfer.csv").read_text().splitlines()
        assert METRICS_FILE.is_file()
    assert summary.startswith("6 runs over 1 targets -> reports/transfer.md")
    assert {tuple(row.split(",")[1:3]) for row in rows[1:]} == {(m, k) for m in ("mpt", "pt", "spot") for k in ("4", "all")}


def test_distill_refuses_teacher_outputs_computed_under_another_dtype(taught, tmp_path):
    """A teacher's cached outputs are the student's targets: outputs scored in bf16 must not train an fp32 student, nor the other way round
    (issue 11). The refusal is one line naming the file and the stage to rerun; prompts alone would load."""
    from pipeline.store.tensors import load_tensors, save_tensors

    copy = tmp_path / "repo"
    shutil.copytree(taught, copy)
    teacher = copy / source_dir("src_a") / "teacher.safetensors"
    tensors, meta = load_tensors(teacher, "source@src_a")
    # the dtype this machine did not use: backbone.dtype auto is bfloat16 on a CPU with native bf16
    other = "float32" if meta["backbone_dtype"] == "bfloat16" else "bfloat16"
    save_tensors(teacher, tensors, {**meta, "backbone_dtype": other})
    with inside(copy), pytest.raises(PipelineError) as error:
        distill.run(params(copy))
    message = str(error.value)
    assert "teacher.safetensors" in message and f"backbone_dtype='{other}'" in message
    assert "rerun `dvc repro source@src_a`" in message and "\n" not in message


def test_the_template_alone_is_scored_once_per_target_and_each_starting_prompt_once_per_stage(
    distilled, tmp_path, monkeypatch
):
    """The template's score is the same for every method and seed of a target: the first adapt@ stage scores it,
    the others read the memo (same value in every run's metrics.json); a setting it depends on gives a new memo.
    Within a stage, k = 4 and k = all start from the same prompt, scored on dev and test once."""
    from pipeline.layout import MEMO_DIR
    from pipeline.training import fit

    repo = shutil.copytree(distilled, tmp_path / "repo", ignore=shutil.ignore_patterns("memo"))
    templates, passes = [], []
    scored, evaluate = adapt.evaluate_template, fit.evaluate_prompt
    monkeypatch.setattr(adapt, "evaluate_template", lambda *a, **k: templates.append(1) or scored(*a, **k))
    monkeypatch.setattr(fit, "evaluate_prompt", lambda *a, **k: passes.append(a[3]) or evaluate(*a, **k))
    with inside(repo):
        for method in ("pt", "mpt"):
            adapt.run(params(repo), "tgt", method, "0")
        assert len(templates) == 1 and len(list(MEMO_DIR.iterdir())) == 1
        assert passes.count(("dev", "test")) == 2  # one starting prompt per stage, over both k
        values = {json.loads((stage_dir("tgt", m, 0) / k / "metrics.json").read_text())["template_accuracy"]
                  for m in ("pt", "mpt") for k in ("k4", "kall")}
        memo = json.loads(next(MEMO_DIR.iterdir()).read_text())
        assert values == {memo["value"]} and memo["payload"]["score"] == "template_accuracy"
        raw = yaml.safe_load(Path("params.yaml").read_text())
        raw["model"]["eval_batch_size"] = 4  # other batches, other padding: not the same computation
        Path("params.yaml").write_text(yaml.safe_dump(raw))
        adapt.run(params(repo), "tgt", "pt", "0")
        assert len(templates) == 2 and len(list(MEMO_DIR.iterdir())) == 2
