"""The study command's plan: phases from a study file, the stage order, params overrides, and its refusals."""

from pathlib import Path

import pytest
import yaml

from pipeline.cli.study import load_study, planned_stages, with_overrides
from pipeline.errors import PipelineError

TARGETS = ["amazon_sentiment", "sms_spam"]


def write(tmp_path, spec) -> object:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_stages_run_block_by_block_and_seed_first_without_repeats():
    blocks = [
        {"targets": TARGETS, "methods": ["pt", "mpt"], "seeds": [0, 1]},
        {"targets": TARGETS[:1], "methods": ["pt", "spot"], "seeds": [0]},
    ]
    assert planned_stages(blocks, "s") == (
        "adapt@amazon_sentiment-pt-0", "adapt@amazon_sentiment-mpt-0", "adapt@sms_spam-pt-0", "adapt@sms_spam-mpt-0",
        "adapt@amazon_sentiment-pt-1", "adapt@amazon_sentiment-mpt-1", "adapt@sms_spam-pt-1", "adapt@sms_spam-mpt-1",
        "adapt@amazon_sentiment-spot-0",
    )


def test_a_phase_gets_base_then_its_own_settings_and_the_methods_and_seeds_it_runs(tmp_path):
    spec = {
        "name": "s", "out": "docs/s", "base": {"source.steps": 120, "adapt.rank": 1},
        "phases": [{"name": "p", "set": {"adapt.rank": 4},
                    "run": [{"targets": TARGETS, "methods": ["mpt", "pt"], "seeds": [2, 0]}]}],
    }
    study = load_study(write(tmp_path, spec), tmp_path)
    (phase,) = study.phases
    assert phase.overrides == {"source.steps": 120, "adapt.rank": 4, "adapt.methods": ["mpt", "pt"], "seeds": [0, 2]}
    assert study.out == tmp_path / "docs/s" and study.workspace == tmp_path / ".study" / "s"


def test_overrides_set_nested_keys_and_leave_the_input_alone():
    params = {"adapt": {"rank": 0}, "tasks": {"t": {"k_shot": ["all"]}}}
    changed = with_overrides(params, {"adapt.rank": 4, "tasks.t.k_shot": [16], "seeds": [0, 1]})
    assert changed == {"adapt": {"rank": 4}, "tasks": {"t": {"k_shot": [16]}}, "seeds": [0, 1]}
    assert params["adapt"]["rank"] == 0
    with pytest.raises(PipelineError, match="cannot set tasks.nope.k_shot: params.yaml has no section tasks.nope"):
        with_overrides(params, {"tasks.nope.k_shot": [16]})


@pytest.mark.parametrize("spec, match", [
    ({"name": "s", "out": "o", "phases": []}, "phases is empty"),
    ({"name": "s", "out": "o", "phasez": []}, "unknown key 'phasez'"),
    ({"name": "", "out": "o", "phases": [{"name": "p", "run": []}]}, "name must be a non-empty string"),
    ({"name": "s", "out": "o", "phases": [{"name": "p", "run": []}, {"name": "p", "run": []}]}, "is repeated"),
    ({"name": "s", "out": "o", "phases": [{"name": "p", "run": [{"targets": ["t"]}]}]},
     r"run\[0\] must be a mapping with keys targets, methods, seeds"),
])
def test_a_bad_study_file_is_one_line_naming_the_file(tmp_path, spec, match):
    path = write(tmp_path, spec)
    with pytest.raises(PipelineError, match=match) as error:
        load_study(path, tmp_path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["transfer-study.yaml", "transfer-study-gemma.yaml"])
def test_the_committed_study_files_plan_valid_phases(tmp_path, name):
    from pipeline.cli.study import with_overrides as apply
    from pipeline.config.schema import Params

    root = Path(__file__).resolve().parents[1]
    study = load_study(root / "studies" / name, root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for phase in study.phases:
        Params.from_dict(apply(params, phase.overrides))  # raises on an unknown key or a bad value
        assert phase.stages


def test_prompt_similarity_is_the_seed_mean_cosine_of_mean_pooled_prompts(tmp_path):
    import torch

    from pipeline.cli.study import prompt_similarity
    from pipeline.store.tensors import save_tensors

    source = torch.zeros(3, 4)
    source[:, 0] = 1.0  # pooled: e0
    save_tensors(tmp_path / "results/source/s/prompt.safetensors", {"prompt": source}, {})
    same, orthogonal = torch.zeros(3, 4), torch.zeros(3, 4)
    same[:, 0], orthogonal[:, 1] = 2.0, 1.0
    for seed, prompt in enumerate((same, orthogonal)):
        save_tensors(tmp_path / f"results/adapt/t-pt/seed{seed}/k16/params.safetensors", {"prompt": prompt}, {})
    rows = prompt_similarity(tmp_path, {"source_tasks": ["s"], "target_tasks": ["t", "u"]})
    assert rows == [{"target": "t", "k": "16", "source": "s", "seeds": 2, "cosine": 0.5}]


def runs_frame(rows):
    import pandas as pd

    columns = ["target", "method", "k", "seed", "accuracy", "zero_step_accuracy", "template_accuracy"]
    frame = pd.DataFrame(rows, columns=columns).astype({"k": str})
    frame["dev_accuracy"] = frame["accuracy"]  # unless a test sets its own
    return frame


def test_q1_averages_over_targets_seed_by_seed_then_takes_the_interval_over_seeds():
    from pipeline.cli.study_report import target_mean_difference

    rows = []
    for seed, (gain_a, gain_b) in enumerate([(0.10, 0.00), (0.20, 0.10), (0.30, 0.20)]):
        rows += [("a", "pt", "16", seed, 0.5, 0.5, 0.5), ("a", "mpt", "16", seed, 0.5 + gain_a, 0.6, 0.5),
                 ("b", "pt", "16", seed, 0.6, 0.5, 0.5), ("b", "mpt", "16", seed, 0.6 + gain_b, 0.6, 0.5)]
    rows.append(("a", "pt", "16", 9, 0.5, 0.5, 0.5))  # a seed only one target has both runs of: left out
    runs = runs_frame(rows)
    diff = target_mean_difference(runs, runs, "16", "mpt")
    assert diff.n == 3 and diff.mean == pytest.approx(0.15)  # per seed: 0.05, 0.15, 0.25
    assert diff.half_width == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-5)  # t(0.975, 2) * s / sqrt(n)
    assert target_mean_difference(runs, runs, "32", "mpt") is None


def test_the_study_report_pairs_an_ablation_with_the_reference_phase_and_lists_phases_not_run(tmp_path):
    import json

    from pipeline.cli.study_report import write_study_report

    spec = {"name": "s", "out": "out", "phases": [
        {"name": "base", "run": [{"targets": ["a"], "methods": ["pt", "mpt"], "seeds": [0, 1]}]},
        {"name": "wide", "set": {"adapt.rank": 4}, "run": [{"targets": ["a"], "methods": ["mpt"], "seeds": [0, 1]}]},
        {"name": "later", "run": [{"targets": ["a"], "methods": ["pt"], "seeds": [0]}]},
    ]}
    path = write(tmp_path, spec)
    base = [("a", "pt", "16", 0, 0.50, 0.4, 0.45), ("a", "pt", "16", 1, 0.60, 0.4, 0.45),
            ("a", "mpt", "16", 0, 0.70, 0.55, 0.45), ("a", "mpt", "16", 1, 0.70, 0.55, 0.45)]
    wide = [("a", "mpt", "16", 0, 0.80, 0.55, 0.45), ("a", "mpt", "16", 1, 0.90, 0.55, 0.45)]
    for name, rows in (("base", base), ("wide", wide)):
        folder = tmp_path / "out" / name
        folder.mkdir(parents=True)
        runs_frame(rows).to_csv(folder / "transfer.csv", index=False)
        record = {"phase": name, "commit": "abc1234def", "set": {}, "stages": [], "seconds": 1800}
        (folder / "phase.json").write_text(json.dumps(record))
    text = write_study_report(path, tmp_path).read_text()
    assert "Phases not run yet: later." in text
    assert "**Q1** (base, k = 16): mpt − pt, mean over targets: +15.0 points" in text
    assert "zero-step mpt 0.550 vs the template alone 0.450: +10.0 points" in text
    assert "− same method in base" in text and "+15.0 points" in text.split("## Phase wide")[1]  # 0.85 - 0.70
    assert "1.0 h of stage time" in text


def test_q4_reads_each_targets_steps_to_95pt_at_k_all(tmp_path):
    import json

    import pandas as pd

    from pipeline.cli.study_report import goals_section, read_phases

    folder = tmp_path / "kall"
    folder.mkdir()
    rows = [("a", "pt", "all", 0, 0.8, 0.5, 0.5), ("a", "mpt", "all", 0, 0.8, 0.6, 0.5)]
    runs_frame(rows).to_csv(folder / "transfer.csv", index=False)
    pd.DataFrame({"target": ["a", "a"], "k": ["all", "all"], "method": ["pt", "mpt"],
                  "dev_steps_to_95pt": [30.0, None]}).to_csv(folder / "summary.csv", index=False)
    (folder / "phase.json").write_text(json.dumps({"commit": "abc", "set": {}, "stages": []}))
    phases, missing = read_phases(tmp_path, ["kall", "k8"])
    assert missing == ["k8"]
    lines = "\n".join(goals_section(phases))
    assert "**Q4** (kall, a): steps to 95 % of pt's final dev accuracy (mean curve over seeds): mpt never, pt 30" in lines


def test_each_method_is_taken_at_its_grid_point_with_the_best_dev_accuracy(tmp_path):
    import json

    from pipeline.cli.study_report import read_phases, tuned_section

    phases = {
        "base": ([("a", "pt", "16", s, 0.60, 0.5, 0.5) for s in (0, 1)]
                 + [("a", "mpt", "16", s, 0.70, 0.5, 0.5) for s in (0, 1)], {}),
        "pt-lr": ([("a", "pt", "16", 0, 0.75, 0.5, 0.5), ("a", "pt", "16", 1, 0.65, 0.5, 0.5)], {"adapt.lr": 0.05}),
        "wide": ([("a", "mpt", "16", s, 0.95, 0.5, 0.5) for s in (0, 1)], {"adapt.rank": 4}),  # not a grid point
    }
    for name, (rows, setting) in phases.items():
        folder = tmp_path / name
        folder.mkdir()
        frame = runs_frame(rows)
        frame["dev_accuracy"] = frame["accuracy"] + (0.2 if name == "pt-lr" else 0.0)
        frame.to_csv(folder / "transfer.csv", index=False)
        (folder / "phase.json").write_text(json.dumps({"commit": "abc", "set": setting, "stages": []}))
    done, _ = read_phases(tmp_path, list(phases))
    text = "\n".join(tuned_section(done, base_keys=set()))
    assert "pt: dev accuracy per grid point: base 0.600, pt-lr 0.900; picked: **pt-lr**" in text
    assert "mpt: dev accuracy per grid point: base 0.700; picked: **base**" in text  # rank 4 is capacity, not grid
    # seed by seed: 0.70 - 0.75 and 0.70 - 0.65
    assert "tuned mpt − tuned pt, mean over targets: +0.0 points [-63.5, +63.5], not significant" in text


def test_a_phase_running_a_target_outside_target_tasks_is_refused_before_any_work(tmp_path, monkeypatch):
    import pipeline.cli.study as study_module

    spec = {"name": "s", "out": "o", "base": {"target_tasks": ["sms_spam"]},
            "phases": [{"name": "p", "run": [{"targets": ["amazon_sentiment"], "methods": ["pt"], "seeds": [0]}]}]}
    path = write(tmp_path, spec)
    params_text = (Path(__file__).resolve().parents[1] / "params.yaml").read_text()
    monkeypatch.setattr(study_module, "_workspace", lambda root, workspace: "abc")
    monkeypatch.setattr(study_module, "_git", lambda cwd, *args: params_text)
    monkeypatch.setattr(study_module, "_run_phase", lambda *args: pytest.fail("a phase ran"))
    with pytest.raises(PipelineError, match="phase p runs 'amazon_sentiment', which is not in target_tasks"):
        study_module.run_study(path, tmp_path)


def test_ctrl_c_during_a_command_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    import pipeline.cli.study as study_module
    from pipeline.__main__ import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study_module, "run_study", interrupted)
    assert main(["study", str(tmp_path / "study.yaml")]) == 130
    err = capsys.readouterr().err
    assert err == "interrupted: python -m pipeline study (run it again to resume)\n"


def test_complete_seeds_are_those_where_every_run_of_the_seed_finished():
    from pipeline.cli.study import complete_seeds

    stages = planned_stages([{"targets": ["a", "b"], "methods": ["pt", "mpt"], "seeds": [0, 1, 2]}], "w")
    assert complete_seeds(stages, set()) == [0, 1, 2]
    assert complete_seeds(stages, {"adapt@b-mpt-1", "adapt@a-pt-2"}) == [0]
    assert complete_seeds(stages, set(stages)) == []


def test_a_study_cut_short_is_reported_over_its_finished_seeds_and_then_resumed(tmp_path, monkeypatch):
    """--report-finished reports the first unfinished phase over the seeds whose runs all finished, marks it
    cut short, puts the phase's own params back, and a later run of the study does not skip that phase."""
    import json

    import pipeline.cli.study as study_module

    spec = {"name": "s", "out": "out", "base": {"target_tasks": TARGETS}, "phases": [
        {"name": "k16", "run": [{"targets": TARGETS, "methods": ["pt", "mpt"], "seeds": [0, 1, 2]}]},
        {"name": "later", "run": [{"targets": TARGETS, "methods": ["pt"], "seeds": [0]}]},
    ]}
    path = write(tmp_path, spec)
    workspace = tmp_path / ".study" / "s"
    (workspace / ".git").mkdir(parents=True)
    params_text = (Path(__file__).resolve().parents[1] / "params.yaml").read_text()
    monkeypatch.setattr(study_module, "_git", lambda cwd, *args: "abc123\n" if args[0] == "rev-parse" else params_text)
    monkeypatch.setattr(study_module, "_stale_stages", lambda ws, stages: {"adapt@sms_spam-mpt-2"})
    reported = {}

    def report(study, phase, params, commit, log, extra):
        reported.update(phase=phase.name, seeds=params["seeds"], extra=extra)
        folder = study.out / phase.name
        folder.mkdir(parents=True)
        (folder / "phase.json").write_text(json.dumps({**phase.record(commit), **extra}))

    monkeypatch.setattr(study_module, "_report_phase", report)
    study_module.report_finished(path, tmp_path, log=lambda line: None)
    assert reported["phase"] == "k16" and reported["seeds"] == [0, 1]
    assert reported["extra"]["partial"] == {"seeds": [0, 1], "runs": 8, "planned": 12}
    assert yaml.safe_load((workspace / "params.yaml").read_text())["seeds"] == [0, 1, 2]  # the phase's own again

    ran = []
    monkeypatch.setattr(study_module, "_workspace", lambda root, ws: "abc123")
    monkeypatch.setattr(study_module, "_run_phase", lambda study, phase, *args: ran.append(phase.name))
    study_module.run_study(path, tmp_path)
    assert ran == ["k16", "later"]  # the cut-short phase is not taken for done


def test_the_study_report_says_which_phase_was_cut_short(tmp_path):
    import json

    from pipeline.cli.study_report import write_study_report

    spec = {"name": "s", "out": "out", "phases": [
        {"name": "base", "run": [{"targets": ["a"], "methods": ["pt", "mpt"], "seeds": [0, 1, 2]}]}]}
    path = write(tmp_path, spec)
    folder = tmp_path / "out" / "base"
    folder.mkdir(parents=True)
    runs = runs_frame([("a", "pt", "16", 0, 0.5, 0.4, 0.45), ("a", "mpt", "16", 0, 0.6, 0.5, 0.45)])
    runs.assign(train_seconds=1800.0).to_csv(folder / "transfer.csv", index=False)
    record = {"phase": "base", "commit": "abc1234def", "set": {}, "stages": [],
              "partial": {"seeds": [0], "runs": 2, "planned": 6}}
    (folder / "phase.json").write_text(json.dumps(record))
    text = write_study_report(path, tmp_path).read_text()
    assert "[base](base/transfer.md) (cut short: seeds 0 only, 2 of its 6 runs)" in text
    assert "1.0 h of stage time" in text  # its runs' training loops: 1800 s each


def test_an_included_params_file_sets_whole_sections_before_base(tmp_path):
    (tmp_path / "backbones").mkdir()
    (tmp_path / "backbones" / "other.yaml").write_text(yaml.safe_dump({"backbone": {"name": "other", "dtype": "auto"}}))
    spec = {"name": "s", "out": "o", "include": ["backbones/other.yaml"], "base": {"backbone.dtype": "float32"},
            "phases": [{"name": "p", "run": [{"targets": TARGETS, "methods": ["pt"], "seeds": [0]}]}]}
    (phase,) = load_study(write(tmp_path, spec), tmp_path).phases
    changed = with_overrides({"backbone": {"name": "smollm2", "kind": "causal"}, "adapt": {}}, phase.overrides)
    assert changed["backbone"] == {"name": "other", "dtype": "float32"}  # the whole block replaced, then base
    spec["include"] = ["backbones/missing.yaml"]
    with pytest.raises(PipelineError, match="include backbones/missing.yaml: cannot read it"):
        load_study(write(tmp_path, spec), tmp_path)
