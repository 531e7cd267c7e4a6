"""A study: several phases of the pipeline, each a set of params overrides and the adapt stages to run, in a
scratch git worktree that shares this repository's DVC cache; each phase's report is copied to the study's folder.

The study file (YAML) holds ``name``, ``out`` (the folder the reports go to), optional ``include`` (params files,
such as ``backbones/gemma-3-270m.yaml``, whose top-level sections replace params.yaml's for every phase), ``base``
(dotted params keys set for every phase, after ``include``) and ``phases``: a list of ``{name, set, run}`` where ``set`` holds the phase's own overrides
and ``run`` lists ``{targets, methods, seeds}`` blocks naming the ``adapt@`` stages to run. Stages run one
``dvc repro`` each, seed first, so a study cut short has every target and method at its first seeds.

Why a worktree per study: the phases' params never touch the user's workspace, and each phase's report is
copied out before the next phase's params replace it (DVC's run-cache restores a stage already run with the same
deps and params, so switching params back and forth does not recompute). A phase whose report is in ``out/<phase>/`` with the same overrides, commit
and stages is skipped; a phase run in part resumes where it stopped (DVC skips the finished stages).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.cli.dvc_run import dvc, dvc_env
from pipeline.config.schema import Params
from pipeline.errors import PipelineError
from pipeline.layout import REPORTS_DIR, RESULTS_DIR, SOURCES_DIR, stage_name

PHASE_FILE = "phase.json"  # in out/<phase>/: what the phase ran, so a rerun of the study skips it


@dataclass(frozen=True)
class Phase:
    name: str
    overrides: dict[str, Any]  # base and phase ``set``, dotted keys
    stages: tuple[str, ...]  # adapt@ stages in run order
    targets: tuple[str, ...] = ()  # the targets its run blocks name

    def record(self, commit: str) -> dict[str, Any]:
        return {"phase": self.name, "commit": commit, "set": self.overrides, "stages": list(self.stages)}


@dataclass(frozen=True)
class Study:
    name: str
    out: Path
    workspace: Path
    phases: tuple[Phase, ...]


def load_study(path: Path, root: Path) -> Study:
    """Read and check a study file; a problem is one line naming the file and the key."""
    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineError(f"{path}: cannot read the study file ({exc.__class__.__name__})") from exc
    if not isinstance(spec, dict):
        raise PipelineError(f"{path}: a study file is a mapping with keys name, out, base, phases")
    unknown = sorted(set(spec) - {"name", "out", "include", "base", "phases"})
    if unknown:
        raise PipelineError(f"{path}: unknown key {unknown[0]!r}; allowed: name, out, include, base, phases")
    name = _text(spec, "name", path)
    base = spec.get("base") or {}
    if not isinstance(base, dict):
        raise PipelineError(f"{path}: base must map dotted params keys to values")
    base = {**included_sections(spec.get("include") or [], root, path), **base}
    phases, seen = [], set()
    for index, entry in enumerate(spec.get("phases") or []):
        where = f"{path}: phases[{index}]"
        if not isinstance(entry, dict) or set(entry) - {"name", "set", "run"}:
            raise PipelineError(f"{where} must be a mapping with keys name, set, run")
        phase_name = _text(entry, "name", where)
        if phase_name in seen or "/" in phase_name:
            raise PipelineError(f"{where}: name {phase_name!r} is repeated or holds a '/'")
        seen.add(phase_name)
        runs = entry.get("run") or []
        stages = planned_stages(runs, where)
        # The report reads every (target, method, seed) of adapt.methods x seeds: the phase's own runs.
        derived = {"adapt.methods": _union(runs, "methods"), "seeds": sorted(set(_union(runs, "seeds")))}
        overrides = {**base, **(entry.get("set") or {}), **derived}
        phases.append(Phase(phase_name, overrides, stages, tuple(_union(runs, "targets"))))
    if not phases:
        raise PipelineError(f"{path}: phases is empty; a study runs at least one phase")
    return Study(name, root / _text(spec, "out", path), root / ".study" / name, tuple(phases))


def included_sections(files: list[str], root: Path, where: object) -> dict[str, Any]:
    """The top-level sections of the params files a study includes (paths relative to the repository root), later
    files over earlier ones: a whole block such as ``backbone:`` is shared with the default run's files, not copied."""
    if not isinstance(files, list) or not all(isinstance(name, str) and name for name in files):
        raise PipelineError(f"{where}: include must be a list of params files (paths from the repository root)")
    sections: dict[str, Any] = {}
    for name in files:
        try:
            content = yaml.safe_load((root / name).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise PipelineError(f"{where}: include {name}: cannot read it ({exc.__class__.__name__})") from exc
        if not isinstance(content, dict) or not content:
            raise PipelineError(f"{where}: include {name}: not a mapping of params sections")
        sections.update(content)
    return sections


def _union(blocks: list[dict[str, Any]], key: str) -> list[Any]:
    return list(dict.fromkeys(value for block in blocks for value in block[key]))


def _text(node: dict[str, Any], key: str, where: object) -> str:
    value = node.get(key)
    if not isinstance(value, str) or not value:
        raise PipelineError(f"{where}: {key} must be a non-empty string")
    return value


def planned_stages(blocks: list[dict[str, Any]], where: str) -> tuple[str, ...]:
    """The adapt@ stages of ``run`` blocks, block by block and in a block seed first (then target, method), without
    repeats: a study cut short has the first block's targets and methods at its first seeds."""
    order: dict[str, tuple[int, int, int, int]] = {}
    for b, block in enumerate(blocks):
        if not isinstance(block, dict) or set(block) != {"targets", "methods", "seeds"}:
            raise PipelineError(f"{where}.run[{b}] must be a mapping with keys targets, methods, seeds")
        for t, target in enumerate(block["targets"]):
            for m, method in enumerate(block["methods"]):
                for seed in block["seeds"]:
                    order.setdefault(stage_name(target, method, int(seed)), (b, int(seed), t, m))
    return tuple(sorted(order, key=order.__getitem__))


def with_overrides(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each dotted key of ``overrides`` set (``tasks.sms_spam.k_shot``); parents must exist."""
    result = copy.deepcopy(params)
    for dotted, value in overrides.items():
        *parents, leaf = str(dotted).split(".")
        node = result
        for i, part in enumerate(parents):
            if not isinstance(node.get(part), dict):
                raise PipelineError(f"study: cannot set {dotted}: params.yaml has no section {'.'.join(parents[:i + 1])}")
            node = node[part]
        node[leaf] = copy.deepcopy(value)
    return result


def run_study(study_file: Path, root: Path, only: tuple[str, ...] = (), log=print) -> Path:
    """Run the study's phases (``only``: these phases) and return its output folder."""
    study = load_study(study_file, root)
    names = [phase.name for phase in study.phases]
    missing = [name for name in only if name not in names]
    if missing:
        raise PipelineError(f"{study_file}: no phase named {missing[0]!r}; phases: {', '.join(names)}")
    commit = _workspace(root, study.workspace)
    base_params = yaml.safe_load(_git(study.workspace, "show", "HEAD:params.yaml"))
    for phase in study.phases:
        if only and phase.name not in only:
            continue
        params = with_overrides(base_params, phase.overrides)
        try:
            checked = Params.from_dict(params)
        except PipelineError as exc:
            raise PipelineError(f"{study_file}: phase {phase.name}: {exc}") from exc
        unknown = sorted(set(phase.targets) - set(checked.target_tasks))
        if unknown:
            raise PipelineError(
                f"{study_file}: phase {phase.name} runs {unknown[0]!r}, which is not in target_tasks "
                f"({', '.join(checked.target_tasks)}); add it to base.target_tasks"
            )
        out = study.out / phase.name
        done = out / PHASE_FILE
        record = json.loads(done.read_text(encoding="utf-8")) if done.is_file() else {}
        if record.get("set") == phase.overrides and record.get("commit") == commit and not record.get("partial"):
            log(f"phase {phase.name}: done at {commit[:9]} ({done}), skipped")
            continue
        _run_phase(study, phase, params, commit, log)
    return study.out


def report_finished(study_file: Path, root: Path, log=print) -> Path:
    """Report, without training, the runs a study cut short has finished: the first unfinished phase is reported
    over the seeds at which every one of its targets and methods has finished (its phase.json says ``partial``,
    and running the study again completes it); return the study's output folder."""
    study = load_study(study_file, root)
    if not (study.workspace / ".git").exists():
        raise PipelineError(f"{study_file}: nothing to report: the study has not run ({study.workspace} is missing)")
    commit = _git(study.workspace, "rev-parse", "HEAD").strip()
    base_params = yaml.safe_load(_git(study.workspace, "show", "HEAD:params.yaml"))
    for phase in study.phases:
        done = study.out / phase.name / PHASE_FILE
        record = json.loads(done.read_text(encoding="utf-8")) if done.is_file() else {}
        if record.get("set") == phase.overrides and record.get("commit") == commit and not record.get("partial"):
            continue
        params = with_overrides(base_params, phase.overrides)
        _write_params(study.workspace, params)
        seeds = complete_seeds(phase.stages, _stale_stages(study.workspace, phase.stages))
        if not seeds:
            log(f"phase {phase.name}: no seed has all its runs finished yet; nothing to report")
            break
        runs = tuple(stage for stage in phase.stages if _seed_of(stage) in seeds)
        partial = {"seeds": seeds, "runs": len(runs), "planned": len(phase.stages)}
        try:
            _report_phase(study, phase, with_overrides(params, {"seeds": seeds}), commit, log,
                          {"partial": partial, "stages": list(runs)})
        finally:
            _write_params(study.workspace, params)  # the phase's own params again, so that the study resumes it
        break
    return study.out


def _seed_of(stage: str) -> int:
    return int(stage.rsplit("-", 1)[1])  # adapt@<target>-<method>-<seed>


def complete_seeds(stages: tuple[str, ...], stale: set[str]) -> list[int]:
    """The seeds at which none of ``stages`` is stale (every target and method of the seed finished)."""
    seeds = sorted({_seed_of(stage) for stage in stages})
    return [seed for seed in seeds if not any(_seed_of(s) == seed and s in stale for s in stages)]


def _stale_stages(workspace: Path, stages: tuple[str, ...]) -> set[str]:
    """Those of ``stages`` that are not up to date with the workspace's params (never run, cut short, or run with
    other params), as ``dvc status`` says for the stages themselves."""
    result = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", *stages], cwd=workspace, env=dvc_env(),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"dvc status failed in {workspace}: {result.stderr.strip().splitlines()[-1:]} "
                            "(is the study still running? stop it first)")
    return set(json.loads(result.stdout or "{}"))


def _write_params(workspace: Path, params: dict[str, Any]) -> None:
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def _run_phase(study: Study, phase: Phase, params: dict[str, Any], commit: str, log) -> None:
    workspace = study.workspace
    _write_params(workspace, params)
    started = time.time()
    for i, stage in enumerate(phase.stages, 1):
        log(f"phase {phase.name}: [{i}/{len(phase.stages)}] dvc repro {stage}")
        dvc(workspace, "repro", stage)
    _report_phase(study, phase, params, commit, log, {"seconds": round(time.time() - started, 1)})


def _report_phase(study: Study, phase: Phase, params: dict[str, Any], commit: str, log, extra: dict[str, Any]) -> None:
    """Run the workspace's report stage under ``params`` and copy it, with the phase's record, to out/<phase>/."""
    workspace = study.workspace
    _write_params(workspace, params)
    log(f"phase {phase.name}: report")
    dvc(workspace, "repro", "--single-item", "report")
    out = study.out / phase.name
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(workspace / REPORTS_DIR, tmp)
    shutil.copy2(workspace / "params.yaml", tmp / "params.yaml")
    for name, rows in (("similarity.csv", prompt_similarity(workspace, params)),
                       ("source_zero_step.csv", source_zero_step(workspace, params))):
        if rows:
            write_rows(tmp / name, rows)
    record = {**phase.record(commit), **extra}
    (tmp / PHASE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"phase {phase.name}: report -> {out}")


def prompt_similarity(workspace: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Cosine similarity of each source teacher's prompt and each target's trained ``pt`` prompts (per k, averaged
    over seeds), both mean-pooled over their l rows as SPoT compares task prompts: which source resembles which
    target. Empty when the phase trained no pt prompt."""
    from pipeline.store.tensors import load_tensors  # torch: imported only once a phase has run

    def read_tensors(path: Path) -> dict:
        return load_tensors(path, "(the study's phase)")[0]

    rows = []
    sources = {name: read_tensors(workspace / SOURCES_DIR / name / "prompt.safetensors")["prompt"].mean(dim=0)
               for name in params["source_tasks"]}
    seeds = {f"seed{seed}" for seed in params["seeds"]} if "seeds" in params else None  # a report's seeds only
    for target in params["target_tasks"]:
        runs = sorted(run for run in (workspace / RESULTS_DIR / "adapt" / f"{target}-pt").glob("seed*/k*/params.safetensors")
                      if seeds is None or run.parent.parent.name in seeds)
        for k in sorted({run.parent.name for run in runs}):
            pooled = [read_tensors(run)["prompt"].mean(dim=0) for run in runs if run.parent.name == k]
            for name, source in sources.items():
                cosines = [cosine(source, prompt) for prompt in pooled]
                rows.append({"target": target, "k": k[1:], "source": name, "seeds": len(cosines),
                             "cosine": round(sum(cosines) / len(cosines), 6)})
    return rows


def source_zero_step(workspace: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Each source teacher's prompt on each target's dev split, untrained (spot scores them to pick its start;
    the score depends on neither seed nor k, so the first spot run of a target gives them). Empty without spot."""
    rows = []
    for target in params["target_tasks"]:
        found = sorted((workspace / RESULTS_DIR / "adapt" / f"{target}-spot").glob("seed*/k*/metrics.json"))
        if found:
            candidates = json.loads(found[0].read_text(encoding="utf-8")).get("spot_candidates", {})
            rows += [{"target": target, "source": name, "dev_accuracy": acc} for name, acc in candidates.items()]
    return rows


def cosine(a, b) -> float:
    return float((a @ b) / (a.norm() * b.norm()))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _workspace(root: Path, workspace: Path) -> str:
    """The study's git worktree (created at this repository's HEAD the first time), sharing the DVC cache."""
    if not (workspace / ".git").exists():
        workspace.parent.mkdir(parents=True, exist_ok=True)
        _git(root, "worktree", "add", "--detach", str(workspace), "HEAD")
        dvc(workspace, "config", "--local", "cache.dir", str((root / ".dvc" / "cache").resolve()))
    return _git(workspace, "rev-parse", "HEAD").strip()


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout
