"""The host side of the Lava process: which interpreter runs it, and one call that runs it.

Lava (lava-nc 0.10 / lava-dl 0.6) needs Python 3.10, numpy < 2 and torch 2.3, so it lives in
its own environment and ``lava_runner.py`` (which imports no neurokd) runs there as a
subprocess; the two sides exchange ``.npz`` files without pickles (request and result layout:
``lava_runner.py``). The Loihi export (its Lava check) and ``neurokd simulate --backend lava``
both go through :func:`run_lava`.

The interpreter is, in this order: ``NEUROKD_LAVA_PYTHON``; ``.venv-lava/bin/python`` in the
working folder or any folder above it (a checkout the user works in); ``.venv-lava`` beside the
checkout this package was installed from (an editable install); else a clear error.

A crashed Lava is exit 1, noticed within a second: the runner ends itself when one of Lava's
workers dies (``lava_runner.Watch``), and the host watches the runner's exit rather than its
output (orphaned workers would keep that pipe open after the runner is gone). Whatever the
runner leaves running is killed with its process group.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from neurokd.errors import ExternalToolError, NeuroKDError, ToolMissing
from neurokd.runtime.progress import Reporter

RUNNER = Path(__file__).with_name("lava_runner.py")
INPUT_MESSAGE_BITS = 8   # graded input spikes into the first layer: 8-bit values
SPIKE_MESSAGE_BITS = 0   # binary input spikes (event frames, rate-coded data)
_VENV = Path(".venv-lava") / "bin" / "python"
POLL_SECONDS = 0.5       # how often the host looks whether the runner is still alive
TERM_GRACE_SECONDS = 5   # the runner's time to clean up after SIGTERM before SIGKILL


def lava_python() -> Path:
    """The interpreter holding lava-dl (see the module docstring for the search order);
    ToolMissing (exit 1: the machine lacks it, the input is fine) when there is none."""
    chosen = os.environ.get("NEUROKD_LAVA_PYTHON")
    if chosen:
        path = Path(chosen)
        if _runnable(path):
            return path
        raise ToolMissing(f"NEUROKD_LAVA_PYTHON={chosen} is not an executable Python: point "
                           "it at the python of an environment with lava-dl 0.6.0 (`make lava` "
                           "builds one in .venv-lava)")
    here = Path.cwd().resolve()
    candidates = [folder / _VENV for folder in (here, *here.parents)]
    candidates.append(Path(__file__).resolve().parents[2] / _VENV)  # the repository root
    for path in candidates:
        if _runnable(path):
            return path
    raise ToolMissing(f"no Lava environment: no {_VENV} in {here} or a folder above it; run "
                       "`make lava` in the neurokd checkout (Python 3.10 with lava-dl 0.6.0) or "
                       "set NEUROKD_LAVA_PYTHON to its python")


def require_lava(lava_samples: int) -> None:
    """Before any work: ToolMissing when ``lava_samples`` asks for a Lava check and no Lava
    environment is there. A file exported "checked in Lava" that was not is worse than an
    error, so a missing Lava is never skipped silently; ``lava_samples=0`` asks for no check.
    """
    if lava_samples <= 0:
        return
    try:
        lava_python()
    except NeuroKDError as exc:
        raise ToolMissing(f"Loihi export: the Lava check of the written file cannot run: {exc}; "
                          "nothing written (lava_samples=0 exports without that check)") from None


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
                                  stdout=subprocess.PIPE, stderr=stderr)
            try:
                _follow(process, reporter, task)
            finally:
                stop_child(process)
                if process.returncode != 0:
                    _remove_segments(result.with_suffix(".shm"))
        if process.returncode < 0:
            number = -process.returncode
            raise ExternalToolError(f"the Lava simulation crashed: its runner was killed by "
                                    f"signal {number} ({signal_name(number)})")
        if process.returncode != 0:
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            raise ExternalToolError(f"the Lava simulation failed (exit {process.returncode}): "
                                    f"{tail[-1] if tail else 'no output'}")
        with np.load(result, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        reporter.finish(task, f"{float(arrays['seconds']):.1f} s")
    return arrays


def start_child(args: list[str], **options) -> subprocess.Popen:
    """A child in a process group of its own (so :func:`stop_child` can end everything it
    starts) that the kernel kills if this process dies without running its ``finally`` blocks
    (SIGKILL, an OOM kill): no Lava runner or NIR consumer outlives neurokd."""
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


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9: how a child killed by a signal is reported."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def child_exited(process: subprocess.Popen) -> bool:
    """Whether a child of :func:`start_child` has ended, asked without reaping it: while it is
    an unreaped zombie its pid, and so its process group id, cannot be reused, and killing
    the group stays safe."""
    if process.returncode is not None:
        return True
    if not hasattr(os, "waitid"):  # macOS: poll() reaps it, and stop_child then leaves its
        return process.poll() is not None  # group alone (that id may be reused)
    try:
        return os.waitid(os.P_PID, process.pid,
                         os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _follow(process: subprocess.Popen, reporter: Reporter, task) -> None:
    """Advance the progress bar from the runner's ``progress DONE TOTAL`` lines until the
    runner exits. Its exit, not the end of its output, ends the wait: Lava's workers inherit
    the pipe and would hold it open after a crashed runner."""
    done, pending, fd = 0, b"", process.stdout.fileno()
    while not child_exited(process):
        if fd < 0:  # the pipe has ended; the runner is on its way out
            time.sleep(POLL_SECONDS / 10)
            continue
        ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            fd = -1
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"progress "):
                now = int(line.split()[1])
                reporter.advance(task, now - done)
                done = now


def _remove_segments(listing: Path) -> None:
    """The shared-memory segments a runner that was killed outright could not remove (it
    lists them in ``listing``, lava_runner.Watch). Only names of the form Python's
    ``multiprocessing.shared_memory`` gives (``psm_<hex>``) are removed."""
    try:
        names = listing.read_text().split()
    except OSError:
        return
    for name in names:
        if name.startswith("psm_") and name[4:].isalnum():
            try:
                os.unlink(f"/dev/shm/{name}")
            except OSError:
                pass


def stop_child(process: subprocess.Popen) -> None:
    """A child of :func:`start_child` and everything it started end with this call (Lava
    starts processes of its own). A child still running gets SIGTERM and a few seconds to
    remove what it made (the Lava runner kills its workers and removes their shared memory),
    then the whole process group gets SIGKILL, a child that ended on its own included: what
    it started may still run."""
    if not child_exited(process):
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE_SECONDS
        while not child_exited(process) and time.monotonic() < deadline:
            time.sleep(0.05)
    if process.returncode is None:  # unreaped: the group id is still the runner's
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    if process.stdout is not None:
        process.stdout.close()
