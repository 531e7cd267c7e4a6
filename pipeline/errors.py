"""User-facing errors: one line, names the key or file, no traceback."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem with the user's params, data or artifacts (not a bug in the pipeline).

    Stage scripts catch it, print ``error: <message>`` on one line and exit with status 1.
    The message must name the params key path (``tasks.trec.label_words``) or the file.
    """


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for one-line errors."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
