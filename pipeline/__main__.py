"""`python -m pipeline <command>`: the pipeline's tools outside DVC.

A command is one function that adds its subparser and sets ``handler``, plus one entry in ``COMMANDS``.
Handlers import their module when they run, so ``--help`` answers at once without loading torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.flows.stage import user_error
from pipeline.store.interrupts import Stopped, raise_on_stop_signals
from pipeline.layout import BACKBONE_DIR, COMPARE_DIR

Subparsers = argparse._SubParsersAction  # argparse exposes no public name for add_subparsers()' result


def _run_command(commands: Subparsers, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """A subcommand that reads one finished run: ``run_dir`` and ``--backbone`` come with it."""
    parser = commands.add_parser(name, help=summary, description=description)
    parser.add_argument(
        "run_dir", type=Path,
        help="results/adapt/<target>-<method>/seed<seed>/k<k>/ or results/source/<task>/ "
        "(export: or results/distill/)",
    )
    parser.add_argument(
        "--backbone", type=Path, default=None, metavar="DIR",
        help="materialised backbone folder the run was trained on (default: models/backbone)",
    )
    return parser


def _backbone_dir(args: argparse.Namespace) -> Path:
    return args.backbone or BACKBONE_DIR


def export_command(commands: Subparsers) -> None:
    """`export <run_dir> <out_dir> [--multitask]`: a run's prompt as a PEFT adapter folder."""
    parser = _run_command(
        commands, "export", "write a run's prompt (or results/distill) as a PEFT adapter folder",
        "Export results/adapt/<target>-<method>/seed<seed>/k<k>/ or results/source/<task>/ as a prompt-tuning "
        "adapter, or results/distill/ (every source task's factors) as a MultitaskPromptTuning adapter: a folder "
        "that peft.PeftModel.from_pretrained(base_model, OUT_DIR) loads.",
    )
    parser.add_argument("out_dir", type=Path, help="adapter folder to write (replaced as a whole, atomically)")
    parser.add_argument(
        "--multitask", action="store_true",
        help="write an mpt or mpt_full run as a one-task MultitaskPromptTuning adapter (P and its factor L) instead "
        "of a prompt-tuning adapter holding P ∘ L; results/distill always exports this way",
    )

    def handle(args: argparse.Namespace) -> None:
        from pipeline.cli.export import export_run
        from pipeline.cli.export_mpt import export_multitask, is_distill_folder

        if args.multitask or is_distill_folder(args.run_dir):
            multitask = export_multitask(args.run_dir, args.out_dir, _backbone_dir(args))
            print(f"exported {multitask.path} ({multitask.summary()}) as MultitaskPromptTuning -> {args.out_dir}")
            return
        artifact = export_run(args.run_dir, args.out_dir, _backbone_dir(args))
        shape = " x ".join(map(str, artifact.prompt.shape))
        print(f"exported {artifact.path} ({artifact.task.name}, {artifact.method}, {shape}) -> {args.out_dir}")

    parser.set_defaults(handler=handle)


def predict_command(commands: Subparsers) -> None:
    """`predict <run_dir> [--text TEXT ...] [--file FILE]`: labels for raw texts, one line each."""
    parser = _run_command(
        commands, "predict", "label texts with a run's prompt: <label> TAB <probability> TAB <text>",
        "Fill each text into the run's task template and print its best label, that label's "
        "probability and the text (first 60 characters), one line per input, in input order.",
    )
    parser.add_argument(
        "--text", action="extend", nargs="+", default=[], metavar="TEXT", help="texts to label (repeatable)"
    )
    parser.add_argument("--file", type=Path, help="a UTF-8 file with one text per line (empty lines skipped)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="texts per forward pass (default 32)")
    parser.add_argument(
        "--max-length", type=int, default=None, metavar="N",
        help="input tokens kept (the end); default: model.max_length of params.yaml",
    )

    def handle(args: argparse.Namespace) -> None:
        from pipeline.cli.predict import run_predict

        predictions = run_predict(
            args.run_dir, args.text, args.file, args.batch_size, _backbone_dir(args), args.max_length
        )
        print("\n".join(p.line() for p in predictions))

    parser.set_defaults(handler=handle)


def compare_command(commands: Subparsers) -> None:
    """`compare [--from FILE] [--out DIR] [--metric NAME]`: one table and chart across DVC experiments."""
    parser = commands.add_parser(
        "compare", help="compare DVC experiments: a table (markdown, CSV) and a chart of the report metrics",
        description="Read `dvc exp show --json` (or a saved copy) and write compare.md, compare.csv and "
        "compare.png: a row per experiment with its changed params and the report's metric per target and method.",
    )
    parser.add_argument("--from", dest="source", type=Path, metavar="FILE",
                        help="saved `dvc exp show --json` output (default: run it here)")
    parser.add_argument("--out", type=Path, default=COMPARE_DIR, metavar="DIR",
                        help="folder to write (default: reports/compare)")
    parser.add_argument("--metric", default="accuracy", metavar="NAME",
                        help="report metric to compare: accuracy (default), macro_f1, mcc, accuracy_vs_pt")

    def handle(args: argparse.Namespace) -> None:
        from pipeline.cli.compare import compare

        print(compare(args.source, args.out, args.metric))

    parser.set_defaults(handler=handle)


def study_command(commands: Subparsers) -> None:
    """`study <file> [--phase NAME ...]`: run a study's phases in a scratch worktree, reports to its out folder."""
    parser = commands.add_parser(
        "study", help="run a study (phases of params overrides and adapt stages) and keep each phase's report",
        description="Run each phase of a study file (e.g. studies/transfer-study.yaml) in .study/<name>/, a git "
        "worktree of HEAD sharing this repository's DVC cache: set its params, `dvc repro` its adapt stages seed "
        "by seed, then the report, copied to <out>/<phase>/. A finished phase is skipped; a cut one resumes.",
    )
    parser.add_argument("study_file", type=Path, help="the study file (YAML)")
    parser.add_argument("--phase", action="extend", nargs="+", default=[], metavar="NAME",
                        help="run only these phases (default: all, in the file's order)")
    parser.add_argument("--report-finished", action="store_true",
                        help="train nothing: report a study that was stopped, its unfinished phase over the seeds "
                        "at which all its runs finished (marked cut short; running the study again completes it)")

    def handle(args: argparse.Namespace) -> None:
        from pipeline.cli.study import report_finished, run_study
        from pipeline.cli.study_report import write_study_report

        log = lambda line: print(line, flush=True)  # noqa: E731
        if args.report_finished:
            report_finished(args.study_file, Path.cwd(), log=log)
        else:
            run_study(args.study_file, Path.cwd(), tuple(args.phase), log=log)
        print(f"study report -> {write_study_report(args.study_file, Path.cwd())}")

    parser.set_defaults(handler=handle)


def fanout_command(commands: Subparsers) -> None:
    """`fanout --jobs N --by seed|target [--threads T]`: the adapt@ runs on N parallel DVC experiments, collected."""
    parser = commands.add_parser(
        "fanout", help="run the adapt runs as N parallel DVC experiments (one per seed or target), then collect",
        description="Run the shared stages once, queue one DVC experiment per seed (or target) that trains its "
        "adapt@ runs, run the queue on N workers (dvc exp run --run-all -j N), then `dvc repro`: DVC's run-cache "
        "restores every run and only the report runs. numerics.threads becomes cores // N in params.yaml (it "
        "fixes the bytes, so say so if it changes).",
    )
    parser.add_argument("--jobs", "-j", type=int, default=2, metavar="N", help="parallel workers (default 2)")
    parser.add_argument("--by", choices=["seed", "target"], default="seed",
                        help="one experiment per entry of seeds (default) or of target_tasks")
    parser.add_argument("--threads", type=int, default=None, metavar="T",
                        help="numerics.threads for every stage (default: the cores // N, at least 1)")

    def handle(args: argparse.Namespace) -> None:
        from pipeline.cli.fanout import fanout

        fanout(Path.cwd(), args.jobs, args.by, args.threads, log=lambda line: print(line, flush=True))

    parser.set_defaults(handler=handle)


COMMANDS: list[Callable[[Subparsers], None]] = [
    export_command,
    predict_command,
    compare_command,
    study_command,
    fanout_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error is one line ``error: ...`` on stderr and exit status 1, no traceback."""
    # Set before a handler imports torch: busy-waiting OpenMP threads crawl on shared cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    raise_on_stop_signals()  # SIGTERM too unwinds: an export's temporary folder is removed, never half-swapped
    try:
        args.handler(args)
    except KeyboardInterrupt as exc:  # Ctrl-C is how a long `study` is stopped: a line, not a traceback
        print(f"interrupted: python -m pipeline {args.command} (run it again to resume)", file=sys.stderr)
        return exc.exit_status if isinstance(exc, Stopped) else 130
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise  # a bug: keep the traceback
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
