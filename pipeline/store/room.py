"""A write that failed for lack of room (a full disk, a file-size limit, a quota) as one line naming the file.

Such a failure arrives in several shapes: ``OSError`` with an errno from Python's own writes and from pyarrow
(``datasets``), and a ``SafetensorError`` whose message ends ``(os error 27)`` from safetensors' Rust writer. This
module recognises all of them, so that every stage reports it the same way. Torch-free, like store/atomic.py.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from pipeline.errors import PipelineError

# What each errno means to the user, and what to do about it.
ROOM_ERRNOS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EFBIG: "file too large for the file-size limit (`ulimit -f`); raise the limit",
    errno.EDQUOT: "the disk quota is exceeded; free some space",
}
# "(os error 28)" from Rust's io::Error (safetensors), "[Errno 28]" from a re-raised Python OSError's text.
_ERRNO_IN_TEXT = re.compile(r"\(os error (\d+)\)|\[Errno (\d+)\]")


class OutOfRoom(PipelineError):
    """A write of ``path`` failed for lack of room; whatever ``path`` held before is unchanged."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: not written: {reason}, then rerun (what was there before is unchanged)")


def room_reason(exc: BaseException) -> str | None:
    """What ran out, if ``exc`` (or an exception it was raised from or during) is a write that found no room."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = current.errno if isinstance(current, OSError) else _errno_in_text(str(current))
        if code in ROOM_ERRNOS:
            return ROOM_ERRNOS[code]
        current = current.__cause__ or current.__context__
    return None


def _errno_in_text(text: str) -> int | None:
    match = _ERRNO_IN_TEXT.search(text)
    return int(match.group(1) or match.group(2)) if match else None
