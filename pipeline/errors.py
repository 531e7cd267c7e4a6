"""User-facing errors: one line, names the key or file, no traceback."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem with the user's params, data or artifacts (not a bug in the pipeline).

    Stage scripts catch it, print ``error: <message>`` on one line and exit with status 1.
    The message must name the params key path (``tasks.trec.label_words``) or the file.
    """
