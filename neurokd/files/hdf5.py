"""An HDF5 file (a Loihi ``.net``, a ``.nir``) walked from its headers before any array is read.

HDF5 can point outside the file: a dataset may keep its bytes in another file (external
storage, e.g. ``/dev/urandom``), a virtual dataset maps other files, a soft link names another
object, an external link another file. neurokd writes none of these, so each is refused by
name: a file handed over must not make neurokd read whatever else is on the machine. The
arrays' sizes, as their headers declare them, are added up and checked against the memory
budget (``neurokd.files.budget``) before anything is read, so a 200 KB file that claims a
10**6 x 10**6 weight (compressed chunks of nothing) is refused with the size it would need.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import NeuroKDError
from ..text import first_line
from .budget import check_bytes

MAX_OBJECTS = 100_000   # groups and datasets: a file of millions of tiny objects is no network


def dataset_bytes(dataset) -> int:
    """What reading ``dataset`` allocates, from its header (Python ints: no overflow)."""
    return math.prod(int(d) for d in (dataset.shape or ())) * max(1, dataset.dtype.itemsize)


def check_hdf5_tree(handle, path: str | Path, factor: int = 2) -> int:
    """Refuse links, outside storage and complex values anywhere in the open file ``handle``;
    the total bytes of its datasets (refused if ``factor`` times that exceeds the memory
    budget)."""
    import h5py

    problems: list[str] = []
    complex_values: list[str] = []  # raised after the walk: h5py wraps what its callback raises
    damaged: list[str] = []
    total = objects = 0

    def visit(raw: bytes) -> bool | None:
        # The names as stored (h5py's visititems_links decodes them itself and fails on one
        # that is not UTF-8 as a SystemError); what fails here is noted, raised after the walk
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            damaged.append(f"an object named {raw[:80]!r}, not UTF-8 text")
            return True  # stops the walk
        try:
            return look(name, handle.get(name, getlink=True))
        except (RuntimeError, OSError, KeyError, ValueError, TypeError) as exc:
            damaged.append(f"{'/' + name!r}: {type(exc).__name__}: {first_line(exc)}")
            return True

    def look(name: str, link) -> None:
        nonlocal total, objects
        objects += 1
        if objects > MAX_OBJECTS:
            return True  # stops the walk (an exception raised here comes back wrapped)
        if isinstance(link, h5py.SoftLink):
            problems.append(f"/{name} is a soft link to {link.path}")
            return
        if isinstance(link, h5py.ExternalLink):
            problems.append(f"/{name} is an external link to {link.filename}")
            return
        item = handle.get(name)
        if isinstance(item, h5py.Dataset):
            if item.is_virtual:
                problems.append(f"dataset /{name} is virtual (maps other files)")
            elif item.id.get_create_plist().get_external_count() > 0:
                target = item.id.get_create_plist().get_external(0)[0]
                problems.append(f"dataset /{name} keeps its data outside the file "
                                f"(external storage in {target.decode(errors='replace')})")
            elif item.dtype.kind == "c":  # no network parameter is complex (NaN+NaNj passes
                # a finiteness check made on the real part)
                complex_values.append(f"dataset /{name} holds {item.dtype} values")
            total += dataset_bytes(item)

    handle.id.links.visit(visit)
    if damaged:
        raise NeuroKDError(f"{path}: a damaged HDF5 tree ({damaged[0]})")
    if objects > MAX_OBJECTS:
        raise NeuroKDError(f"{path}: holds more than {MAX_OBJECTS:,} HDF5 objects")
    if complex_values:
        raise NeuroKDError(f"{path}: {complex_values[0]}; network parameters are real numbers")
    if problems:
        raise NeuroKDError(f"{path}: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                      if len(problems) > 1 else "")
                           + "; neurokd reads self-contained files only")
    check_bytes(factor * total, f"{path}: reading its arrays")
    return total
