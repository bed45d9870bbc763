"""The host side of the Lava process: which interpreter runs it, and one call that runs it.

Lava (lava-nc 0.10 / lava-dl 0.6) needs Python 3.10, numpy < 2 and torch 2.3, so it lives in
its own environment and ``lava_runner.py`` (which imports no neurokd) runs there as a
subprocess; the two sides exchange ``.npz`` files without pickles (request and result layout:
``lava_runner.py``). The Loihi export (its Lava check) and ``neurokd simulate --backend lava``
both go through :func:`run_lava`.

The interpreter is, in this order: ``NEUROKD_LAVA_PYTHON``; ``.venv-lava/bin/python`` in the
working folder or any folder above it (a checkout the user works in); ``.venv-lava`` beside the
checkout this package was installed from (an editable install); else a clear error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from neurokd.errors import ExternalToolError, NeuroKDError
from neurokd.runtime.progress import Reporter

RUNNER = Path(__file__).with_name("lava_runner.py")
INPUT_MESSAGE_BITS = 8   # graded input spikes into the first layer: 8-bit values
SPIKE_MESSAGE_BITS = 0   # binary input spikes (event frames, rate-coded data)
_VENV = Path(".venv-lava") / "bin" / "python"


def lava_python() -> Path:
    """The interpreter holding lava-dl (see the module docstring for the search order)."""
    chosen = os.environ.get("NEUROKD_LAVA_PYTHON")
    if chosen:
        path = Path(chosen)
        if _runnable(path):
            return path
        raise NeuroKDError(f"NEUROKD_LAVA_PYTHON={chosen} is not an executable Python: point "
                           "it at the python of an environment with lava-dl 0.6.0 (`make lava` "
                           "builds one in .venv-lava)")
    here = Path.cwd().resolve()
    candidates = [folder / _VENV for folder in (here, *here.parents)]
    candidates.append(Path(__file__).resolve().parents[2] / _VENV)  # the repository root
    for path in candidates:
        if _runnable(path):
            return path
    raise NeuroKDError(f"no Lava environment: no {_VENV} in {here} or a folder above it; run "
                       "`make lava` in the neurokd checkout (Python 3.10 with lava-dl 0.6.0) or "
                       "set NEUROKD_LAVA_PYTHON to its python")


def _runnable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def run_lava(python: Path, export: Path, inputs: np.ndarray, timesteps: int,
             reporter: Reporter | None = None, chunk: int = 20,
             spikes: bool = False) -> dict[str, np.ndarray]:
    """Run ``export`` (a netx file) in Lava on integer graded ``inputs`` ``[N, ...]``, each
    presented for ``timesteps`` steps, or (``spikes``) on binary spikes ``[N, T, ...]``, one
    input per step; the runner's result arrays (``spikes_{k}``, ``readout``, ``seconds``).
    The runner's temporary folder and process never outlive this call, also when it is
    interrupted."""
    reporter = reporter or Reporter()
    with tempfile.TemporaryDirectory(prefix="neurokd-lava-") as folder:
        request, result = Path(folder) / "request.npz", Path(folder) / "result.npz"
        np.savez(request, net=np.array(str(Path(export).resolve())),
                 inputs=inputs.astype(np.int32), timesteps=np.array(timesteps),
                 message_bits=np.array(SPIKE_MESSAGE_BITS if spikes else INPUT_MESSAGE_BITS),
                 chunk=np.array(chunk), per_step=np.array(int(spikes)))
        task = reporter.start("Lava simulation (samples)", len(inputs))
        log = Path(folder) / "stderr.txt"
        with open(log, "w") as stderr:  # a file: a chatty runner cannot block on a full pipe
            process = start_child([str(python), str(RUNNER), str(request), str(result)],
                                  stdout=subprocess.PIPE, stderr=stderr, text=True)
            try:
                _follow(process, reporter, task)
            finally:
                _stop(process)
        if process.returncode != 0:
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            raise ExternalToolError(f"the Lava simulation failed (exit {process.returncode}): "
                                    f"{tail[-1] if tail else 'no output'}")
        with np.load(result, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        reporter.finish(task, f"{float(arrays['seconds']):.1f} s")
    return arrays


def start_child(args: list[str], **options) -> subprocess.Popen:
    """A child in a process group of its own (so ``_stop`` can end everything it starts) that
    the kernel kills if this process dies without running its ``finally`` blocks (SIGKILL,
    an OOM kill): no Lava runner outlives neurokd."""
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent,
                            **options)


def _die_with_parent() -> None:
    """In the child, before exec: ask for SIGKILL when the parent dies (Linux prctl
    PR_SET_PDEATHSIG; elsewhere a no-op, the process group kill still applies)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _follow(process: subprocess.Popen, reporter: Reporter, task) -> None:
    done = 0
    for line in process.stdout:
        if line.startswith("progress "):
            now = int(line.split()[1])
            reporter.advance(task, now - done)
            done = now
    process.wait()


def _stop(process: subprocess.Popen) -> None:
    """The runner and everything it started end with this call (Lava starts processes of its
    own): its whole process group is killed if it is still running."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
