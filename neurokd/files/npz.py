"""An ``.npz`` file read as untrusted input: every array's header before its data.

``np.load`` of a member allocates whatever its header claims: a 2 KB file whose header says
10**11 elements asks for 745 GiB. Here each member's ``.npy`` header (shape, dtype) is read
first (``numpy.lib.format.read_magic`` / ``read_array_header_*``); object dtypes are refused
(they are pickles), the sizes together are checked against the memory budget
(``neurokd.files.budget``), and the member must hold the bytes its header promises, before any
array is read (with ``allow_pickle=False``).
"""

from __future__ import annotations

import math
import os
import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from ..errors import NeuroKDError
from ..text import describe
from .budget import check_bytes
from .paths import open_regular

MAX_MEMBERS = 10_000


@dataclass(frozen=True)
class ArrayHeader:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int          # where the data starts in the member

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: no overflow


def read_npz(path: str | Path, what: str = "file") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (``what`` names it in errors)."""
    path = Path(path)
    if not path.exists():
        raise NeuroKDError(f"no such {what}: {path}")
    try:  # a FIFO or a device is refused by open_regular, never waited on
        with open_regular(path, what) as handle, zipfile.ZipFile(handle) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) > MAX_MEMBERS:
                raise NeuroKDError(f"{path}: holds {len(members):,} members; a {what} has at "
                                   f"most {MAX_MEMBERS:,}")
            headers = [_header(archive, member, path) for member in members]
            check_bytes(sum(h.nbytes for h in headers), f"{path}: its arrays")
            size = os.fstat(handle.fileno()).st_size
            for member, header in zip(members, headers, strict=True):
                _check_complete(member, header, path, size)
            return {header.name: _array(archive, member, header, path)
                    for member, header in zip(members, headers, strict=True)}
    except (OSError, zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise NeuroKDError(f"{path}: not a readable .npz file ({describe(exc)})") from None


def read_npy_header(handle) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of the ``.npy`` stream at ``handle``'s
    position, without reading its data (ValueError for anything that is not one)."""
    version = npy.read_magic(handle)
    try:
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy.read_array_header_2_0(handle)
        else:
            raise ValueError(f"npy format version {version}")
        return tuple(int(d) for d in shape), bool(fortran), np.dtype(dtype), handle.tell()
    except (SyntaxError, tokenize.TokenError, TypeError, KeyError, OverflowError,
            UnicodeDecodeError) as exc:  # numpy parses the header as a Python literal
        raise ValueError(f"a damaged .npy header ({type(exc).__name__})") from None


def _header(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path) -> ArrayHeader:
    name = member.filename.removesuffix(".npy")
    try:
        with archive.open(member) as handle:
            shape, _fortran, dtype, offset = read_npy_header(handle)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError) as exc:
        raise NeuroKDError(f"{path}: member {name!r} is not a .npy array ({describe(exc)})") \
            from None
    if dtype.hasobject:
        raise NeuroKDError(f"{path}: array {name!r} has object dtype {dtype} (a pickle); "
                           "neurokd reads plain numeric and text arrays only")
    return ArrayHeader(name, shape, dtype, offset)


# Deflate stores at most ~1032 bytes per byte it writes (zlib's limit); a member claiming more
# than that of its compressed size lies about its size.
MAX_RATIO = 1100


def _check_complete(member: zipfile.ZipInfo, header: ArrayHeader, path: Path,
                    archive_size: int) -> None:
    """The member's sizes agree with each other, the archive and the array's header, so no
    array is allocated from a size the file cannot hold."""
    stored = member.compress_type == zipfile.ZIP_STORED
    if member.compress_size > archive_size or (stored and member.file_size != member.compress_size) \
            or member.file_size > MAX_RATIO * member.compress_size + (1 << 16):
        raise NeuroKDError(f"{path}: member {header.name!r} claims {member.file_size:,} bytes "
                           f"from {member.compress_size:,} stored in a {archive_size:,}-byte "
                           "file: its size fields are forged")
    if member.file_size < header.offset + header.nbytes:
        raise NeuroKDError(f"{path}: array {header.name!r} claims {header.shape} {header.dtype} "
                           f"({header.nbytes:,} bytes) but its member holds "
                           f"{member.file_size - header.offset:,}: the file is truncated or "
                           "forged")


def _array(archive: zipfile.ZipFile, member: zipfile.ZipInfo, header: ArrayHeader,
           path: Path) -> np.ndarray:
    try:
        with archive.open(member) as handle:
            return npy.read_array(handle, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise NeuroKDError(f"{path}: cannot read array {header.name!r} ({describe(exc)})") \
            from None


