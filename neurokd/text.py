"""How neurokd words a number or a failure for a person: one function per concept, so a
percentage or an exception's message reads the same in every table, log line and error.

    >>> pct(0.975), pct(None)
    ('97.50%', '—')
    >>> first_line(ValueError("bad shape\\n  at layer 3")), first_line(ValueError(""))
    ('bad shape', 'ValueError')
"""

from __future__ import annotations

import math

MISSING = "—"


def pct(value: object, digits: int = 2, sign: bool = True) -> str:
    """A fraction as a percentage: ``0.975 -> "97.50%"``; ``MISSING`` for None, a non-number
    or a non-finite value (a figure read from a file may be any of them). ``sign=False``
    leaves out the ``%`` (a table whose header says it)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return MISSING
    return f"{100 * value:.{digits}f}" + ("%" if sign else "")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message, at most ``limit`` characters; the
    exception's type name when the message is empty (``str(exc).splitlines()[0]`` would raise
    an IndexError there, inside an error path)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


def describe(exc: BaseException, limit: int = 200) -> str:
    """``"TypeName: first line"`` (the type alone for an empty message): for a library's
    failure quoted inside neurokd's own message, where the type says whose failure it is."""
    line = first_line(exc, limit)
    return line if line == type(exc).__name__ else f"{type(exc).__name__}: {line}"
