"""Paths read out of a data folder's files stay inside it; only regular files are opened.

A data set's own files name other files (DVS Gesture's ``trials_to_train.txt`` lists the
recordings to read). Those names come with the download, not from the user, so
:func:`inside` resolves them in the folder the list lies in and refuses an absolute path, a
``..`` that climbs out, or a link that points out, naming the list and the line: a tampered
list cannot make neurokd read (and train on) a file the user never pointed it at.

Every data file is checked to be a regular file before it is opened (:func:`regular_size`,
:func:`open_regular`): a FIFO would block the first read forever, and ``/dev/zero`` or
``/dev/urandom`` under a recording's name has size 0 on ``stat`` and never ends when read.

A data folder that a reader walks following links (torchvision's ImageFolder) is walked first
by :func:`check_tree`: a link out of it and a link loop (a folder linking to one it lies in,
which the reader would walk again and again) are refused by name. A reader that lists its
files itself (N-MNIST, CIFAR10-DVS) checks each with :func:`check_inside`.

A file the user names (a checkpoint, an export, a TOML, metrics.json) gets the same check
(:func:`regular_size` or :func:`open_regular` with ``missing``): a path that does not exist
keeps the reader's own "no such ..." message, anything else that is not a regular file is
named (a FIFO, a device, a socket, a folder), never waited on.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import DataError, NeuroKDError

_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def inside(root: str | Path, named: str, source: str | Path, line: int) -> Path:
    """``root / named`` for the path ``named`` read on line ``line`` of the file ``source``,
    refused unless it stays inside ``root``: not absolute, no ``..`` out of it, and no link on
    the way (the file itself included) that resolves outside it. The path need not exist
    (the caller says what is missing)."""
    where = f"{source}, line {line}"
    if "\0" in named:
        raise DataError(f"{where}: the path {named!r} holds a NUL byte")
    if PurePosixPath(named).is_absolute():
        raise DataError(f"{where}: {named!r} is an absolute path; a path in this file must "
                        f"lie inside {root}")
    if os.path.normpath(named).split(os.sep)[0] == os.pardir:
        raise DataError(f"{where}: {named!r} climbs out of {root} with '..'; a path in this "
                        "file must lie inside it")
    real_root = os.path.realpath(root)
    path = Path(root) / named
    real = os.path.realpath(path)  # follows every link on the way, loops included
    if os.path.commonpath([real_root, real]) != real_root:
        raise DataError(f"{where}: {named!r} is a link to {real}, outside {root}; a path in "
                        "this file must lie inside it")
    return path


MAX_FOLDERS = 1_000_000   # folders a walk through links may visit (links can multiply them)


def check_tree(root: str | Path, what: str, suffixes: Collection[str] | None = None) -> None:
    """Walk the data folder ``root`` the way a reader that follows links does, before it
    does: refuse a link that leads out of ``root`` (to a folder, or to a file the reader opens:
    one ending in ``suffixes``, any file when None) and a link to a folder it lies in (a loop:
    the reader would go round it until the OS stops it, reading the same files each time),
    naming the link (``what``: the data set). Folders that cannot be listed are left to the
    reader, which says so."""
    real_root = os.path.realpath(root)
    stack: list[tuple[str, tuple[str, ...]]] = [(str(root), (real_root,))]
    walked = 0
    while stack:
        folder, chain = stack.pop()   # chain: the real folders on the way down, this one last
        walked += 1
        if walked > MAX_FOLDERS:
            raise DataError(f"{what}: {root} holds more than {MAX_FOLDERS:,} folders (counted "
                            "through its links)")
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            try:
                link, folder_like = entry.is_symlink(), entry.is_dir()  # is_dir follows links
            except OSError:
                continue
            real = os.path.realpath(entry.path) if link or folder_like else ""
            if link and (folder_like or suffixes is None or
                         os.path.splitext(entry.name)[1].lower() in suffixes) and \
                    os.path.commonpath([real_root, real]) != real_root:
                raise _link_out(what, entry.path, real, root)
            if folder_like and real in chain:
                raise DataError(f"{what}: {entry.path} is a link to {real}, a folder it lies "
                                "in: a link loop (a data folder holds none)")
            if folder_like:
                stack.append((entry.path, (*chain, real)))


def check_inside(root: str | Path, path: str | Path, what: str) -> None:
    """Refuse ``path``, found in the data folder ``root`` by listing it, when a link on the
    way resolves outside ``root`` (``what``: the data set, as :func:`check_tree` names it).
    Check a folder before the files listed in it: the first path refused is the link."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise _link_out(what, path, real, root)


def _link_out(what: str, path: str | Path, real: str, root: str | Path) -> DataError:
    return DataError(f"{what}: {path} is a link to {real}, outside {root}; a link in a data "
                     "folder must stay inside it")


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _not_regular(path: Path, what: str, mode: int,
                 error: type[NeuroKDError] = DataError) -> NeuroKDError:
    """The refusal of a non-regular file, saying where a link led."""
    target = os.path.realpath(path)
    via = f" (a link to {target})" if target != os.path.abspath(path) else ""
    return error(f"{what} {path}{via} is {_kind(mode)}, not a regular file")


def regular_size(path: str | Path, what: str, missing: str | None = None,
                 error: type[NeuroKDError] = DataError) -> int:
    """The size of ``path``, a regular file (links followed); anything else is refused with
    ``what`` and the path, before anything opens it. With ``missing``, a path that does not
    exist (a dangling link included) is refused with that message instead (the reader's own
    "no such ... file"); ``error`` is the class raised."""
    path = Path(path)
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:
        if missing is not None and isinstance(exc, FileNotFoundError | NotADirectoryError):
            raise error(missing) from None
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise error(f"cannot read {what} {path}: {why}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, what, info.st_mode, error)
    return info.st_size


def open_regular(path: str | Path, what: str, missing: str | None = None,
                 error: type[NeuroKDError] = DataError) -> BinaryIO:
    """``path`` opened for binary reading, refused unless it is a regular file (``missing``
    and ``error`` as for :func:`regular_size`). Opened with ``O_NONBLOCK`` and checked again
    on the open descriptor, so a file swapped for a FIFO after the first check cannot block
    the open either."""
    path = Path(path)
    regular_size(path, what, missing, error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if missing is not None and isinstance(exc, FileNotFoundError):  # removed since
            raise error(missing) from None
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, what, mode, error)
        os.set_blocking(fd, True)  # regular files never block; plain reads from here on
        # the descriptor checked, under the file's name (readers that ask for .name get it)
        return open(path, "rb", opener=lambda *_: fd)  # the caller closes it
    except BaseException:
        os.close(fd)
        raise
