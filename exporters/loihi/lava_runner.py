"""Run a lava-dl netx HDF5 network in Lava's CPU simulator, bit-accurate fixed point.

Runs inside ``.venv-lava`` (Python 3.10, lava-nc 0.10, lava-dl 0.6): no neurokd imports.
``neurokd simulate --backend lava`` starts it as::

    .venv-lava/bin/python lava_runner.py REQUEST.npz RESULT.npz

REQUEST (``np.savez``, no pickles): ``net`` (path of the .net file), ``inputs`` (int32
``[N, *input_shape]`` graded input values in C,H,W order, presented for ``timesteps`` steps
each; with ``per_step`` 1, ``[N, T, *input_shape]``, one input per step: binary spikes of event
frames or rate-coded data), ``timesteps``, ``message_bits`` (graded input bits; 0: binary
spikes), ``chunk`` (samples per run call; one progress line ``progress DONE TOTAL`` on stdout
after each), ``per_step`` (optional, default 0).

RESULT: ``spikes_{k}`` (uint8 ``[N, T, *shape]`` in C,H,W order) for every layer ``k``
(recorded by ``SpikeRecorder`` processes),
``readout`` (int64 ``[N, T, *shape]``: the last layer's membrane ``v`` at every step),
``seconds`` (simulation wall time, building excluded), ``layers``.

Samples are streamed back to back, ``T`` steps each, in one Lava run: netx's
``reset_interval=T`` zeroes ``u`` and ``v`` of layer ``k`` every ``T`` steps at phase
``reset_offset + 1 + k``. Every synapse delays by one step (it sends what it received the
step before), so with the input of sample ``n`` sent at steps ``nT+1 .. nT+T``, layer ``k``
integrates it at steps ``nT+k+2 ..``: ``reset_offset=1`` resets each layer exactly as its
sample arrives, as spikingjelly's ``reset_net`` does between samples. The sinks record step
``s`` at index ``s-1``, hence layer ``k``, sample ``n``, step ``t`` at ``nT + t + k + 1``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class SpikeRecorder(AbstractProcess):
    """Keeps every step's spikes in its own process and saves them to ``path`` (``.npy``) at
    step ``steps``: fetching a large ``io.sink.RingBuffer`` through Lava takes twice as long
    as simulating it."""

    def __init__(self, *, shape: tuple[int, ...], steps: int, path: str) -> None:
        super().__init__(shape=shape, steps=steps, path=path)
        self.a_in = InPort(shape=shape)


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeRecorder(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.steps, self.path = proc_params["steps"], proc_params["path"]
        self.record = np.zeros(tuple(proc_params["shape"]) + (self.steps,), dtype=np.uint8)

    def run_spk(self) -> None:
        self.record[..., self.time_step - 1] = self.a_in.recv()
        if self.time_step == self.steps:
            np.save(self.path, self.record)


def build(net_path: str, steps: int, timesteps: int, message_bits: int, inputs: np.ndarray,
          folder: Path, per_step: bool = False):
    from lava.lib.dl import netx
    from lava.proc import io

    net = netx.hdf5.Network(net_config=net_path, input_message_bits=message_bits,
                            reset_interval=timesteps, reset_offset=1)
    if len(net.inp.shape) == 1:  # a dense first layer takes the sample flat, in C,H,W order
        inputs = inputs.reshape(*inputs.shape[:1 + per_step], -1)
    source = io.source.RingBuffer(data=lava_layout(inputs, steps, timesteps, per_step))
    source.s_out.connect(net.inp)
    records = []
    for k, layer in enumerate(net.layers):
        records.append(folder / f"spikes_{k}.npy")
        sink = SpikeRecorder(shape=layer.out.shape, steps=steps, path=str(records[-1]))
        layer.out.connect(sink.a_in)
    readout = io.sink.Read(buffer=steps)
    readout.connect_var(net.layers[-1].neuron.v)
    return net, records, readout


def lava_layout(inputs: np.ndarray, steps: int, timesteps: int,
                per_step: bool = False) -> np.ndarray:
    """``[N, C, H, W]`` (or ``[N, F]``) -> netx's ``[W, H, C, steps]`` stream, zero-padded;
    ``per_step``: ``[N, T, C, H, W]``, step ``t`` of sample ``n`` at ``nT + t``."""
    count = len(inputs)
    repeated = (inputs.reshape(-1, *inputs.shape[2:]) if per_step      # [N*T, ...]
                else np.repeat(inputs, timesteps, axis=0))
    order = tuple(range(repeated.ndim - 1, 0, -1)) + (0,)       # reverse C,H,W; time last
    data = np.zeros(repeated.shape[:0:-1] + (steps,), dtype=np.int32)
    data[..., :count * timesteps] = repeated.transpose(order)
    return data


def per_sample(recorded: np.ndarray, layer: int, count: int, timesteps: int) -> np.ndarray:
    """A sink's ``[W, H, C, steps]`` record -> ``[N, T, C, H, W]`` aligned to the samples."""
    index = (np.arange(count)[:, None] * timesteps + np.arange(timesteps)[None, :]
             + layer + 1)
    picked = recorded[..., index]                               # [W, H, C, N, T]
    spatial = recorded.ndim - 1
    order = (spatial, spatial + 1) + tuple(range(spatial - 1, -1, -1))
    return picked.transpose(order)


def synaptic_layers(net_path: str) -> int:
    import h5py

    with h5py.File(net_path, "r") as handle:
        kinds = [handle[f"layer/{i}/type"][0] for i in range(len(handle["layer"]))]
    return sum(kind not in (b"input", b"flatten") for kind in kinds)


def main(request_path: str, result_path: str) -> None:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    with np.load(request_path, allow_pickle=False) as request:
        net_path = str(request["net"])
        inputs = request["inputs"].astype(np.int32)
        timesteps = int(request["timesteps"])
        message_bits = int(request["message_bits"])
        chunk = max(1, int(request["chunk"]))
        per_step = bool(int(request["per_step"])) if "per_step" in request.files else False
    count = len(inputs)
    layers = synaptic_layers(net_path)
    steps = count * timesteps + layers + 1  # the tail lets the deepest layer finish
    folder = Path(tempfile.mkdtemp(prefix="lava-runner-", dir=Path(result_path).parent))
    net, records, readout = build(net_path, steps, timesteps, message_bits, inputs, folder,
                                  per_step)
    config = Loihi2SimCfg(select_tag="fixed_pt",
                          exception_proc_model_map={SpikeRecorder: PySpikeRecorder})
    started, done = time.perf_counter(), 0
    try:
        while done < count:
            size = min(chunk, count - done)
            net.run(condition=RunSteps(num_steps=size * timesteps), run_cfg=config)
            done += size
            print(f"progress {done} {count}", flush=True)
        net.run(condition=RunSteps(num_steps=steps - count * timesteps), run_cfg=config)
        seconds = time.perf_counter() - started
        potentials = readout.data.get()
    finally:
        net.stop()
    recorded = [np.load(path) for path in records]
    for path in records:
        path.unlink()
    folder.rmdir()
    arrays = {f"spikes_{k}": per_sample(rec, k, count, timesteps).astype(np.uint8)
              for k, rec in enumerate(recorded)}
    arrays["readout"] = per_sample(potentials, layers - 1, count, timesteps).astype(np.int64)
    np.savez(result_path, seconds=np.array(seconds), layers=np.array(layers), **arrays)


if __name__ == "__main__":
    # Run as a script, this file's folder is sys.path[0]: none of its siblings (lava_backend.py,
    # onnx_backend.py, ...) may shadow a library that Lava imports.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    if len(sys.argv) != 3:
        raise SystemExit("usage: lava_runner.py REQUEST.npz RESULT.npz")
    main(sys.argv[1], sys.argv[2])
