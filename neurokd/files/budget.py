"""How much memory a command may allocate for what it reads from files.

Sizes written in a file (a tensor's shape, an array header, a layer's width) are checked
against this budget before anything is allocated, so a 2 KB file that claims 10**11 elements
is refused with the size it would have needed instead of exhausting the machine. The budget
is ``--max-memory`` (``neurokd --max-memory 8G COMMAND``, or ``NEUROKD_MAX_MEMORY``), else 75%
of the memory the machine has available when the command starts.
"""

from __future__ import annotations

import os
import re

from ..errors import NeuroKDError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_override: int | None = None


def parse_size(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1000000"`` -> bytes."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not found:
        raise NeuroKDError(f"--max-memory must look like 8G, 512M or a number of bytes, not "
                           f"{text!r}")
    size = int(float(found.group(1)) * _UNITS[found.group(2).upper()])
    if size < 1:
        raise NeuroKDError(f"--max-memory must be at least one byte, not {text!r}")
    return size


def set_budget(text: str | None) -> None:
    global _override
    _override = None if text is None else parse_size(text)


def available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def budget() -> int:
    """The budget, never more than the process's own address-space limit (``ulimit -v``)
    leaves: past that an allocation fails whatever the machine has free."""
    if _override is not None:
        chosen = _override
    elif os.environ.get("NEUROKD_MAX_MEMORY"):
        chosen = parse_size(os.environ["NEUROKD_MAX_MEMORY"])
    else:
        chosen = int(0.75 * available_bytes())
    room = address_space_left()
    return chosen if room is None else max(0, min(chosen, room))


def address_space_left() -> int | None:
    """Bytes the process may still map under RLIMIT_AS (None: no limit)."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return None
    if limit == resource.RLIM_INFINITY or limit < 0:
        return None
    return limit - _mapped_bytes()


def _mapped_bytes() -> int:
    """The process's mapped address space now (VmSize)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def gib(size: int) -> str:
    return f"{size / (1 << 30):.2f} GiB" if size >= 1 << 28 else f"{size / (1 << 20):.1f} MiB"


def check_bytes(size: int, what: str) -> None:
    """Refuse ``what`` if it would need more than the budget."""
    limit = budget()
    if size > limit:
        room = address_space_left()
        why = "the process's address-space limit (ulimit -v) leaves" if room is not None and \
            room <= limit else "neurokd may use here (--max-memory)"
        raise NeuroKDError(f"{what} would need {gib(size)}, more than the {gib(limit)} {why}")
