"""Training checkpoints that survive a killed stage: safetensors + JSON, written atomically.

DVC deletes a stage's outputs before it reruns it, so checkpoints live outside them, under
``.checkpoints/<stage>/``. A checkpoint made for other inputs (its fingerprint differs) is ignored.
On CPU a resumed run ends with the same bytes as an uninterrupted one: the batch stream is seeded and
replayed, and the optimizer and schedule state are restored exactly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pipeline.store.atomic import atomic_dir
from pipeline.training.selection import DevCurve

TENSORS, STATE = "state.safetensors", "state.json"


def fingerprint(payload: Any) -> str:
    """A short hash of everything that makes a run what it is (params, backbone, data hashes)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpointer:
    """Save and restore (module, optimizer, schedule, step, history, and the dev curve with its kept best state)
    every ``every`` steps."""

    def __init__(self, folder: Path, every: int, run_fingerprint: str) -> None:
        self.folder, self.every, self.run_fingerprint = Path(folder), every, run_fingerprint

    def due(self, step: int, total: int) -> bool:
        """Save after step ``step`` (0-based) every ``every`` steps and after the last one."""
        return (step + 1) % self.every == 0 or step + 1 == total

    def save(
        self, steps_done: int, module: torch.nn.Module, optimizer, schedule, history: list[dict],
        dev: DevCurve | None = None,
    ) -> None:
        tensors = {f"module.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        optim = optimizer.state_dict()
        for index, state in optim["state"].items():
            for name, value in state.items():
                tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        state = {
            "fingerprint": self.run_fingerprint,
            "steps_done": steps_done,
            "history": history,
            "param_groups": optim["param_groups"],
            "schedule": schedule.state_dict(),
        }
        if dev is not None:  # the dev curve so far and the kept best state: a resumed run selects the same step
            state["dev"], kept = dev.state()
            tensors.update({f"dev.{k}": v for k, v in kept.items()})
        with atomic_dir(self.folder) as tmp:
            save_file(tensors, str(tmp / TENSORS))
            (tmp / STATE).write_text(json.dumps(state, sort_keys=True), encoding="utf-8")

    def restore(
        self, module: torch.nn.Module, optimizer, schedule, dev: DevCurve | None = None
    ) -> tuple[int, list[dict]]:
        """Load the last checkpoint into the objects; return (steps done, history) or (0, []) if none fits."""
        try:
            state = json.loads((self.folder / STATE).read_text(encoding="utf-8"))
            tensors = load_file(str(self.folder / TENSORS))
        except (OSError, ValueError, SafetensorError):
            return 0, []  # none, or one cut short by a kill mid-write (atomic_dir makes that rare)
        if state.get("fingerprint") != self.run_fingerprint:
            return 0, []
        module.load_state_dict({k[len("module.") :]: v for k, v in tensors.items() if k.startswith("module.")})
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                per_param.setdefault(int(index), {})[name] = value
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in state["param_groups"]]
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
        schedule.load_state_dict(state["schedule"])
        if dev is not None:
            dev.load(state.get("dev", {}), {k[len("dev.") :]: v for k, v in tensors.items() if k.startswith("dev.")})
        return state["steps_done"], state["history"]

    def clear(self) -> None:
        """Remove the checkpoint once the stage's outputs are written."""
        shutil.rmtree(self.folder, ignore_errors=True)
