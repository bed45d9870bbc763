"""A file handed over as a PyTorch file: sniffed for what it really is, then loaded with
``weights_only=True`` only (a pickle may run code; plain tensors and containers cannot)."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ..errors import CheckpointError
from ..text import first_line
from .paths import open_regular


def read_torch_file(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one clear message."""
    path = Path(path)
    # a FIFO, a device or a folder is refused by name, never waited on; loaded from the
    # descriptor that was checked (a file swapped in after the check is never opened)
    with open_regular(path, "checkpoint file", missing=f"no such checkpoint file: {path}",
                      error=CheckpointError) as handle:
        return _load(path, handle)


def _load(path: Path, handle: BinaryIO) -> Any:
    if os.fstat(handle.fileno()).st_size == 0:
        raise CheckpointError(f"{path} is empty")
    kind = file_kind(handle)
    if kind:  # before torch.load, whose weights_only essay would say nothing about it
        raise CheckpointError(f"{path}: not a neurokd checkpoint: it is {kind}")
    try:
        with warnings.catch_warnings():  # a sparse tensor is refused below, not warned about
            warnings.filterwarnings("ignore", message="Validating sparse tensor invariants")
            loaded = torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load (holds objects beyond plain weights; weights_only=True: "
            f"{first_line(exc, 160)})") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable byte stream is the same user error
        raise CheckpointError(
            f"{path}: not a readable PyTorch file ({first_line(exc, 160)})") from None
    _check_tensors(path, loaded)
    return loaded


MAX_DEPTH = 32  # neurokd's checkpoints nest 3 levels


def _check_tensors(path: Path, loaded: Any) -> None:
    """Every tensor in the file dense, in memory and of a real or integer dtype: a sparse,
    meta or quantized tensor (which ``weights_only`` lets through) is named here, not left to
    fail deep inside a model."""
    stack = [(loaded, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{path}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, torch.Tensor):
            what = ("a sparse tensor" if value.layout != torch.strided else
                    "a meta tensor (no data)" if value.is_meta else
                    "a quantized tensor" if value.is_quantized else
                    f"a {value.dtype} tensor" if value.is_complex() else None)
            if what:
                raise CheckpointError(f"{path}: {where or 'the file'} is {what}; a neurokd "
                                      "checkpoint holds dense real-valued tensors")
        elif isinstance(value, dict):
            stack += [(v, f"{where}.{k}" if where else str(k), depth + 1)
                      for k, v in value.items()]
        elif isinstance(value, list | tuple):
            stack += [(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]


# The first bytes of the files a user may hand over by mistake, and what they are.
_MAGIC = ((b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Loihi .net or NIR export?)"),
          (b"\x93NUMPY", "a numpy .npy array"), (b"\x89PNG", "a PNG image"),
          (b"\x08", "a protobuf message (an ONNX export?)"))


def file_kind(handle: BinaryIO) -> str | None:
    """What a file that is not a PyTorch file is, from its first bytes (None: it may be one:
    a zip archive, torch's format, or a pickle stream, torch's legacy format). Reads the open
    ``handle`` from its start and leaves it there."""
    handle.seek(0)
    head = handle.read(256)
    handle.seek(0)
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return "a JSON file (metrics.json?)"
    if text[:1] == b"#" or b" = " in text.split(b"\n", 1)[0]:
        return "a text file (a TOML config?)"
    return None
