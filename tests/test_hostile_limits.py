"""Hostile sizes stay cheap and signals end cleanly, measured on real subprocesses.

- Peak memory: a file that claims a huge array is refused with the child's peak resident
  memory far below what the claim would need (measured by a wrapper process whose only child
  is the neurokd command, so ``RUSAGE_CHILDREN`` is that command's alone).
- SIGTERM while Lava runs (``export --target loihi``, ``simulate --backend lava``): exit 143,
  no temporary file beside the output, no ``/tmp/neurokd-lava-*`` folder, no Lava process left.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import h5py
import pytest
from numpy.lib import format as npy

from helpers import requires_lava

PEAK = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], capture_output=True).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""
LIMIT = 1 << 30   # the refused claims below are 745 GiB and 7.3 TiB


def _peak(*args: str) -> tuple[int, int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "neurokd", *args],
                         capture_output=True, text=True, env=env, timeout=300).stdout.split()
    return int(out[0]), int(out[1])


def _forged_npz(path: Path) -> Path:
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                        "shape": (10 ** 11,)})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("input_events_0.npy", header.getvalue() + b"\0" * 2048)
    return path


@pytest.mark.slow
def test_huge_claims_are_refused_with_little_memory(trained_run, tmp_path):
    code, peak = _peak("energy", "report", "--from-sim", str(_forged_npz(tmp_path / "r.npz")),
                       "-q")
    assert code == 2 and peak < LIMIT, (code, peak)
    net = tmp_path / "s.net"
    assert _peak("export", "--target", "loihi", str(trained_run / "student.pt"), "-o", str(net),
                 "--check-samples", "8", "--lava-samples", "0", "-q")[0] == 0
    with h5py.File(net, "r+") as handle:  # a 10**6 x 10**6 weight in chunks of nothing
        del handle["layer/1/weight"]
        handle.create_dataset("layer/1/weight", shape=(10 ** 6, 10 ** 6), dtype="i8",
                              chunks=(1, 1024), compression="gzip")
    assert net.stat().st_size < 10 << 20
    code, peak = _peak("simulate", str(net), "--backend", "lava", "--samples", "4", "-q")
    assert code == 2 and peak < LIMIT, (code, peak)


def _lava_children(folders: set[str]) -> list[int]:
    """Processes running lava_runner.py on a request in one of ``folders``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "lava_runner.py" in cmdline and any(f in cmdline for f in folders):
            found.append(int(entry.name))
    return found


def _lava_folders() -> set[str]:
    return {str(p) for p in Path(tempfile.gettempdir()).glob("neurokd-lava-*")}


def _terminate_during_lava(args: list[str], out_folder: Path) -> None:
    before = _lava_folders()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "neurokd", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, started = time.monotonic() + 300, set()
        while time.monotonic() < deadline and process.poll() is None:
            started = _lava_folders() - before
            if started and _lava_children(started):
                break
            time.sleep(0.2)
        assert started and process.poll() is None, "the Lava run never started"
        time.sleep(1.0)   # well inside the run
        process.send_signal(signal.SIGTERM)
        err = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert not [p for p in out_folder.iterdir() if p.name.endswith(".tmp")]
    assert not (_lava_folders() & started), "the Lava temporary folder was left"
    time.sleep(0.5)
    assert not _lava_children(started), "a Lava process outlived its parent"


@requires_lava
def test_sigterm_during_loihi_export_leaves_nothing(trained_run, tmp_path):
    _terminate_during_lava(["export", "--target", "loihi", str(trained_run / "student.pt"),
                            "-o", str(tmp_path / "s.net"), "--check-samples", "64",
                            "--lava-samples", "64", "-q"], tmp_path)
    assert not (tmp_path / "s.net").exists()


@requires_lava
def test_sigterm_during_lava_simulation_leaves_nothing(trained_run, tmp_path):
    from neurokd.cli import main

    net = tmp_path / "s.net"
    try:
        main(["export", "--target", "loihi", str(trained_run / "student.pt"), "-o", str(net),
              "--check-samples", "8", "--lava-samples", "0", "-q"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    _terminate_during_lava(["simulate", str(net), "--backend", "lava", "--samples", "200",
                            "-q", "--save", str(tmp_path / "r.npz"), "--json",
                            str(tmp_path / "r.json")], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.net"]


@pytest.mark.slow
def test_a_lava_child_dies_with_a_killed_parent(tmp_path):
    """SIGKILL gives the parent no chance to clean up: the kernel must end the child."""
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from neurokd.exporters.loihi.lava_host import start_child\n"
        "child = start_child([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n")])
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert parent.poll() is None and time.time() < deadline
        time.sleep(0.05)
    child = int(pid_file.read_text())
    os.kill(child, 0)  # running
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        status = open(f"/proc/{child}/stat").read().split()[2]
        if status == "Z":  # dead, waiting for its new parent (init) to reap it
            return
        time.sleep(0.05)
    raise AssertionError(f"child {child} outlived its killed parent")
