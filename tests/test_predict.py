"""`python -m pipeline predict`: our Backbone's argmax, one line per input in order, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import TASK, random_prompt, save_repo

from pipeline.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["good movie", "awful awful film", "what is the plot ? " * 5, "great actor"]


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repo layout in tmp (models/backbone, data/prepared/toy, one adapt run), as the working directory."""
    monkeypatch.chdir(tmp_path)
    return save_repo(tmp_path)


def run(capsys, *args: str) -> tuple[int, list[str], str]:
    status = main(["predict", "results/adapt/toy-pt", "--max-length", "16", *args])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def test_predictions_are_the_argmax_of_our_scores(repo, capsys):
    status, lines, _ = run(capsys, "--text", *TEXTS[:2], "--text", *TEXTS[2:], "--batch-size", "3")
    labels = repo.label_words(TASK.label_words, "test")
    encoded = repo.tokenize([TASK.template.format(text=" ".join(t.split())) for t in TEXTS], max_length=16)
    with torch.no_grad():
        logits = repo(random_prompt(), encoded["input_ids"], encoded["attention_mask"], labels).logits
    probabilities = logits.softmax(-1)
    assert status == 0 and len(lines) == len(TEXTS)
    for line, text, row in zip(lines, TEXTS, probabilities):
        label, word, probability, shown = line.split("\t")
        assert label == TASK.labels[int(row.argmax())] and word == TASK.label_words[int(row.argmax())].strip()
        assert probability == f"{float(row.max()):.3f}"
        assert shown == " ".join(text.split())[:60]


def test_file_gives_one_line_per_non_empty_line_in_order(repo, capsys, tmp_path):
    (tmp_path / "texts.txt").write_text("good movie\n\n  \nawful film\ngreat\tactor\n", encoding="utf-8")
    status, lines, err = run(capsys, "--file", "texts.txt", "--batch-size", "2")
    assert status == 0
    assert [line.split("\t")[3] for line in lines] == ["good movie", "awful film", "great actor"]
    assert "3/3" in err  # the progress bar, on stderr only


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--file", "missing.txt"], "error: missing.txt: cannot read"),
        (["--file", "blank.txt"], "error: no texts to label"),
        ([], "error: no texts to label"),
        (["--text", "good", "--batch-size", "0"], "error: --batch-size must be > 0"),
    ],
)
def test_bad_inputs_exit_1_with_one_line(repo, capsys, tmp_path, args, message):
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    status, lines, err = run(capsys, *args)
    assert status == 1 and lines == []
    assert err.startswith(message) and err.count("\n") == 1


def test_missing_run_and_other_backbone_are_one_line_errors(repo, capsys):
    assert main(["predict", "results/adapt/nope", "--text", "good"]) == 1
    assert capsys.readouterr().err == "error: results/adapt/nope: no such run folder\n"
    Path("models/backbone/backbone.json").write_text(
        Path("models/backbone/backbone.json").read_text().replace("tiny-causal-fp", "other")
    )
    status, _, err = run(capsys, "--text", "good")
    assert status == 1 and "results/adapt/toy-pt/params.safetensors: made with backbone" in err
    assert err.count("\n") == 1


def test_help_lists_the_commands():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert "export" in result.stdout and "predict" in result.stdout and "PEFT" in result.stdout
