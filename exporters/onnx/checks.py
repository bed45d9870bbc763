"""An ONNX file checked before ONNX Runtime is given it (``neurokd simulate --backend onnx``).

The file is input: its size fits the memory budget (protobuf and ONNX Runtime each hold a
copy), no tensor keeps its data outside the file (ONNX external data names any path beside
or above the model: neurokd's exports are self-contained), ``onnx.checker`` accepts the graph,
and every initializer holds exactly the bytes its dims declare, summed against the budget,
before any array is made of it. Each failure names the file and the tensor.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from neurokd.errors import NeuroKDError
from neurokd.files.budget import check_bytes
from neurokd.files.paths import open_regular
from neurokd.text import first_line
from neurokd.validation import SIZE_LIMITS, check_shape

COPIES = 3   # the file's bytes, the parsed protobuf, ONNX Runtime's session


def load_checked_onnx(path: Path):
    """The ``onnx.ModelProto`` at ``path``, once it passed the checks above."""
    import onnx

    # a FIFO, a device or a folder is refused by name, never waited on; parsed from the
    # descriptor that was checked
    with open_regular(path, "export file", missing=f"no such export file: {path}",
                      error=NeuroKDError) as handle:
        check_bytes(COPIES * os.fstat(handle.fileno()).st_size,
                    f"{path}: loading the ONNX model")
        try:
            model = onnx.load(handle, load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a bad file
            raise NeuroKDError(f"{path}: not a readable ONNX file ({type(exc).__name__})") \
                from None
    _check_versions(path, model)
    tensors = list(_initializers(model.graph))
    external = [t.name for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise NeuroKDError(f"{path}: tensor {external[0]!r} keeps its data outside the file "
                           "(ONNX external data); neurokd reads self-contained exports only")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = first_line(exc)
        raise NeuroKDError(f"{path}: onnx.checker refuses the model ({first[:200]})") from None
    check_bytes(sum(_declared_bytes(path, t) for t in tensors), f"{path}: its weights")
    return model


def _check_versions(path: Path, model) -> None:
    """An IR version or opset newer than the installed onnx knows (a file from a future
    exporter) is named, not left to ONNX Runtime's own failure."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if model.ir_version > onnx.IR_VERSION:
        raise NeuroKDError(f"{path}: ONNX IR version {model.ir_version} is newer than this "
                           f"installation reads ({onnx.IR_VERSION}, onnx {onnx.__version__}); "
                           "export it again with the opset neurokd writes")
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and not 1 <= entry.version <= newest:
            raise NeuroKDError(f"{path}: it uses ONNX opset {entry.version}, but the installed "
                               f"onnx {onnx.__version__} and ONNX Runtime know opsets up to "
                               f"{newest}; export it again with the opset neurokd writes")


def check_metadata(path: Path, timesteps: int, input_shape: tuple[int, ...]) -> None:
    """The ``neurokd.timesteps`` / ``neurokd.input_shape`` an export records, bounded as a
    run's settings are."""
    if not 1 <= timesteps <= SIZE_LIMITS["timesteps"]:
        raise NeuroKDError(f"{path}: metadata neurokd.timesteps must be in 1.."
                           f"{SIZE_LIMITS['timesteps']}, not {timesteps}")
    try:
        check_shape("metadata neurokd.input_shape", list(input_shape))
    except NeuroKDError as exc:
        raise NeuroKDError(f"{path}: {exc}") from None


def check_per_sample(path: Path, name: str, shape: tuple[int, ...]) -> None:
    """A value's per-sample shape (a spike output) before an array of it is made."""
    try:
        check_shape(f"output {name!r}", list(shape))
    except NeuroKDError as exc:
        raise NeuroKDError(f"{path}: {exc}") from None


def _initializers(graph):
    """Every initializer, also those of subgraphs (If / Loop bodies)."""
    import onnx

    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _initializers(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from _initializers(sub)


def _declared_bytes(path: Path, tensor) -> int:
    import onnx

    if any(d < 0 for d in tensor.dims):
        raise NeuroKDError(f"{path}: tensor {tensor.name!r} has negative dims {list(tensor.dims)}")
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        raise NeuroKDError(f"{path}: tensor {tensor.name!r} has unknown data type "
                           f"{tensor.data_type}") from None
    size = math.prod(tensor.dims) * itemsize
    if tensor.HasField("raw_data") and len(tensor.raw_data) != size:
        raise NeuroKDError(f"{path}: tensor {tensor.name!r} declares dims {list(tensor.dims)} "
                           f"({size:,} bytes) but holds {len(tensor.raw_data):,}")
    return size
