"""Learning curves, params and final metrics of each training stage instance, logged with dvclive.

``dvclive/<stage>/`` (``@`` in the stage name becomes ``_``: ``dvclive/adapt_sms_spam-mpt-0/``) holds what
``dvclive.Live`` writes: ``params.yaml`` (the params sections the stage reads), ``metrics.json`` (the final
metrics and the last training step) and ``plots/metrics/train/<name>.tsv`` (the loss and its components per
step). dvc.yaml declares them as the stage's outputs, so ``dvc plots show`` and ``dvc plots diff`` draw the
curves and ``dvc exp show`` lists the metrics.

The files repeat byte for byte for the same params and seed: no timestamps, no wall time. dvclive never
talks to the network here (Studio is switched off) and needs no git repository.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.store.atomic import atomic_dir
from pipeline.errors import PipelineError
from pipeline.layout import DVCLIVE_DIR
from pipeline.config.load import section

CURVE_PREFIX = "train"  # curves are train/<component>.tsv; final metrics keep their own names (dev/..., test/...)
DECIMALS = 6  # of logged values: the curves stay readable and repeat exactly
# dvc_studio_client reads this before posting live metrics; set, it never opens a connection.
STUDIO_OFFLINE = "DVC_STUDIO_OFFLINE"


def live_dir(stage: str, root: Path = DVCLIVE_DIR) -> Path:
    """The folder of stage instance ``stage`` (``source@trec`` -> ``dvclive/source_trec``)."""
    return Path(root) / stage.replace("@", "_")


def read_sections(params: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The params a stage reads, as a nested mapping: dotted keys (``adapt.lr``) keep only that key.

    An optional key absent from params.yaml (``source_teachers``) is left out.
    """
    picked: dict[str, Any] = {}
    for key in keys:
        try:
            value = section(params, key)
        except PipelineError:
            continue
        *parents, leaf = key.split(".")
        node = picked
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return picked


def log_run(
    stage: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    history: list[dict[str, float]],
    root: Path = DVCLIVE_DIR,
    curves: dict[str, list[list[float]]] | None = None,
) -> Path:
    """Log one finished run to ``live_dir(stage)``, replacing that folder as a whole; return the folder.

    ``params``: the sections the stage reads (see :func:`read_sections`). ``metrics``: the stage's final
    metrics; number leaves are logged under their key path (``test/accuracy``), other values are skipped.
    ``history``: one record per training step with ``step`` and the loss components, as the training loop
    returns it (empty for a teacher imported rather than trained: its curve file then has a header only).
    ``curves``: further curves by name, ``{"dev/k16/accuracy": [[step, value], ...]}``, each logged at its own steps.
    """
    from dvclive import Live  # imported here: it pulls in dvc, which only the training stages need

    folder = live_dir(stage, root).resolve()  # absolute: dvclive runs from a scratch folder
    with tempfile.TemporaryDirectory(prefix="dvclive-") as scratch, _detached(Path(scratch)):
        live = Live(str(Path(scratch) / "run"), dvcyaml=False, save_dvc_exp=False)
        live.log_params(params)
        # Before the training curves, so that metrics.json's "step" stays the last training step.
        for name in sorted(curves or {}):
            for step, value in curves[name]:
                live.step = int(step)
                live.log_metric(name, _rounded(value), timestamp=False)
        for record in history:
            live.step = int(record["step"])
            # Sorted: a record restored from a checkpoint (JSON, sorted keys) must log in the same order as a
            # fresh one, or dvclive's metrics.json would differ byte for byte after a resume.
            for name, value in sorted(record.items()):
                if name != "step":
                    live.log_metric(f"{CURVE_PREFIX}/{name}", _rounded(value), timestamp=False)
        if not history:
            _empty_curve(Path(live.plots_dir))
        for name, value in _number_leaves(metrics):
            live.log_metric(name, _rounded(value), timestamp=False, plot=False)
        live.end()
        with atomic_dir(folder) as tmp:
            shutil.copytree(live.dir, tmp, dirs_exist_ok=True)
            _keep_ignore_files(folder, Path(tmp))
    return folder


def _keep_ignore_files(old: Path, new: Path) -> None:
    """Carry the old folder's .gitignore files into the new one. DVC lists the cached files of ``dvclive/<stage>/``
    there; `dvc repro` writes them again after the stage, but a stage run by hand must not leave its logs
    looking untracked to git."""
    if old.is_dir():
        for ignore in old.rglob(".gitignore"):
            target = new / ignore.relative_to(old)
            if target.parent.is_dir():
                shutil.copy2(ignore, target)


@contextmanager
def _detached(scratch: Path) -> Iterator[None]:
    """Run dvclive in ``scratch``, outside any repository, with Studio off.

    dvclive looks for a DVC/git repository from the working directory. It needs none here (dvc.yaml tracks its
    files as stage outputs), and with one it may stage files under `dvc exp run` or, in dvclive 3.49, fail in
    a git repository without commits (`git init; dvc init; dvc repro`). Writing into a scratch folder also lets
    the finished folder replace the old one in one rename, so a killed stage leaves the old one whole.
    """
    cwd, offline = Path.cwd(), os.environ.get(STUDIO_OFFLINE)
    os.environ[STUDIO_OFFLINE] = "true"  # whatever the user's DVC config or environment says
    os.chdir(scratch)
    try:
        yield
    finally:
        os.chdir(cwd)
        if offline is None:
            del os.environ[STUDIO_OFFLINE]
        else:
            os.environ[STUDIO_OFFLINE] = offline


def _empty_curve(plots_dir: Path) -> None:
    """The loss curve of a run with no training steps: dvclive's TSV layout with the header only.

    dvc.yaml declares the curves folder as an output, so it must exist even when there is nothing to draw.
    """
    path = plots_dir / "metrics" / CURVE_PREFIX / "loss.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("step\tloss\n", encoding="utf-8")


def _number_leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(``a/b/c``, value) for every int or float leaf of nested mappings, in sorted key order."""
    if isinstance(node, dict):
        for key in sorted(node):
            yield from _number_leaves(node[key], f"{prefix}{key}/")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield prefix.rstrip("/"), node


def _rounded(value: float) -> float:
    return value if isinstance(value, int) else round(value, DECIMALS)  # nan/inf pass through; dvclive logs them
