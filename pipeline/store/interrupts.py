"""SIGTERM and Ctrl-C (SIGINT) as an exception that unwinds a stage cleanly, held off while outputs are swapped in.

By default SIGTERM ends a Python process where it stands: the temporary siblings of atomic writes stay behind and a
folder swap may stop between its two renames. Raised as :class:`Stopped` instead, the ``finally`` blocks of the
atomic writes remove their temporaries, the training loop's last checkpoint stays as it was written, and the
stage exits with one line and status 128 + the signal number (143 for SIGTERM, 130 for SIGINT). A signal that
arrives inside :func:`held_off` (the renames of a swap, the files of one run) is raised when the block ends, so
that either all of it happens or none of it. Torch-free: store/atomic.py uses it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_holding = 0  # depth of nested held_off blocks (signal handlers only ever run in the main thread)
_pending: int | None = None  # a stop signal that arrived while held off


class Stopped(KeyboardInterrupt):
    """The process was asked to stop by ``signum``; a KeyboardInterrupt, so code that handles Ctrl-C handles it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)

    @property
    def exit_status(self) -> int:
        """What a shell reports for a process killed by the signal (143, 130), so callers see the same status."""
        return 128 + self.signum


def raise_on_stop_signals() -> None:
    """From now on SIGTERM and SIGINT raise :class:`Stopped` in this process's main thread.

    A signal that is ignored stays ignored: a job started with ``nohup … &`` from a non-interactive shell
    ignores SIGINT on purpose.
    """
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_stop_signal)


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _holding:
        _pending = signum
        return
    raise Stopped(signum)


@contextmanager
def held_off() -> Iterator[None]:
    """Run the block to its end even if a stop signal arrives (once :func:`raise_on_stop_signals` is on); the
    signal is raised as :class:`Stopped` right after the block. SIGKILL cannot be held off: see store/atomic.py."""
    global _holding, _pending
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
        if not _holding and _pending is not None:
            signum, _pending = _pending, None
            raise Stopped(signum)
