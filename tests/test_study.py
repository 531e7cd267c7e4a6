"""The study command's plan: phases from a study file, the stage order, params overrides, and its refusals."""

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


def test_the_committed_study_file_plans_valid_phases(tmp_path):
    from pathlib import Path

    from pipeline.cli.study import with_overrides as apply
    from pipeline.config.schema import Params

    root = Path(__file__).resolve().parents[1]
    study = load_study(root / "studies" / "transfer-study.yaml", root)
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
