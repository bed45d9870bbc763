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

Lava runs every process model in a worker process of its own and waits on them without a
timeout: a worker that dies (an OOM kill, a segfault, SIGKILL) would leave this runner waiting
forever. A watch thread (:class:`Watch`) looks at the workers twice a second and, when one has
died, says which on stderr, kills the others, removes the shared-memory segments of Lava's
channels and the runner's folder, and exits 1. SIGTERM (the host stopping the run) does the
same cleanup and exits 143. The names of those segments are also kept in RESULT with the
suffix ``.shm`` (one a line, rewritten as they appear), so the host can remove them when the
runner itself is killed outright.

Samples are streamed back to back, ``T`` steps each, in one Lava run: netx's
``reset_interval=T`` zeroes ``u`` and ``v`` of layer ``k`` every ``T`` steps at phase
``reset_offset + 1 + k``. Every synapse delays by one step (it sends what it received the
step before), so with the input of sample ``n`` sent at steps ``nT+1 .. nT+T``, layer ``k``
integrates it at steps ``nT+k+2 ..``: ``reset_offset=1`` resets each layer exactly as its
sample arrives, as spikingjelly's ``reset_net`` does between samples. The sinks record step
``s`` at index ``s-1``, hence layer ``k``, sample ``n``, step ``t`` at ``nT + t + k + 1``.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
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


POLL_SECONDS = 0.5  # how often the watch looks at Lava's workers


def child_pids() -> list[int]:
    """This process's children (Linux ``/proc``), listed without reaping any, so Lava's own
    bookkeeping of its workers is left as it is."""
    me, found = os.getpid(), []
    if not os.path.isdir("/proc"):  # not Linux: the children multiprocessing knows of
        return [process.pid for process in multiprocessing.active_children()]
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()  # the name may hold spaces
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry.name))
    return found


def ended(code: int) -> str:
    """How a process with exit code ``code`` (multiprocessing's: -N for signal N) ended."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"


class Watch:
    """The runner's way out when Lava cannot finish (module docstring): a dead worker found by
    the watch thread, or SIGTERM. Either way every child is killed, the shared memory and
    ``folder`` are removed, and the process exits without waiting on Lava."""

    def __init__(self, segments_file: Path) -> None:
        self.net = None
        self.folder: Path | None = None
        self.segments_file = segments_file
        self._recorded: list[str] = []
        self._seen: dict[int, multiprocessing.process.BaseProcess] = {}
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._exiting = threading.Lock()  # one cleanup, whoever comes first
        signal.signal(signal.SIGTERM, lambda *_: self.abort(128 + signal.SIGTERM))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="lava-worker-watch",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """From here workers end on purpose (``net.stop()`` joins them): no longer a crash.
        Waits for the thread, so none of its polls overlaps Lava's joins."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        while not self._stopped.wait(POLL_SECONDS):
            self._record_segments()
            dead = self.dead_worker()
            if dead is not None:
                self.abort(1, f"a Lava worker process (pid {dead[0]}) {ended(dead[1])}; the "
                           "simulation cannot finish")

    def dead_worker(self) -> tuple[int, int] | None:
        """``(pid, exit code)`` of a worker that ended with a signal or an error, if any.

        Candidates are every process Lava's runtime started (it keeps them all, also those
        multiprocessing has reaped already: starting the next worker reaps the ones that
        ended) and every child multiprocessing has seen live (its shared-memory server). An
        exit code 0 is not a crash: Lava reports its own errors."""
        for process in multiprocessing.active_children():  # reaps the ended ones
            self._seen.setdefault(process.pid, process)
        for process in [*self._seen.values(), *lava_processes(self.net)]:
            try:
                code = process.exitcode
            except ValueError:  # closed: joined by Lava
                continue
            if code:
                return process.pid, code
        return None

    def _record_segments(self) -> None:
        names = shared_memory(self.net)
        if names != self._recorded:
            partial = self.segments_file.with_name(self.segments_file.name + ".part")
            partial.write_text("".join(f"{name}\n" for name in names))
            os.replace(partial, self.segments_file)  # the host never reads half a list
            self._recorded = names

    def abort(self, code: int, message: str = "") -> None:
        self._exiting.acquire()  # never released: this process ends here
        if message:
            print(message, file=sys.stderr, flush=True)
        for pid in child_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for name in shared_memory(self.net):
            try:
                os.unlink(f"/dev/shm/{name.lstrip('/')}")
            except OSError:
                pass
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        os._exit(code)  # no atexit: multiprocessing's would join the dead worker, forever


def _infrastructure(net):
    """The message infrastructure of ``net``'s runtime (lava-nc 0.10: its worker processes
    and shared memory); None before the first run creates the runtime."""
    return getattr(getattr(net, "runtime", None), "_messaging_infrastructure", None)


def lava_processes(net) -> list[multiprocessing.process.BaseProcess]:
    """Every worker process Lava's runtime has started (its ``actors``)."""
    return list(getattr(_infrastructure(net), "actors", None) or [])


def shared_memory(net) -> list[str]:
    """Names of the shared-memory segments of Lava's channels (their handles are kept by the
    runtime's message infrastructure); a killed worker leaves them in /dev/shm unless someone
    removes them."""
    manager = getattr(_infrastructure(net), "smm", None)
    handles = getattr(manager, "_shared_memory_handles", None) or []
    return [str(getattr(handle, "name", "")) for handle in list(handles)
            if getattr(handle, "name", "")]


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
    if graph_request(request_path):  # neurokd's graph file: residual adds, max pooling
        return main_graph(request_path, result_path)
    watch = Watch(Path(result_path).with_suffix(".shm"))
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
    watch.folder = folder
    net, records, readout = build(net_path, steps, timesteps, message_bits, inputs, folder,
                                  per_step)
    watch.net = net
    config = Loihi2SimCfg(select_tag="fixed_pt",
                          exception_proc_model_map={SpikeRecorder: PySpikeRecorder})
    started, done = time.perf_counter(), 0
    watch.start()
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
        watch.stop()
        net.stop()
    recorded = [np.load(path) for path in records]
    for path in records:
        path.unlink()
    folder.rmdir()
    arrays = {f"spikes_{k}": per_sample(rec, k, count, timesteps).astype(np.uint8)
              for k, rec in enumerate(recorded)}
    arrays["readout"] = per_sample(potentials, layers - 1, count, timesteps).astype(np.int64)
    np.savez(result_path, seconds=np.array(seconds), layers=np.array(layers), **arrays)


# ---------------------------------------------------------------- neurokd's graph file
#
# A network with residual adds or max pooling is not netx (a chain) but neurokd's graph file
# (``exporters/loihi/graph_file.py``, docs/formats.md): neuron groups (``CUBA``, as netx has
# them) and the synapses between them, each synapse from a group or the input (-1). It is
# built here from Lava's own processes: ``LIFReset`` per group, ``Conv`` / ``Dense`` per
# synapse; a group's ``a_in`` that several synapses connect to sums them (a residual add).
# Every synapse delays by one step, so a group at depth d (1 + the depth of its sources, which
# the file aligns with relay groups) integrates step t of sample n at step nT + t + d + 1 and
# is reset there (``reset_offset = d + 1``); its recorder holds it at index nT + t + d.
# RESULT: ``spikes_{g}`` for every spiking group g (file order), ``readout`` (the last group's
# v, when it does not spike), ``depths``, ``seconds``.


def graph_request(request_path: str) -> bool:
    """Whether the request's ``net`` is a graph file (its ``neurokd.format`` says so)."""
    import json

    import h5py

    with np.load(request_path, allow_pickle=False) as request:
        net_path = str(request["net"])
    with h5py.File(net_path, "r") as handle:
        value = handle.attrs.get("neurokd.format")
    return value is not None and json.loads(value) == "neurokd.loihi-graph"


def read_graph_spec(net_path: str) -> tuple[list[dict], list[dict], tuple[int, ...]]:
    """Groups, synapses and the input shape of a graph file (validated by neurokd before it
    asks for this run: here it is only read)."""
    import json

    import h5py

    with h5py.File(net_path, "r") as handle:
        roles = json.loads(handle.attrs["neurokd.group_roles"])
        input_shape = tuple(json.loads(handle.attrs["neurokd.input_shape"]))
        groups = []
        for i, role in enumerate(roles):
            entry = handle[f"group/{i}"]
            neuron = entry["neuron"]
            groups.append({"shape": tuple(int(d) for d in entry["shape"][()]),
                           "bias": entry["bias"][()].astype(np.int64), "role": role,
                           "iDecay": int(neuron["iDecay"][()]),
                           "vDecay": int(neuron["vDecay"][()]),
                           "vThMant": int(neuron["vThMant"][()])})
        synapses = []
        for j in range(len(handle["synapse"])):
            entry = handle[f"synapse/{j}"]
            synapse = {key: entry[key][()] for key in entry}
            synapse["type"] = synapse["type"][0].decode("ascii")
            synapses.append(synapse)
    return groups, synapses, input_shape


def graph_depths(groups: list[dict], synapses: list[dict]) -> list[int]:
    depths: list[int] = []
    for index in range(len(groups)):
        sources = [int(s["source"]) for s in synapses if int(s["target"]) == index]
        depths.append(1 + max((0 if s < 0 else depths[s] for s in sources), default=0))
    return depths


def build_graph(net_path: str, steps: int, timesteps: int, message_bits: int,
                inputs: np.ndarray, folder: Path, per_step: bool = False):
    """The graph as Lava processes; (the input process, per spiking group its recorder's
    path, the readout's ``Read`` or None, the groups' depths)."""
    from lava.proc import io
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIFReset

    groups, synapses, input_shape = read_graph_spec(net_path)
    depths = graph_depths(groups, synapses)
    source = io.source.RingBuffer(data=lava_layout(inputs, steps, timesteps, per_step))
    neurons = []
    for group, depth in zip(groups, depths, strict=True):
        shape = group["shape"]
        bias = np.broadcast_to(group["bias"].reshape((-1,) + (1,) * (len(shape) - 1)), shape)
        neurons.append(LIFReset(
            shape=shape[::-1], du=group["iDecay"] - 1, dv=group["vDecay"], vth=group["vThMant"],
            bias_mant=np.ascontiguousarray(bias.T).astype(np.int32), bias_exp=6,
            reset_interval=timesteps, reset_offset=(depth + 1) % timesteps))
    for synapse in synapses:
        origin = int(synapse["source"])
        port = source.s_out if origin < 0 else neurons[origin].s_out
        origin_shape = tuple(input_shape) if origin < 0 else groups[origin]["shape"]
        bits = message_bits if origin < 0 else 0
        weight = synapse["weight"].astype(np.int32)
        if synapse["type"] == "conv":  # as netx loads a conv: flipped, (out, W, H, in)
            split = int(synapse["groups"])
            if split > 127:  # Lava's Conv keeps groups in an int8 Var (128 reads as -128)
                weight, split = block_diagonal(weight, split), 1
            process = Conv(weight=np.ascontiguousarray(
                weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)),
                input_shape=origin_shape[::-1], padding=tuple(synapse["padding"][::-1]),
                stride=tuple(synapse["stride"][::-1]),
                dilation=tuple(synapse["dilation"][::-1]), groups=split,
                num_message_bits=bits, num_weight_bits=8, weight_exp=0)
        else:
            process = Dense(weights=weight, num_message_bits=bits, num_weight_bits=8,
                            weight_exp=0)
            if len(origin_shape) > 1:  # flattened in C,H,W order, as netx flattens
                port = port.transpose([2, 1, 0]).flatten()
        port.connect(process.s_in)
        process.a_out.connect(neurons[int(synapse["target"])].a_in)
    records = {}
    for index, (group, neuron) in enumerate(zip(groups, neurons, strict=True)):
        if group["role"] == "readout":
            continue
        records[index] = folder / f"spikes_{index}.npy"
        sink = SpikeRecorder(shape=neuron.s_out.shape, steps=steps, path=str(records[index]))
        neuron.s_out.connect(sink.a_in)
    readout = None
    if groups[-1]["role"] == "readout":
        readout = io.sink.Read(buffer=steps)
        readout.connect_var(neurons[-1].v)
    return source, records, readout, depths


def block_diagonal(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv's weight ``(out, in/groups, kH, kW)`` as the ungrouped conv it equals
    (zeros between the groups): the same sums, which Lava's Conv can hold."""
    out, per_group = weight.shape[:2]
    full = np.zeros((out, per_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    step = out // groups
    for g in range(groups):
        full[g * step:(g + 1) * step, g * per_group:(g + 1) * per_group] = \
            weight[g * step:(g + 1) * step]
    return full


def main_graph(request_path: str, result_path: str) -> None:
    """``main`` for a graph file: the same request, the same streaming and clean-up."""
    watch = Watch(Path(result_path).with_suffix(".shm"))
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
    groups, synapses, _ = read_graph_spec(net_path)
    deepest = max(graph_depths(groups, synapses))
    steps = count * timesteps + deepest + 1  # the tail lets the deepest group finish
    folder = Path(tempfile.mkdtemp(prefix="lava-runner-", dir=Path(result_path).parent))
    watch.folder = folder
    net, records, readout, depths = build_graph(net_path, steps, timesteps, message_bits,
                                                inputs, folder, per_step)
    watch.net = net
    config = Loihi2SimCfg(select_tag="fixed_pt",
                          exception_proc_model_map={SpikeRecorder: PySpikeRecorder})
    started, done = time.perf_counter(), 0
    watch.start()
    try:
        while done < count:
            size = min(chunk, count - done)
            net.run(condition=RunSteps(num_steps=size * timesteps), run_cfg=config)
            done += size
            print(f"progress {done} {count}", flush=True)
        net.run(condition=RunSteps(num_steps=steps - count * timesteps), run_cfg=config)
        seconds = time.perf_counter() - started
        potentials = None if readout is None else readout.data.get()
    finally:
        watch.stop()
        net.stop()
    arrays = {}
    for index, path in records.items():
        arrays[f"spikes_{index}"] = per_sample(np.load(path), depths[index] - 1, count,
                                               timesteps).astype(np.uint8)
        path.unlink()
    folder.rmdir()
    if potentials is not None:
        arrays["readout"] = per_sample(potentials, depths[-1] - 1, count,
                                       timesteps).astype(np.int64)
    np.savez(result_path, seconds=np.array(seconds), depths=np.array(depths), **arrays)


if __name__ == "__main__":
    # Run as a script, this file's folder is sys.path[0]: none of its siblings (lava_backend.py,
    # onnx_backend.py, ...) may shadow a library that Lava imports.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    if len(sys.argv) != 3:
        raise SystemExit("usage: lava_runner.py REQUEST.npz RESULT.npz")
    main(sys.argv[1], sys.argv[2])
