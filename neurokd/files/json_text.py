"""JSON from an untrusted file or file field, depth-bounded: ``json.loads`` recurses once per
nesting level (a few KB of ``[[[[...`` end in a ``RecursionError``), and the readers walk what
comes back. Every failure is a :class:`~neurokd.errors.NeuroKDError` naming ``where``.

    >>> loads_bounded('{"a": [1, 2]}', "metrics.json")
    {'a': [1, 2]}
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import NeuroKDError

MAX_DEPTH = 64   # neurokd's own JSON nests 4 levels at most


def loads_bounded(text: str | bytes, where: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads(text)`` nested at most ``max_depth`` levels (NaN and Infinity are read as
    Python's json reads them: the readers check their numbers)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NeuroKDError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") \
                from None
    _check_depth(text, where, max_depth)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise NeuroKDError(f"{where}: not JSON ({str(exc).splitlines()[0][:160]})") from None
    except RecursionError:
        raise NeuroKDError(f"{where}: JSON nested too deeply") from None


def _check_depth(text: str, where: str, max_depth: int) -> None:
    """Refuse text whose brackets (outside strings) nest deeper than ``max_depth``, before
    any recursion: one regular-expression pass, strings skipped whole."""
    depth = 0
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > max_depth:
                raise NeuroKDError(f"{where}: JSON nested more than {max_depth} levels deep")
        elif char in "]}":
            depth -= 1


_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
