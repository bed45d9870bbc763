"""A file handed over as a PyTorch file: sniffed for what it really is, then loaded with
``weights_only=True`` only (a pickle may run code; plain tensors and containers cannot)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..text import first_line


def read_torch_file(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one clear message."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty")
    kind = file_kind(path)
    if kind:  # before torch.load, whose weights_only essay would say nothing about it
        raise CheckpointError(f"{path}: not a neurokd checkpoint: it is {kind}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load (holds objects beyond plain weights; weights_only=True: "
            f"{first_line(exc, 160)})") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable byte stream is the same user error
        raise CheckpointError(
            f"{path}: not a readable PyTorch file ({first_line(exc, 160)})") from None


# The first bytes of the files a user may hand over by mistake, and what they are.
_MAGIC = ((b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Loihi .net or NIR export?)"),
          (b"\x93NUMPY", "a numpy .npy array"), (b"\x89PNG", "a PNG image"),
          (b"\x08", "a protobuf message (an ONNX export?)"))


def file_kind(path: Path) -> str | None:
    """What a file that is not a PyTorch file is, from its first bytes (None: it may be one:
    a zip archive, torch's format, or a pickle stream, torch's legacy format)."""
    with open(path, "rb") as handle:
        head = handle.read(256)
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
