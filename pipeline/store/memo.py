"""A number several stages compute alike, computed once and read back by the others: a memo keyed by content.

A memo's key names everything its value is computed from (the rows, the backbone, the settings, the library
versions and this package's own source), so a hit gives exactly what a miss would compute. The stages that read
one still depend, in dvc.yaml, on every input the key names, so DVC's graph stays true: a memo saves time, never
changes an output. Memos live under ``.checkpoints/memo/`` (layout.MEMO_DIR): outside every stage's outputs,
which DVC hashes, and ignored by git and DVC; deleting the folder costs only the recomputation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.store.atomic import write_json

PACKAGE = Path(__file__).resolve().parents[1]  # pipeline/


@lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 over every .py file of the pipeline package: a code change (say, in the scoring) voids every memo."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def memo_key(payload: dict[str, Any]) -> str:
    """The file name of ``payload``'s memo: a hash of it (JSON, sorted keys) and of this package's source."""
    text = json.dumps({"payload": payload, "source": source_digest()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def remembered(folder: Path, payload: dict[str, Any], compute: Callable[[], float]) -> float:
    """``compute()``, or the value an earlier call with an equal ``payload`` stored in ``folder``.

    ``payload`` must name every input of ``compute`` (hash long ones); the payload is stored beside the value so
    a reader can see what a memo is of. An unreadable memo is computed again and replaced.
    """
    path = Path(folder) / f"{memo_key(payload)}.json"
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["value"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or one cut short: compute it
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"value": value, "payload": payload})  # atomic: a concurrent reader sees all of it or none
    return value
