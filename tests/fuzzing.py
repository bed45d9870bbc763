"""The mutation engine of tests/test_fuzz.py: seeded, reproducible damage to a valid file.

``mutate(kind, data, rng)`` returns the damaged bytes and a one-line description of what was
done. ``kind`` picks the mutators that fit the format: every file gets the byte-level ones
(bit flips, truncation, inserted bytes, a 32- or 64-bit field multiplied or maxed out, a block
duplicated or dropped); text formats (TOML, JSON, CSV) get text ones (a number replaced by
NaN / inf / negative / huge, a string replaced by control characters, ``$..$`` mathtext or a
megabyte of text, invalid UTF-8, deep nesting); containers get structured ones that keep the
container readable so that the damage reaches the reader's own checks: ``.npz`` (a member's
values, its header's shape claim multiplied, its dtype), HDF5 (``.net``, ``.nir``: a dataset's
values, shape or dtype, an attribute's text), PyTorch checkpoints (a config value, a tensor)
and ONNX (metadata, initializer dims, opset). Everything is drawn from ``rng`` alone: the same
seed gives the same bytes.
"""

from __future__ import annotations

import io
import json
import math
import random
import re
import struct
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

NUMBERS = ["nan", "inf", "-inf", "-1", "-1e308", "1e308", "0", "-0.0", str(10 ** 30),
           str(2 ** 63), str(2 ** 64 + 1), "4294967296", "1e-320", "1.5"]
STRINGS = ["\x00\x01\x1b[31m", "$\\frac{$", "a" * 1_000_000, "", " ", "../../../etc/passwd",
           "\u202e\ufeff", "x" * 300, "€" * 10]
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]
FACTORS = [2 ** 10, 2 ** 20, 2 ** 32, -1, 0]


# --- bytes -----------------------------------------------------------------------------------

def flip_bits(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    places = [rng.randrange(len(out) * 8) for _ in range(rng.choice([1, 2, 4, 8]))]
    for bit in places:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out), f"flipped bits {places[:4]}"


def truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(data))
    return data[:at], f"truncated to {at} of {len(data)} bytes"


def insert_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(data) + 1)
    extra = rng.choice([b"\0", b"\xff" * 8, bytes(rng.randrange(256) for _ in range(16)),
                        b"\0" * 4096])
    return data[:at] + extra + data[at:], f"inserted {len(extra)} bytes at {at}"


def size_field(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A 4- or 8-byte little/big-endian integer (a length, count or shape) made huge."""
    width = rng.choice([4, 8])
    if len(data) < width:
        return truncate(data, rng)
    at = rng.randrange(0, len(data) - width + 1, width) if rng.random() < 0.7 else \
        rng.randrange(len(data) - width + 1)
    order = rng.choice("<>")
    fmt = f"{order}{'I' if width == 4 else 'Q'}"
    value = struct.unpack_from(fmt, data, at)[0]
    factor = rng.choice(FACTORS)
    new = (2 ** (8 * width) - 1 if factor == -1 else value * factor if value else
           rng.choice([2 ** 31 - 1, 2 ** 32 - 1])) % (2 ** (8 * width))
    out = bytearray(data)
    struct.pack_into(fmt, out, at, new)
    return bytes(out), f"{width}-byte field at {at} ({order}) {value} -> {new}"


def block(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice([1, 8, 64, 512]))
    if rng.random() < 0.5:
        return data[:start] + data[start:end] * 2 + data[end:], f"duplicated [{start}:{end}]"
    return data[:start] + data[end:], f"dropped [{start}:{end}]"


BYTE_MUTATORS = [flip_bits, truncate, insert_bytes, size_field, block]


# --- text ------------------------------------------------------------------------------------

_NUMBER = re.compile(rb"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
_STRING = re.compile(rb'"([^"\\\n]{0,200})"')


def replace_number(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    found = list(_NUMBER.finditer(data))
    if not found:
        return flip_bits(data, rng)
    match = rng.choice(found)
    new = rng.choice(NUMBERS).encode()
    return data[:match.start()] + new + data[match.end():], \
        f"number {match.group().decode()[:20]} at {match.start()} -> {new.decode()[:20]}"


def replace_string(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    found = list(_STRING.finditer(data))
    if not found:
        return insert_bytes(data, rng)
    match = rng.choice(found)
    text = rng.choice(STRINGS)
    new = json.dumps(text).encode() if rng.random() < 0.5 else b'"' + text.encode() + b'"'
    return data[:match.start()] + new + data[match.end():], \
        f"string {match.group()[:30]!r} at {match.start()} -> {text[:20]!r} ({len(text)} chars)"


def bad_utf8(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(data) + 1)
    bad = rng.choice(BAD_UTF8)
    return data[:at] + bad + data[at:], f"invalid UTF-8 {bad!r} at {at}"


def deep_nesting(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    depth = rng.choice([100, 1000, 100_000])
    nest = b"[" * depth + b"1" + b"]" * depth
    found = list(_NUMBER.finditer(data))
    if not found:
        return data + nest, f"appended {depth} nested brackets"
    match = rng.choice(found)
    return data[:match.start()] + nest + data[match.end():], \
        f"number at {match.start()} -> {depth} nested lists"


def control_line(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    lines = data.split(b"\n")
    at = rng.randrange(len(lines))
    choice = rng.choice(["drop", "duplicate", "control", "long"])
    if choice == "drop":
        del lines[at]
    elif choice == "duplicate":
        lines.insert(at, lines[at])
    elif choice == "control":
        lines[at] = lines[at] + b"\x00\x1b\r\x0b"
    else:
        lines[at] = lines[at] + b"9" * 100_000
    return b"\n".join(lines), f"line {at + 1}: {choice}"


TEXT_MUTATORS = [replace_number, replace_number, replace_string, bad_utf8, deep_nesting,
                 control_line]


# --- .npz (and .npy) -------------------------------------------------------------------------

def _npz_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _npz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_claim(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    """The same data under a header whose shape (or dtype) claims something else."""
    stream = io.BytesIO(raw)
    version = np.lib.format.read_magic(stream)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
        np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(stream)
    body = raw[stream.tell():]
    shape = list(shape) or [1]
    how = rng.choice(["multiply", "max", "rank", "dtype", "zero"])
    if how == "multiply":
        axis = rng.randrange(len(shape))
        shape[axis] = shape[axis] * rng.choice([2, 2 ** 20, 2 ** 32]) or 2 ** 32
    elif how == "max":
        shape = [2 ** 32] * len(shape)
    elif how == "rank":
        shape = shape + [1] * rng.choice([1, 30])
    elif how == "zero":
        shape[rng.randrange(len(shape))] = 0
    else:
        dtype = np.dtype(rng.choice(["<c16", "|S3", "<f2", "|b1", "<U2", ">i8", "|V8"]))
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": fortran,
                                                  "shape": tuple(shape)})
    return header.getvalue() + body, f"header claims {dtype} {tuple(shape)[:6]} ({how})"


def _npy_values(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    array = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    how = rng.choice(["nan", "inf", "negative", "huge", "shape", "complex", "text"])
    if array.size == 0:
        how = "shape"
    if how == "shape":
        array = np.zeros(rng.choice([(0,), (3,), (2, 2, 2), (1,) * 12]), dtype=array.dtype
                         if array.dtype.kind != "U" else np.float64)
    elif how == "complex" and array.dtype.kind in "fiu":
        array = array.astype(np.complex128) * complex(math.nan, 1)
    elif how == "text":
        array = np.array([rng.choice(STRINGS[:3])] * max(1, min(array.size, 4)))
    elif array.dtype.kind in "fc":
        array = array.copy()
        flat = array.reshape(-1)
        flat[rng.randrange(flat.size)] = {"nan": math.nan, "inf": math.inf, "negative": -5.0,
                                          "huge": 1e308, "complex": math.nan}[how]
    elif array.dtype.kind in "iu":
        array = array.astype(np.int64)
        flat = array.reshape(-1)
        flat[rng.randrange(flat.size)] = {"nan": 0, "inf": 2 ** 62, "negative": -5,
                                          "huge": 2 ** 63 - 1, "complex": 10 ** 9}[how]
    elif array.dtype.kind == "U":
        array = np.array([rng.choice(STRINGS)] * max(1, array.size)).reshape(
            array.shape if array.size else (1,))
    return _npy_bytes(array), f"values ({how}) -> {array.dtype} {array.shape[:6]}"


def npz_structured(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    members = _npz_members(data)
    name = rng.choice(sorted(members))
    how = rng.random()
    if how < 0.1:
        del members[name]
        return _npz(members), f"member {name} dropped"
    if how < 0.5:
        members[name], what = _npy_claim(members[name], rng)
    else:
        members[name], what = _npy_values(members[name], rng)
    return _npz(members), f"member {name}: {what}"


def npy_structured(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if rng.random() < 0.5:
        return _npy_claim(data, rng)
    return _npy_values(data, rng)


# --- HDF5 (.net, .nir) -----------------------------------------------------------------------

def hdf5_structured(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    import h5py

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.h5"
        path.write_bytes(data)
        with h5py.File(path, "r+") as handle:
            datasets, attributes = [], []

            def visit(name, item):
                if isinstance(item, h5py.Dataset):
                    datasets.append(name)
                for key in item.attrs:
                    attributes.append((name, key))

            handle.visititems(visit)
            attributes += [("/", key) for key in handle.attrs]
            if attributes and (rng.random() < 0.35 or not datasets):
                where, key = rng.choice(attributes)
                what = _hdf5_attribute(handle[where].attrs, key, rng)
                description = f"attribute {where}@{key}: {what}"
            else:
                name = rng.choice(datasets)
                description = f"dataset {name}: {_hdf5_dataset(handle, name, rng)}"
        return path.read_bytes(), description


def _hdf5_attribute(attrs, key: str, rng: random.Random) -> str:
    value = attrs[key]
    how = rng.choice(["number", "string", "nesting", "delete", "bytes"])
    if how == "delete":
        del attrs[key]
        return "deleted"
    if how == "bytes":
        attrs[key] = np.void(b"\xff\xfe\x00")
        return "opaque bytes"
    if isinstance(value, bytes | str | np.bytes_ | np.str_):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        mutated, what = {"number": replace_number, "string": replace_string,
                         "nesting": deep_nesting}[how](text.encode(), rng)
        attrs[key] = mutated.decode("utf-8", "replace")
        return what
    attrs[key] = rng.choice([math.nan, math.inf, -1, 2 ** 62, 1e308, "x"])
    return f"-> {attrs[key]!r}"


def _hdf5_dataset(handle, name: str, rng: random.Random) -> str:
    import h5py

    dataset = handle[name]
    value = dataset[()]
    how = rng.choice(["nan", "inf", "negative", "huge", "shape", "dtype", "delete", "claim"])
    if how == "delete":
        del handle[name]
        return "deleted"
    if how == "claim":  # a huge chunked dataset of nothing: a size claim, not data
        del handle[name]
        handle.create_dataset(name, shape=(10 ** 6, 10 ** 6), dtype="f4", chunks=(1, 1024),
                              compression="gzip")
        return "claims 10**6 x 10**6 f4"
    array = np.array(value)
    if how == "shape" or array.dtype.kind not in "fiu" or array.size == 0:
        array = np.ones(rng.choice([(0,), (1,), (7, 3), (2, 2, 2, 2, 2)]), np.float32)
        how = "shape"
    elif how == "dtype":
        array = array.astype(np.complex64)
    else:
        array = array.astype(np.float64) if how in ("nan", "inf") else array.copy()
        flat = array.reshape(-1)
        flat[rng.randrange(flat.size)] = {"nan": math.nan, "inf": math.inf, "negative": -3,
                                          "huge": 2 ** 31 - 1 if array.dtype.kind in "iu"
                                          else 1e38}[how]
    del handle[name]
    handle[name] = array
    del h5py
    return f"{how} -> {array.dtype} {array.shape}"


# --- PyTorch checkpoints ---------------------------------------------------------------------

def torch_structured(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    import torch

    stored = torch.load(io.BytesIO(data), weights_only=True)
    paths: list[tuple] = []

    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, key))
        elif isinstance(value, list) and value and len(path) < 4:
            for index, item in enumerate(value[:8]):
                walk(item, (*path, index))
        paths.append(path)

    walk(stored, ())
    path = rng.choice([p for p in paths if p])
    parent = stored
    for key in path[:-1]:
        parent = parent[key]
    old = parent[path[-1]]
    new, what = _torch_value(old, rng)
    parent[path[-1]] = new
    buffer = io.BytesIO()
    torch.save(stored, buffer)
    return buffer.getvalue(), f"{'.'.join(map(str, path))}: {what}"


def _torch_value(old, rng: random.Random):
    import torch

    if isinstance(old, torch.Tensor):
        how = rng.choice(["nan", "inf", "huge", "shape", "dtype", "empty"])
        if how == "shape":
            return torch.zeros(rng.choice([(0,), (3,), (1, 1, 1, 1, 1)])), "tensor shape changed"
        if how == "dtype":
            return old.to(rng.choice([torch.complex64, torch.int8, torch.bool])), "dtype changed"
        if how == "empty":
            return torch.empty(0, dtype=old.dtype), "empty tensor"
        new = old.clone().to(torch.float64) if old.is_floating_point() else old.clone()
        if new.numel():
            value = {"nan": math.nan, "inf": math.inf, "huge": 1e300}[how] \
                if new.is_floating_point() else {"nan": -1, "inf": 2 ** 62, "huge": -2 ** 62}[how]
            new.view(-1)[rng.randrange(new.numel())] = value
        return new, f"tensor value {how}"
    choices = [math.nan, math.inf, -1, 0, 2 ** 62, 10 ** 30, 1e308, "", "\x00\x1b",
               "$\\frac{$", "x" * 100_000, [], {}, None, True, [[[[1]]]] * 3]
    new = rng.choice(choices)
    return new, f"{type(old).__name__} {str(old)[:30]!r} -> {str(new)[:30]!r}"


# --- ONNX ------------------------------------------------------------------------------------

def onnx_structured(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    import onnx

    model = onnx.load_from_string(data)
    how = rng.choice(["metadata", "metadata", "dims", "raw", "opset", "attribute"])
    if how == "metadata" and model.metadata_props:
        prop = rng.choice(list(model.metadata_props))
        mutated, what = rng.choice(TEXT_MUTATORS)(prop.value.encode(), rng)
        prop.value = mutated.decode("utf-8", "replace")
        description = f"metadata {prop.key}: {what}"
    elif how == "dims" and model.graph.initializer:
        tensor = rng.choice(list(model.graph.initializer))
        if tensor.dims:
            axis = rng.randrange(len(tensor.dims))
            tensor.dims[axis] = tensor.dims[axis] * rng.choice([2, 2 ** 20, 2 ** 31])
        description = f"initializer {tensor.name} dims -> {list(tensor.dims)}"
    elif how == "raw" and model.graph.initializer:
        tensor = rng.choice(list(model.graph.initializer))
        if tensor.raw_data:
            tensor.raw_data = tensor.raw_data[: rng.randrange(len(tensor.raw_data))]
        description = f"initializer {tensor.name} raw data truncated"
    elif how == "opset":
        entry = model.opset_import[0]
        entry.version = rng.choice([0, 1, 99, 2 ** 40])
        description = f"opset {entry.domain or 'ai.onnx'} -> {entry.version}"
    else:
        nodes = [n for n in model.graph.node if n.attribute]
        if not nodes:
            return flip_bits(data, rng)
        node = rng.choice(nodes)
        attribute = rng.choice(list(node.attribute))
        if attribute.ints:
            attribute.ints[rng.randrange(len(attribute.ints))] = rng.choice([0, -1, 2 ** 40])
        elif attribute.type == onnx.AttributeProto.FLOAT:
            attribute.f = rng.choice([math.nan, math.inf, -1e30])
        else:
            attribute.i = rng.choice([0, -1, 2 ** 40])
        description = f"node {node.name} attribute {attribute.name} changed"
    return model.SerializeToString(), description


# --- the table -------------------------------------------------------------------------------

Mutator = Callable[[bytes, random.Random], tuple[bytes, str]]
STRUCTURED: dict[str, list[Mutator]] = {
    "binary": [],
    "text": TEXT_MUTATORS,
    "npz": [npz_structured] * 3,
    "npy": [npy_structured] * 3,
    "hdf5": [hdf5_structured] * 3,
    "torch": [torch_structured] * 3,
    "onnx": [onnx_structured] * 3,
}


def mutate(kind: str, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One mutation of ``data`` (a file of format ``kind``, a key of STRUCTURED), drawn from
    ``rng``: a structured one (when the format has them) three times in four."""
    structured = STRUCTURED[kind]
    if structured and rng.random() < 0.75:
        mutator = rng.choice(structured)
    else:
        mutator = rng.choice(BYTE_MUTATORS)
    if not data:
        return b"\0", "empty file -> one NUL byte"
    try:
        mutated, description = mutator(data, rng)
    except Exception as exc:  # noqa: BLE001 - a structured mutator that cannot apply
        mutated, description = flip_bits(data, rng)
        description += f" (structured mutation not applicable: {type(exc).__name__})"
    return mutated, f"{mutator.__name__}: {description}"
