"""Ctrl-C and SIGTERM end a command cleanly: no temporary file, folder or child process left.

While a command runs, both signals raise :class:`Stopped` (a ``KeyboardInterrupt``) in the
main thread, so every ``finally`` and ``with`` on the way out runs: temporary files are
removed (``fileio.atomic_path``), the Lava runner's process group is killed
(``exporters/loihi/lava_host.py``), temporary folders go. The signal is also remembered, and
``atomic_path`` checks it before it renames a finished file into place, and the CLI once more
when the command returns: an interrupt that landed in a finaliser (where Python can only print
"Exception ignored ..." and go on; that print is silenced) or that a library swallowed still
stops the file from being written and ends the command as interrupted. Training installs the gentler
:class:`StopFlag` (finish the step, save the state) on top of this one, for the fit loop only.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

_pending: list[int] = []
_active: list[int] = [0]  # how many stoppable() blocks are open (check() acts only inside)


class Stopped(KeyboardInterrupt):
    """The command was stopped by a signal (exit 128 + signal number)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _handle(signum: int, frame) -> None:
    _pending.append(signum)
    raise Stopped(signum)


def received() -> int | None:
    """The last signal that stopped the command, if one did (click turns the interrupt into
    its own Abort on the way up, so the CLI asks here)."""
    return _pending[-1] if _pending else None


def check() -> None:
    """Raise :class:`Stopped` if a signal arrived inside the open ``stoppable()`` block and was
    swallowed on its way up (outside one, neurokd handles no signals: nothing to check)."""
    if _pending and _active[0]:
        raise Stopped(_pending[-1])


@contextlib.contextmanager
def stoppable() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Stopped` inside the block (main thread only)."""
    _pending.clear()
    try:
        previous = {s: signal.signal(s, _handle) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave the handlers alone
        yield
        return
    hook = sys.unraisablehook
    sys.unraisablehook = _quiet_if_stopped(hook)
    _active[0] += 1
    try:
        yield
    finally:
        _active[0] -= 1
        sys.unraisablehook = hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _quiet_if_stopped(hook):
    """An interrupt that lands in a finaliser (a ``__del__``, a weakref callback) cannot
    propagate: Python would print "Exception ignored in ..." with a traceback and go on. The
    signal is remembered (``_pending``), so the command still stops at the next ``check``;
    only the traceback is dropped."""
    def unraisable(info) -> None:
        if isinstance(info.exc_value, Stopped):
            return
        hook(info)
    return unraisable


class StopFlag:
    """Set by SIGINT / SIGTERM; the loop finishes its step, saves and stops. A second SIGINT
    interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        try:
            previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: no handlers, Ctrl-C behaves as usual
            yield self
            return
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
