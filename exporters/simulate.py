"""``neurokd simulate``: run an export on a test split in Lava and compare it with its models.

The Lava backend runs ``lava_runner.py`` in ``.venv-lava`` (``NEUROKD_LAVA_PYTHON`` overrides
the interpreter), exchanging ``.npz`` files, and compares Lava with two computations done here:
the float network (BatchNorm folded, stored in the file) and the bit-accurate integer model
(``fixed_point.run_fixed_point``). The result file (``RESULT_KEYS``) carries per-layer event
counts for ``neurokd energy --from-lava``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from neurokd.errors import NeuroKDError
from neurokd.fileio import atomic_path
from neurokd.progress import Reporter

from .fixed_point import QuantizedNetwork, run_fixed_point
from .loihi import INPUT_MESSAGE_BITS
from .netx_file import read_netx, run_float

RESULT_FORMAT = "neurokd.lava-result"
RESULT_VERSION = 1
# The result .npz contract (read by neurokd.energy.lava); {i} is the synaptic layer index.
RESULT_KEYS = {
    "header": ("format", "version", "backend", "samples", "timesteps", "layer_names",
               "layer_types"),
    "per_layer": ("geometry_{i}", "input_shape_{i}", "input_events_{i}", "has_neurons_{i}",
                  "output_spikes_{i}"),
}
RUNNER = Path(__file__).with_name("lava_runner.py")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class SimulationResult:
    backend: str
    export: str
    dataset: str
    samples: int
    timesteps: int
    lava_accuracy: float            # the backend's accuracy (Lava, or ONNX Runtime)
    torch_accuracy: float | None    # the float network's (None for onnx: the file is it)
    quantized_accuracy: float | None    # the bit-accurate integer model's (lava only)
    agreement: float | None         # argmax agreement, backend vs integer model (lava only)
    identical_spikes: dict[str, float]   # per neuron layer, Lava vs integer model
    spike_counts: dict[str, int]    # per neuron layer, summed over samples and timesteps
    seconds_per_sample: float
    layer_names: list[str]          # synaptic layers in order (the student's module paths)
    layer_types: list[str]          # "conv" | "dense"
    layer_arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("layer_arrays")
        return data


def lava_python() -> Path:
    """The Lava interpreter: ``NEUROKD_LAVA_PYTHON``, else ``.venv-lava`` in the repository."""
    chosen = os.environ.get("NEUROKD_LAVA_PYTHON")
    path = Path(chosen) if chosen else REPO_ROOT / ".venv-lava" / "bin" / "python"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise NeuroKDError(f"no Lava environment at {path}: run `make lava` (Python 3.10 with "
                           "lava-dl 0.6.0) or point NEUROKD_LAVA_PYTHON at one")
    return path


def simulate(export: str | Path, backend: str = "lava", dataset: str | None = None,
             samples: int | None = None, reporter: Reporter | None = None,
             chunk: int = 20, data_dir: str | None = None) -> SimulationResult:
    """Run ``export`` on the first ``samples`` test samples of ``dataset`` (default: the one
    the export was made from) and compare it with the float and integer models.
    ``data_dir``: the data set's folder (CIFAR, imagefolder; default: the run's)."""
    if samples is not None and samples < 1:
        raise NeuroKDError(f"--samples must be >= 1, not {samples}")
    if backend == "onnx":
        from .simulate_onnx import simulate_onnx

        return simulate_onnx(export, dataset, samples, reporter or Reporter(), data_dir)
    if backend != "lava":
        raise NeuroKDError(f"simulate: unknown backend {backend!r}; use lava or onnx")
    stored = read_netx(export)
    network = stored.network
    dataset = dataset or stored.meta.get("dataset")
    if not dataset:
        raise NeuroKDError(f"{export} does not name its data set: give --dataset")
    if dataset == stored.meta.get("dataset"):
        data_dir = data_dir or stored.meta.get("data_dir")
    x, labels = _test_split(dataset, samples, network.input_shape, data_dir,
                            stored.meta.get("image_size", 32))
    python = lava_python()
    x_q = network.quantize_input(x)
    reporter = reporter or Reporter()
    lava = run_lava(python, Path(export), x_q, network, reporter, chunk)
    fixed = run_fixed_point(network, x_q)
    float_logits, _ = run_float(stored.float_layers, x, network.timesteps)
    lava_pred = network.logits(lava["readout"]).mean(1).argmax(-1)
    fixed_pred = network.logits(fixed.readout).mean(1).argmax(-1)
    spiking = [lay.name for lay in network.layers if lay.spiking]
    lava_spikes = [lava[f"spikes_{k}"] for k, lay in enumerate(network.layers) if lay.spiking]
    identical = {name: float((got == ref).mean()) for name, got, ref in
                 zip(spiking, lava_spikes, fixed.spikes, strict=True)}
    return SimulationResult(
        "lava", str(export), dataset, len(x), network.timesteps,
        float((lava_pred == labels).mean()),
        float((float_logits.mean(0).argmax(-1) == labels).mean()),
        float((fixed_pred == labels).mean()), float((lava_pred == fixed_pred).mean()),
        identical, {name: int(s.sum()) for name, s in zip(spiking, lava_spikes, strict=True)},
        float(lava["seconds"]) / len(x), [lay.name for lay in network.layers],
        [lay.kind for lay in network.layers], _layer_arrays(network, x_q, lava_spikes))


def _test_split(dataset: str, samples: int | None, input_shape: tuple[int, ...],
                data_dir: str | None = None,
                image_size: int = 32) -> tuple[torch.Tensor, np.ndarray]:
    from neurokd.data import load_data

    test = load_data(dataset, data_dir=data_dir, augment=False, image_size=image_size).test
    count = len(test) if samples is None else min(samples, len(test))
    x = torch.stack([test[i][0] for i in range(count)]).float()
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise NeuroKDError(f"{dataset} samples have shape {tuple(x.shape[1:])}, the export "
                           f"expects {tuple(input_shape)}")
    return x, np.array([int(test[i][1]) for i in range(count)])


def run_lava(python: Path, export: Path, x_q: np.ndarray, network: QuantizedNetwork,
              reporter: Reporter, chunk: int) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="neurokd-lava-") as folder:
        request, result = Path(folder) / "request.npz", Path(folder) / "result.npz"
        np.savez(request, net=np.array(str(export.resolve())), inputs=x_q.astype(np.int32),
                 timesteps=np.array(network.timesteps),
                 message_bits=np.array(INPUT_MESSAGE_BITS), chunk=np.array(chunk))
        task = reporter.start("Lava simulation (samples)", len(x_q))
        log = Path(folder) / "stderr.txt"
        with open(log, "w") as stderr:  # a file: a chatty runner cannot block on a full pipe
            process = subprocess.Popen([str(python), str(RUNNER), str(request), str(result)],
                                       stdout=subprocess.PIPE, stderr=stderr, text=True)
            done = 0
            for line in process.stdout:
                if line.startswith("progress "):
                    now = int(line.split()[1])
                    reporter.advance(task, now - done)
                    done = now
        errors = log.read_text(errors="replace")
        if process.wait() != 0:
            tail = [line for line in errors.splitlines() if line.strip()]
            raise NeuroKDError(f"the Lava simulation failed: {tail[-1] if tail else 'no output'}")
        with np.load(result, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        reporter.finish(task, f"{float(arrays['seconds']):.1f} s")
    return arrays


def _layer_arrays(network: QuantizedNetwork, x_q: np.ndarray,
                  spikes: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The per-layer part of the result file (see RESULT_KEYS)."""
    counts = iter([s.sum(axis=(0, 1)).astype(np.float64) for s in spikes])
    return layer_arrays([(lay.geometry(), lay.input_shape,
                          next(counts) if lay.spiking else None) for lay in network.layers],
                        (x_q != 0).sum(0) * network.timesteps)  # input repeats every step


def layer_arrays(layers: list[tuple[np.ndarray, tuple[int, ...], np.ndarray | None]],
                 input_events: np.ndarray) -> dict[str, np.ndarray]:
    """Result-file arrays from (geometry, input shape, summed output spikes or None) per
    synaptic layer and the events into the first one."""
    arrays: dict[str, np.ndarray] = {}
    events = np.asarray(input_events, dtype=np.float64)
    for i, (geometry, input_shape, spikes) in enumerate(layers):
        keys = [key.format(i=i) for key in RESULT_KEYS["per_layer"]]
        arrays[keys[0]] = np.asarray(geometry, dtype=np.int64)
        arrays[keys[1]] = np.array(input_shape, dtype=np.int64)
        arrays[keys[2]] = events.reshape(input_shape)
        arrays[keys[3]] = np.array(int(spikes is not None), dtype=np.int64)
        if spikes is not None:
            events = arrays[keys[4]] = np.asarray(spikes, dtype=np.float64)
    return arrays


def write_result(path: str | Path, result: SimulationResult) -> Path:
    """The result ``.npz`` (format ``neurokd.lava-result`` v1), written atomically."""
    header = (np.array(RESULT_FORMAT), np.array(RESULT_VERSION, dtype=np.int64),
              np.array(result.backend), np.array(result.samples, dtype=np.int64),
              np.array(result.timesteps, dtype=np.int64),
              np.array(result.layer_names, dtype=str), np.array(result.layer_types, dtype=str))
    arrays = dict(zip(RESULT_KEYS["header"], header, strict=True)) | result.layer_arrays
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return Path(path)


__all__ = ["simulate", "SimulationResult", "write_result", "lava_python", "RESULT_KEYS",
           "RESULT_FORMAT", "RESULT_VERSION"]
