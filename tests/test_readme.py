"""Every shell command in README.md is exercised somewhere: a test, CI, or (for the 20-minute default run) by hand.

The table maps each command of the README's fenced ``bash``/``console`` blocks, normalised (comments and prompts
dropped, whitespace folded), to what runs it and a piece of that test's code that shows it does. A command added
to the README without an entry here fails the first test; an entry whose command left the README fails the second.
Tests run the same command on their own small setup (the tiny random backbone's repo, a toy run folder), with
that setup's task and run names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BY_HAND = "by hand"  # no test runs it: it takes too long for the suite
GUIDE = "tests/test_user_guide.py::"
COMPARE = GUIDE + "test_the_compare_runs_commands_of_the_readme"
TWO_PROCESSES = GUIDE + "test_a_stage_trained_on_two_processes_is_recorded_with_dvc_commit"
QUEUE = GUIDE + "test_the_ablation_queue_commands_of_the_readme"
# The e2e tests' one full run is the shared tiny_run fixture (tests/conftest.py); the guide's repo runs its own.
EVERY_STAGE = GUIDE + "test_every_stage_runs_on_an_encoder_decoder_backbone_from_hub_sources"
EXPORT = "tests/test_export.py::test_export_command"
EXPORT_MPT = "tests/test_export_mpt.py::test_export_command_picks_the_format"
PREDICT_TEXT = "tests/test_predict.py::test_predictions_are_the_argmax_of_our_scores"
PREDICT_FILE = "tests/test_predict.py::test_file_gives_one_line_per_non_empty_line_in_order"
RUN = "results/adapt/sms_spam-mpt/seed0/k16"  # the README's run folder; the tests use a toy one
FANOUT = "tests/test_fanout.py::test_fanout_runs_the_seeds_on_two_workers_and_the_collecting_repro_trains_nothing"
MACHINES = "tests/test_fanout.py::test_a_clone_that_pulls_the_run_cache_trains_nothing"  # clones A, B, C

# README command -> (what runs it: "tests/<file>.py::<test>", "CI: <file>" or BY_HAND; the code that shows it does)
COVERED: dict[str, tuple[str, str]] = {
    "make repro": (BY_HAND, "the default run takes ~20 min on 2 CPU cores; the suite runs `dvc repro` on tiny repos"),
    "make test": ("CI: .ci/run", "make test"),
    "python -m pipeline study studies/transfer-study.yaml": (
        BY_HAND, "the transfer study takes hours; its plan and report are tested in tests/test_study.py, and "
        "docs/results/transfer-study/ is what it wrote"
    ),
    "python -m pipeline study studies/transfer-study.yaml --phase k16": (
        BY_HAND, "one phase of the transfer study (about an hour); tests/test_study.py covers the phase plan"
    ),
    "dvc exp run -n rank2 -S distill.rank=2": (COMPARE, '"exp", "run", "-n", "rank2", "-S", "distill.rank=2"'),
    "dvc exp run -n label-init -S adapt.pt_init=label_words": (
        COMPARE, '"exp", "run", "-n", "label-init", "-S", "adapt.pt_init=label_words"'
    ),
    "dvc exp show --only-changed": (COMPARE, '"exp", "show", "--only-changed"'),
    "dvc exp show --json > exps.json": (COMPARE, '"exp", "show", "--json"'),
    "dvc metrics diff": (COMPARE, '"metrics", "diff"'),
    "dvc params diff": (COMPARE, '"params", "diff"'),
    "dvc plots diff": (COMPARE, '"plots", command'),
    "dvc exp apply label-init": (COMPARE, '"exp", "apply", "label-init"'),
    "dvc plots show": (COMPARE, '"plots", command'),
    "python -m pipeline compare": (COMPARE, 'pipeline_command(repo, "compare")'),
    # Queued as written; one of them (train-p) runs through the queue, the others are removed unrun.
    "dvc exp run --queue -n rank -S distill.rank=1,2,4": (QUEUE, '("rank", "distill.rank=1,2,4")'),
    "dvc exp run --queue -n no-distill -S distill.lambda=0": (QUEUE, '("no-distill", "distill.lambda=0")'),
    "dvc exp run --queue -n no-decomp -S distill.decomposition=false": (QUEUE, '"distill.decomposition=false"'),
    "dvc exp run --queue -n train-p -S adapt.freeze_shared=false": (QUEUE, '("train-p", "adapt.freeze_shared=false")'),
    "dvc queue start -j 1": (QUEUE, '"queue", "start", "-j", "1"'),
    "dvc queue status": (QUEUE, '"queue", "status"'),
    "dvc queue logs <name>": (QUEUE, '"queue", "logs", "train-p"'),
    f"python -m pipeline export {RUN} exported/sms_spam-mpt": (EXPORT, 'main(["export"'),
    "python -m pipeline export results/distill exported/mpt-sources": (
        EXPORT_MPT, 'main(["export", "results/distill"'
    ),
    f"python -m pipeline export {RUN} exported/sms_spam-mpt-l --multitask": (EXPORT_MPT, '"--multitask"]) == 0'),
    f'python -m pipeline predict {RUN} --text "WIN a free phone, call now" "see you at lunch"': (
        PREDICT_TEXT, '"--text"'
    ),
    f"python -m pipeline predict {RUN} --file messages.txt --batch-size 64 > labels.tsv": (PREDICT_FILE, '"--file"'),
    "torchrun --nproc_per_node 2 -m stages.distill": (TWO_PROCESSES, '"--nproc_per_node", "2"'),
    "dvc commit -f distill": (TWO_PROCESSES, '"commit", "-f", "distill"'),
    "dvc repro": (EVERY_STAGE, 'dvc(repo, "repro")'),
    "python -m pipeline fanout --jobs 2 --by seed": (FANOUT, '"fanout", "--jobs", "2", "--by", "seed"'),
    "dvc remote add -d shared /mnt/shared/dvc-remote": (MACHINES, '"remote", "add", "-d", "shared"'),
    # the machines' parts as the tests' clones A and B run them
    "dvc repro --glob 'adapt@*-[01]'": (MACHINES, '("a", "[01]"'),
    "dvc repro --glob 'adapt@*-2'": (MACHINES, '("b", "2"'),
    "dvc push --run-cache": (MACHINES, '"push", "--run-cache"'),
    "dvc repro --pull": (MACHINES, '"repro", "--pull"'),
}

FENCE = re.compile(r"^```(\w*)\s*$")
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}


def readme_commands(text: str) -> list[str]:
    """The commands of the fenced shell blocks, normalised: ``$ `` prompts and ``#`` comments dropped, ``\\``
    continuations joined, whitespace folded. Console blocks keep only their ``$`` lines (the rest is output)."""
    commands, language, pending = [], None, ""
    for line in text.splitlines():
        fence = FENCE.match(line.strip())
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language not in SHELL_BLOCKS:
            continue
        line = line.strip()
        if language == "console":
            if not line.startswith("$ ") and not pending:
                continue
            line = line.removeprefix("$ ")
        line = pending + _without_comment(line).strip()
        if line.endswith("\\"):
            pending = line[:-1].strip() + " "
            continue
        pending = ""
        if line:
            commands.append(" ".join(line.split()))
    return commands


def _without_comment(line: str) -> str:
    """``line`` without its shell comment: from a ``#`` at the start or after white space, outside quotes."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def test_the_parser_reads_blocks_comments_prompts_and_continuations():
    text = "```bash\nmake repro   # a comment\n\nfoo \\\n  --bar 'a # b'\n```\n```yaml\nx: 1  # no\n```\n" \
        "```console\n$ dvc status\nData and pipelines are up to date.\n```\n"
    assert readme_commands(text) == ["make repro", "foo --bar 'a # b'", "dvc status"]


def test_every_readme_command_is_covered():
    missing = [command for command in readme_commands(README.read_text(encoding="utf-8")) if command not in COVERED]
    assert not missing, f"README commands that no test, CI or BY_HAND entry covers (add them to COVERED): {missing}"


def test_every_covered_command_is_still_in_the_readme():
    stale = sorted(set(COVERED) - set(readme_commands(README.read_text(encoding="utf-8"))))
    assert not stale, f"COVERED lists commands the README no longer has: {stale}"


@pytest.mark.parametrize("command", sorted(COVERED))
def test_the_covering_code_exists_and_runs_the_command(command):
    where, evidence = COVERED[command]
    if where == BY_HAND:
        assert evidence  # says why, and what the suite runs instead
        return
    if where.startswith("CI: "):
        assert evidence in (ROOT / where.removeprefix("CI: ")).read_text(encoding="utf-8")
        return
    path, name = where.split("::")
    source = (ROOT / path).read_text(encoding="utf-8")
    functions = {node.name: node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}
    assert name in functions, f"{where}: no such test"
    # The test itself, the helpers it calls and the module constants it reads (e.g. a table of commands).
    used = {node.id for node in ast.walk(functions[name]) if isinstance(node, ast.Name)}
    constants = {
        target.id: node for node in ast.parse(source).body if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name)
    }  # fmt: skip
    pieces = [functions[name], *(functions[n] for n in used & set(functions))]
    pieces += [constants[n] for n in used & set(constants)]
    code = "".join(ast.get_source_segment(source, piece) for piece in pieces)
    assert evidence in code, f"{where} does not show {evidence!r}"
