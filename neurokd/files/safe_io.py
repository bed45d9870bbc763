"""Writers that never leave a half-written file: temporary name in the target folder, then rename.

An output goes into a folder that exists: a path whose folder is missing is refused (exit 2)
rather than created wherever the path points, a folder that cannot be written is exit 1. Run
folders are the exception the caller makes explicitly (:func:`make_folder`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import NeuroKDError, WriteError
from .paths import open_regular


def check_writable(target: str | Path, reads: Iterable[str | Path | None] = ()) -> Path:
    """Refuse ``target`` before any work is done: its folder must exist and take files,
    ``target`` itself must not be a folder, nor one of the files the command ``reads`` (an
    export written over its own checkpoint)."""
    target = Path(target)
    for source in reads:
        if source is not None and _same_file(target, Path(source)):
            raise NeuroKDError(f"cannot write {target}: the command reads that file; give "
                               "another output name")
    if target.is_dir():
        raise NeuroKDError(f"cannot write {target}: it is a folder; give a file name")
    parent = target.parent
    if not parent.is_dir():
        blocking = next((p for p in parent.parents if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise WriteError(f"cannot write {target}: {blocking} is a file, not a folder")
        raise NeuroKDError(f"cannot write {target}: there is no folder {parent} (create it "
                           "first; neurokd does not create folders for output files)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(f"cannot write {target}: no permission to write in {parent}")
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def read_small_text(path: str | Path, what: str, limit: int = 1 << 20) -> str:
    """A settings file's text: a regular file of at most ``limit`` bytes, UTF-8 (a path to
    /dev/zero or a multi-GB file is refused before it is read). A FIFO, a device or a folder
    is named and never waited on: the file is opened with ``O_NONBLOCK`` and the check is made
    again on the open descriptor (:func:`~neurokd.files.paths.open_regular`), so one swapped
    in after the first check is refused too."""
    path = Path(path)
    try:
        with open_regular(path, what, missing=f"{what} not found: {path}",
                          error=NeuroKDError) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise NeuroKDError(f"{what} {path} is {size:,} bytes; a settings file has at "
                                   f"most {limit:,}")
            data = handle.read(limit + 1)
        return data[:limit].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NeuroKDError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})") from None
    except OSError as exc:
        raise NeuroKDError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def make_folder(folder: str | Path) -> Path:
    """A run folder (and its parents), created on purpose."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"cannot create the folder {folder}: a file is in the way") from None
    except OSError as exc:
        raise WriteError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None
    return folder


def _remove_stale_temporaries(target: Path) -> None:
    """Temporaries of ``target`` left by a process that was killed outright (SIGKILL, power
    loss): their name carries the writer's pid, and a pid that no longer runs owns none."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        pid = stale.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            stale.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``."""
    from ..runtime.signals import check

    target = check_writable(target)
    _remove_stale_temporaries(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=target.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; a written file follows the umask
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        check()  # a signal some library swallowed on the way must not let the file land
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise WriteError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_atomic(target: str | Path, write: Callable[[Path], Any]) -> Path:
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def write_text(target: str | Path, text: str) -> Path:
    return write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(target: str | Path, data: Any) -> Path:
    """``data`` as strict JSON: a NaN or infinity (a figure that overflowed) is refused before
    anything is written, never written as the bare ``NaN``/``Infinity`` JSON readers reject."""
    try:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        raise NeuroKDError(f"cannot write {target}: {_non_finite(data) or 'a value'} is not a "
                           "finite number (an input's figures overflowed)") from None
    return write_text(target, text + "\n")


def _non_finite(data: Any, where: str = "") -> str | None:
    """Where in ``data`` the first NaN or infinity is (``layers[2].energy_pj``)."""
    if isinstance(data, float) and not math.isfinite(data):
        return where or "the value"
    items = data.items() if isinstance(data, dict) else enumerate(data) \
        if isinstance(data, list | tuple) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}[{key}]" if isinstance(key, int) else
                            f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None
