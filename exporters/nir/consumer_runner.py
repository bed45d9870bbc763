"""Run a NIR file in one of the SNN libraries that import NIR, as its own documentation says.

Imports no neurokd: it also runs as a script (``python consumer_runner.py REQUEST RESULT``) in
a subprocess whose path holds a library that cannot be installed beside neurokd's (Sinabs
3.1.3 pins nir <= 1.0.4). Both files are ``.npz`` without pickles:

- request: ``consumer`` (name), ``path`` (the NIR file), ``inputs`` ``[N, ...]`` float32
  (static samples, already in the NIR input shape), ``timesteps``, ``dt``, ``chunks`` (the
  batch sizes to run, summing to N);
- result: ``logits`` ``[T, N, K]`` and ``version``, or ``error`` (the library's exception,
  type and first line).

Every library gets each chunk as a fresh network state, the static input repeated T times, and
the calling convention its NIR import documents (they differ: per step with explicit or hidden
state, one call over ``[T, B, ...]``, ``[B*T, ...]`` batch-major, ``[B, T, N]``).
``samna`` (a hardware SDK whose PyPI stub downloads at import) is blocked before any library
is imported: Rockpool probes for it when it is imported.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from importlib import metadata

import numpy as np

# The distribution each consumer is installed as.
PACKAGES = {"snntorch": "snntorch", "norse": "norse", "spikingjelly": "spikingjelly",
            "sinabs": "sinabs", "rockpool": "rockpool"}


def block_samna() -> None:
    """``import samna`` raises ImportError from here on, whatever is installed."""
    sys.modules["samna"] = None


def read_graph(path: str):
    """``nir.read`` as the libraries are given the file; the type check only when it passes
    (graphs of other producers often fail it, and every library reads without it too)."""
    import nir

    try:
        return nir.read(path)
    except ValueError:
        return nir.read(path, type_check=False)


def _per_step(net, x):
    """``(out, state) = net(x_t, state)`` over the timesteps, from a fresh state."""
    state, outputs = None, []
    for frame in x:
        out, state = net(frame, state)
        outputs.append(out)
    return _stack(outputs)


def _run_snntorch(graph, x, dt: float):
    import snntorch.utils
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(graph)  # dt is fixed at 1e-4 inside snnTorch's importer
    snntorch.utils.reset(net)  # hidden state lives in the modules (init_hidden=True)
    return _per_step(net, x)


def _run_norse(graph, x, dt: float):
    import norse.torch

    return _per_step(norse.torch.from_nir(graph, dt=dt), x)  # Norse's default dt is 1e-3


def _run_spikingjelly(graph, x, dt: float):
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    # step_mode="s" (its default): in "m" mode nodes it maps through nirtorch's defaults
    # (SumPool2d -> LPPool2d) receive [T, B, ...] and fail
    return _per_step(import_from_nir(graph, dt=dt, step_mode="s"), x)


def _run_sinabs(graph, x, dt: float):
    import sinabs

    steps, batch = x.shape[:2]
    net = sinabs.from_nir(graph, batch_size=batch)
    for module in net.modules():  # state persists in the layers between calls
        if hasattr(module, "reset_states"):
            module.reset_states()
    flat = x.transpose(0, 1).reshape(batch * steps, *x.shape[2:])  # [B*T, ...], batch-major
    out = net(flat)
    out = out[0] if isinstance(out, tuple) else out
    return out.reshape(batch, steps, -1).transpose(0, 1)


def _run_rockpool(graph, x, dt: float):
    from rockpool.nn.modules import from_nir

    net = from_nir(graph)
    out = net(x.transpose(0, 1))  # [B, T, N]; the whole sequence in one call, fresh state
    out = out[0] if isinstance(out, tuple) else out
    return out.transpose(0, 1)


RUNNERS = {"snntorch": _run_snntorch, "norse": _run_norse, "spikingjelly": _run_spikingjelly,
           "sinabs": _run_sinabs, "rockpool": _run_rockpool}


def _stack(outputs):
    import torch

    return torch.stack([o[0] if isinstance(o, tuple) else o for o in outputs])


def version(consumer: str) -> str:
    try:
        return metadata.version(PACKAGES[consumer])
    except metadata.PackageNotFoundError:
        return ""


def run_consumer(consumer: str, path: str, inputs: np.ndarray, timesteps: int, dt: float,
                 chunks: list[int]) -> np.ndarray:
    """Logits ``[T, N, K]`` of the NIR file at ``path`` run by ``consumer`` on ``inputs``."""
    import torch

    block_samna()
    runner = RUNNERS[consumer]
    outputs, start = [], 0
    with _quiet():
        graph = read_graph(path)
        for size in chunks:
            x = torch.as_tensor(inputs[start:start + size], dtype=torch.float32)
            start += size
            seq = x.unsqueeze(0).expand(timesteps, *x.shape).contiguous()
            with torch.no_grad():
                out = runner(graph, seq, dt)
            outputs.append(out.detach().float().reshape(timesteps, size, -1).cpu().numpy())
    return np.concatenate(outputs, axis=1)


@contextlib.contextmanager
def _quiet():
    """The libraries print and log while importing (snnTorch: "replace rnn subgraph ...")."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def main(request_path: str, result_path: str) -> int:
    with np.load(request_path, allow_pickle=False) as request:
        consumer = str(request["consumer"])
        arrays = dict(path=str(request["path"]), inputs=request["inputs"],
                      timesteps=int(request["timesteps"]), dt=float(request["dt"]),
                      chunks=[int(c) for c in request["chunks"]])
    try:
        logits = run_consumer(consumer, **arrays)
    except Exception as exc:  # noqa: BLE001 - the library's failure is the result to report
        np.savez(result_path, error=np.array(describe(exc)), version=np.array(version(consumer)))
        return 0
    np.savez(result_path, logits=logits, version=np.array(version(consumer)))
    return 0


if __name__ == "__main__":
    # Run as a script, this file's folder is sys.path[0]: none of its siblings may shadow a
    # library a consumer imports (export.py, simulator.py, ...).
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.exit(main(sys.argv[1], sys.argv[2]))
