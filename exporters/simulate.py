"""``neurokd simulate``: run an export on a test split in Lava and compare it with its models.

The Lava backend runs ``lava_runner.py`` in ``.venv-lava`` (``NEUROKD_LAVA_PYTHON`` overrides
the interpreter), exchanging ``.npz`` files, and compares Lava with two computations done here:
the float network (BatchNorm folded, stored in the file) and the bit-accurate integer model
(``fixed_point.run_fixed_point``). The result file (format owned by ``neurokd.energy.lava``)
carries per-layer event counts for ``neurokd energy --from-lava``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from neurokd.energy.count import EventCounts
from neurokd.energy.lava import layer_chain, write_lava_result
from neurokd.errors import NeuroKDError
from neurokd.progress import Reporter

from .fixed_point import QuantizedNetwork, run_fixed_point
from .loihi import INPUT_MESSAGE_BITS
from .netx_file import read_netx, run_float
from .verify import split_samples

RUNNER = Path(__file__).with_name("lava_runner.py")
REPO_ROOT = Path(__file__).resolve().parent.parent
BLOCK = 256   # samples per Lava run and integer/float pass: a CIFAR test split stays in MBs


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
    counts: EventCounts | None = field(default=None, repr=False)  # what --save writes

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "counts"}


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
             chunk: int = 20, data_dir: str | None = None,
             block: int = BLOCK) -> SimulationResult:
    """Run ``export`` on the first ``samples`` test samples of ``dataset`` (default: the one
    the export was made from) and compare it with the float and integer models, ``block``
    samples at a time. ``data_dir``: the data set's folder (CIFAR, imagefolder; default:
    the run's)."""
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
    python = lava_python()  # before the data set loads: a missing .venv-lava fails at once
    x, labels, _ = split_samples(dataset, samples, network.input_shape, "test", data_dir,
                                 stored.meta.get("image_size", 32))
    totals = _run_blocks(python, Path(export), stored, x, reporter or Reporter(), chunk, block)
    lava_pred, fixed_pred = totals["lava"], totals["fixed"]
    spiking = [lay for lay in network.layers if lay.spiking]
    identical = {lay.name: same / (len(x) * network.timesteps * int(np.prod(lay.output_shape)))
                 for lay, same in zip(spiking, totals["same"], strict=True)}
    return SimulationResult(
        "lava", str(export), dataset, len(x), network.timesteps,
        float((lava_pred == labels).mean()), float((totals["float"] == labels).mean()),
        float((fixed_pred == labels).mean()), float((lava_pred == fixed_pred).mean()),
        identical, {lay.name: int(s.sum()) for lay, s in zip(spiking, totals["spikes"],
                                                               strict=True)},
        totals["seconds"] / len(x), [lay.name for lay in network.layers],
        [lay.kind for lay in network.layers],
        _event_counts(export, network, totals["input_events"], totals["spikes"], len(x)))


def _run_blocks(python: Path, export: Path, stored, x: torch.Tensor, reporter: Reporter,
                chunk: int, block: int) -> dict:
    """Lava, the integer and the float model on ``x``, ``block`` samples at a time (in one
    piece a CIFAR test split needs GBs): the three models' predictions, per spiking layer the
    spikes equal between Lava and the integer model and Lava's spike totals, the events
    into the first layer and Lava's simulation seconds."""
    network = stored.network
    spiking = [k for k, lay in enumerate(network.layers) if lay.spiking]
    totals = {"lava": [], "fixed": [], "float": [], "same": [0] * len(spiking),
              "spikes": [0.0] * len(spiking), "input_events": 0, "seconds": 0.0}
    for start in range(0, len(x), block):
        part = x[start:start + block]
        x_q = network.quantize_input(part)
        lava = run_lava(python, export, x_q, network, reporter, chunk)
        fixed = run_fixed_point(network, x_q)
        float_logits, _ = run_float(stored.float_layers, part, network.timesteps,
                                    keep_spikes=False)
        totals["lava"].append(network.logits(lava["readout"]).mean(1).argmax(-1))
        totals["fixed"].append(network.logits(fixed.readout).mean(1).argmax(-1))
        totals["float"].append(float_logits.mean(0).argmax(-1))
        for i, (k, expected) in enumerate(zip(spiking, fixed.spikes, strict=True)):
            got = lava[f"spikes_{k}"]
            totals["same"][i] += int((got == expected).sum())
            totals["spikes"][i] = totals["spikes"][i] + got.sum(axis=(0, 1)).astype(np.float64)
        totals["input_events"] = totals["input_events"] + (x_q != 0).sum(0)
        totals["seconds"] += float(lava["seconds"])
    for key in ("lava", "fixed", "float"):
        totals[key] = np.concatenate(totals[key])
    return totals


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


def _event_counts(export, network: QuantizedNetwork, input_events: np.ndarray,
                  spike_totals: list[np.ndarray], samples: int) -> EventCounts:
    """The result file's counts: Lava's spikes per layer (summed over samples and steps),
    the graded input into the first (non-zero inputs per position, summed over samples)."""
    totals = iter(spike_totals)
    layers = []
    for lay in network.layers:
        try:
            geometry = lay.geometry()
        except ValueError as exc:
            raise NeuroKDError(f"{export}: layer {lay.name}: {exc}") from None
        layers.append((lay.name, geometry, next(totals) if lay.spiking else None))
    # The input is repeated at every timestep: its events are the non-zero values x T.
    return layer_chain(layers, input_events * network.timesteps, samples,
                       network.timesteps)


def write_result(path: str | Path, result: SimulationResult) -> Path:
    """The result ``.npz`` (``neurokd.energy.lava``'s format), written atomically."""
    if result.counts is None:
        raise NeuroKDError(f"the {result.backend} run of {result.export} kept no per-layer counts")
    return write_lava_result(path, result.counts, result.backend)


__all__ = ["simulate", "SimulationResult", "write_result", "lava_python"]
