"""Nothing outside what the user named is read, and a crashed external tool is exit 1.

- A path read out of a data folder's file (DVS Gesture's trial lists) stays inside that
  folder: an absolute path, a ``..`` out of it and a link out of it are refused naming the list
  and the line, through the real CLI, before anything is read or written.
- Only regular files are opened: a FIFO named like a recording (it would block the read
  forever) and a link to ``/dev/zero`` (size 0, so an "empty recording") are refused.
- A Lava worker, or the Lava runner itself, killed with SIGKILL during ``simulate`` is noticed
  within seconds: exit 1, one line, no output file, no temporary folder, no shared-memory
  segment and no process left. The same for a NIR consumer's subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from event_writers import (
    aedat2_bytes,
    aedat31_bytes,
    nmnist_bytes,
    random_events,
    write_gesture,
    write_nmnist,
)

from neurokd.data import load_data
from neurokd.data.event_files import read_aedat2, read_aedat31, read_nmnist
from neurokd.errors import DataError, ExternalToolError
from neurokd.files.paths import inside, open_regular

from helpers import assert_one_line_error, make_student, requires_lava, run_cli

T = 2
ROWS = [(c, 1000 * c, 1000 * c + 500) for c in range(1, 12)]


@contextmanager
def released(fifo: Path, after: float = 20.0):
    """Opens ``fifo`` for writing after ``after`` seconds and closes it again, so a reader
    wrongly blocked on it gets end-of-file and the test fails on its assertions instead of
    hanging the whole run."""
    done = threading.Event()

    def release() -> None:
        if done.wait(after):
            return
        while not done.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: nobody reads it (yet)
                pass
            time.sleep(0.1)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# --- paths named inside a data folder's files ---------------------------------------------

def _gesture(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A DVS Gesture folder with one good recording, and a valid recording with its labels
    outside it (``outside/secret.aedat``) that a tampered list may try to reach."""
    events = random_events(64, 128, 128, seed=1, t0=0, span=12_000)
    root = write_gesture(tmp_path / "data", {"user01_led": (events, ROWS)}, ["user01_led"],
                         ["user01_led"])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.aedat").write_bytes(aedat31_bytes(events))
    (outside / "secret_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,0,500\n")
    return root, root / "DvsGesture", outside


def _distill(capsys, tmp_path: Path, dataset: str, root: Path):
    """The real CLI, as a user runs it; the frames cache and run folders in ``tmp_path``."""
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    cache.mkdir(exist_ok=True)
    outcome = run_cli(capsys, "distill", "--dataset", dataset, "--data-dir", str(root),
                      "--epochs", "1", "--timesteps", str(T), "--cache-dir", str(cache),
                      "--out", str(runs), "--name", "hostile", "-q")
    assert list(cache.iterdir()) == [] and not runs.exists(), "something was written"
    return outcome


@pytest.mark.parametrize("listed, message", [
    ("{outside}/secret.aedat", "is an absolute path"),
    ("../outside/secret.aedat", "climbs out of"),
    ("../../outside/secret.aedat", "climbs out of"),
    ("user01_led/../../../outside/secret.aedat", "climbs out of"),
], ids=["absolute", "dotdot", "dotdot-twice", "dotdot-after-a-name"])
def test_a_trial_list_cannot_name_a_file_outside_its_folder(tmp_path, capsys, listed, message):
    root, folder, outside = _gesture(tmp_path)
    listed = listed.format(outside=outside)
    (folder / "trials_to_train.txt").write_text(f"user01_led.aedat\n\n{listed}\n")
    outcome = _distill(capsys, tmp_path, "dvsgesture", root)
    assert_one_line_error(outcome, 2, message)
    assert f"{folder / 'trials_to_train.txt'}, line 3: {listed!r}" in outcome.err


def test_a_link_out_of_the_folder_is_refused(tmp_path, capsys):
    root, folder, outside = _gesture(tmp_path)
    (folder / "linked.aedat").symlink_to(outside / "secret.aedat")
    (folder / "linked_labels.csv").write_bytes((folder / "user01_led_labels.csv").read_bytes())
    (folder / "trials_to_train.txt").write_text("user01_led.aedat\nlinked.aedat\n")
    outcome = _distill(capsys, tmp_path, "dvsgesture", root)
    assert_one_line_error(outcome, 2, f"line 2: 'linked.aedat' is a link to "
                                      f"{outside / 'secret.aedat'}, outside {folder}")


def test_a_linked_folder_or_labels_file_out_of_the_folder_is_refused(tmp_path):
    root, folder, outside = _gesture(tmp_path)
    (folder / "elsewhere").symlink_to(outside, target_is_directory=True)
    (folder / "trials_to_train.txt").write_text("elsewhere/secret.aedat\n")
    with pytest.raises(DataError, match="line 1: 'elsewhere/secret.aedat' is a link to"):
        load_data("dvsgesture", str(root), timesteps=T, cache_dir=tmp_path)
    (folder / "user01_led_labels.csv").unlink()
    (folder / "user01_led_labels.csv").symlink_to(outside / "secret_labels.csv")
    (folder / "trials_to_train.txt").write_text("user01_led.aedat\n")
    with pytest.raises(DataError, match="line 1: 'user01_led_labels.csv' is a link to .*"
                                        "secret_labels.csv, outside"):
        load_data("dvsgesture", str(root), timesteps=T, cache_dir=tmp_path)


def test_paths_and_links_that_stay_inside_are_read(tmp_path):
    """The rule refuses what leaves the folder, not every '..' or link: the release could use
    either."""
    root, folder, _ = _gesture(tmp_path)
    (folder / "sub").mkdir()
    (folder / "sub" / "again.aedat").symlink_to(folder / "user01_led.aedat")
    (folder / "sub" / "again_labels.csv").symlink_to(folder / "user01_led_labels.csv")
    (folder / "trials_to_train.txt").write_text("sub/../user01_led.aedat\nsub/again.aedat\n")
    bundle = load_data("dvsgesture", str(root), val_fraction=0.5, timesteps=T,
                       cache_dir=tmp_path)
    assert len(bundle.train) + len(bundle.val) == 2 * len(ROWS)


def test_inside_names_the_file_and_the_line(tmp_path):
    source = tmp_path / "list.txt"
    for named, message in (("/etc/passwd", "absolute"), ("..", "climbs out"),
                           ("a\0b", "NUL byte")):
        with pytest.raises(DataError, match=message) as info:
            inside(tmp_path, named, source, 7)
        assert str(info.value).startswith(f"{source}, line 7: ")
    assert inside(tmp_path, "a/../b", source, 1) == tmp_path / "a/../b"


# --- only regular files are opened --------------------------------------------------------

def _nmnist(tmp_path: Path) -> Path:
    return write_nmnist(tmp_path / "nmnist", {
        (split, digit): [random_events(12, 34, 34, seed=digit)]
        for split in ("Train", "Test") for digit in range(10)})


def test_a_fifo_recording_is_refused_not_waited_on(tmp_path, capsys):
    root = _nmnist(tmp_path)
    fifo = root / "Train" / "3" / "00001.bin"
    os.mkfifo(fifo)
    with released(fifo):
        outcome = _distill(capsys, tmp_path, "nmnist", root)
    assert_one_line_error(outcome, 2, f"nmnist file {fifo} is a FIFO (named pipe), not a "
                                      "regular file")


def test_a_recording_linked_to_dev_zero_is_refused(tmp_path, capsys):
    root = _nmnist(tmp_path)
    zero = root / "Test" / "5" / "00001.bin"
    zero.symlink_to("/dev/zero")
    outcome = _distill(capsys, tmp_path, "nmnist", root)
    assert_one_line_error(outcome, 2, f"nmnist file {zero} (a link to /dev/zero) is a "
                                      "character device, not a regular file")


@pytest.mark.parametrize("reader, encode, kind", [
    (read_nmnist, nmnist_bytes, "N-MNIST"),
    (read_aedat31, aedat31_bytes, "AEDAT 3.1"),
    (read_aedat2, aedat2_bytes, "AEDAT 2.0"),
])
def test_every_reader_refuses_what_is_not_a_regular_file(tmp_path, reader, encode, kind):
    good = tmp_path / "good.bin"
    good.write_bytes(encode(random_events(20, 34, 34, seed=0)))
    assert len(reader(good, (34, 34))["t"]) == 20  # the check lets real files through
    fifo, zero = tmp_path / "fifo.bin", tmp_path / "zero.bin"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    with released(fifo), pytest.raises(DataError, match=f"{kind} file {fifo} is a FIFO"):
        reader(fifo, (34, 34))
    with pytest.raises(DataError, match="a link to /dev/zero.*character device"):
        reader(zero, (34, 34))


@pytest.mark.parametrize("which", ["trials_to_train.txt", "user01_led_labels.csv",
                                   "user01_led.aedat"])
def test_a_fifo_list_labels_or_recording_in_the_gesture_folder_is_refused(tmp_path, which):
    root, folder, _ = _gesture(tmp_path)
    (folder / which).unlink()
    os.mkfifo(folder / which)
    with released(folder / which), pytest.raises(DataError, match=f"{folder / which} is a "
                                                                  "FIFO"):
        load_data("dvsgesture", str(root), timesteps=T, cache_dir=tmp_path)


def test_a_fifo_image_is_refused(image_folder):
    fifo = image_folder / "circle" / "pipe.png"
    os.mkfifo(fifo)
    with released(fifo), pytest.raises(DataError, match=f"{fifo} is a FIFO"):
        load_data("imagefolder", str(image_folder), augment=False, image_size=12)


def test_open_regular_reads_a_regular_file(tmp_path):
    path = tmp_path / "plain"
    path.write_bytes(b"abc" * 1000)
    with open_regular(path, "file") as handle:
        assert handle.read() == b"abc" * 1000
    with pytest.raises(DataError, match="is a folder, not a regular file"):
        open_regular(tmp_path, "file")


# --- external processes that die -----------------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:  # it ended meanwhile
        return ""


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def _wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} within {seconds} s")


def _settled(pid: int) -> list[int]:
    """The children of ``pid`` once their number has held for a second: Lava has started
    every worker (the channels' shared memory comes first)."""
    last, since = [], time.monotonic()

    def check():
        nonlocal last, since
        now = sorted(_children(pid))
        if now != last:
            last, since = now, time.monotonic()
            return None
        return now if len(now) >= 3 and time.monotonic() - since >= 1.0 else None

    return _wait_for(check, 120, "Lava's workers never settled")


@pytest.fixture(scope="module")
def loihi_net(tmp_path_factory) -> Path:
    """An untrained student's Loihi export (no Lava check): simulating its 360 test samples
    takes several seconds, time to kill a worker in the middle."""
    from neurokd.exporters.loihi.export import export_loihi
    from neurokd.student.sources import StudentSource

    model, config = make_student(width=4, timesteps=3)
    path = tmp_path_factory.mktemp("loihi") / "s.net"
    export_loihi(StudentSource(model, (1, 8, 8), 3, "user", config | {"dataset": "digits"}),
                 path, lava_samples=0, max_samples=16)
    return path


def _kill_during_simulation(net: Path, tmp_path: Path, victim: str) -> None:
    """``neurokd simulate --backend lava`` in a subprocess; once Lava's workers run, SIGKILL
    one of them (``worker``) or the runner itself (``runner``). Exit 1, one line, noticed
    within seconds, and nothing left: no output, temporary folder, segment or process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    save, report = tmp_path / "r.npz", tmp_path / "r.json"
    process = subprocess.Popen([sys.executable, "-m", "neurokd", "simulate", str(net),
                                "--backend", "lava", "--samples", "360", "-q", "--save",
                                str(save), "--json", str(report)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        runner = _wait_for(lambda: next((p for p in _children(process.pid)
                                         if "lava_runner" in _cmdline(p)), None),
                           120, "no Lava runner started")
        folder = Path(_cmdline(runner).split("\0")[2]).parent  # runner.py REQUEST RESULT
        assert folder.name.startswith("neurokd-lava-"), folder
        # the runner lists the segments of Lava's channels once they exist (lava_runner.Watch)
        listing = _wait_for(lambda: (folder / "result.shm").is_file() and
                            (folder / "result.shm").read_text().split(), 120,
                            "Lava's channels never came up")
        workers = _settled(runner)
        assert process.poll() is None, "the run ended too soon"
        group = [runner, *workers]
        os.kill(runner if victim == "runner" else workers[-1], signal.SIGKILL)
        killed = time.monotonic()
        err = process.communicate(timeout=60)[1]
        noticed = time.monotonic() - killed
    finally:
        if process.poll() is None:  # a failed test: neurokd's own SIGTERM clean-up, then kill
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert noticed < 10, f"the crash took {noticed:.1f} s to notice: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 1 and len(lines) == 1, (process.returncode, err)
    expected = ("its runner was killed by signal 9 (SIGKILL)" if victim == "runner" else
                f"a Lava worker process (pid {workers[-1]}) was killed by signal 9 (SIGKILL)")
    assert lines[0].startswith("neurokd: error: the Lava simulation ") and expected in lines[0]
    assert not save.exists() and not report.exists()
    assert not folder.exists(), "the Lava temporary folder was left"
    assert not [name for name in listing if Path("/dev/shm", name).exists()], \
        "shared memory was left in /dev/shm"
    _wait_for(lambda: not [p for p in group if _alive(p)], 5, "a Lava process was left")


@requires_lava
def test_a_killed_lava_worker_is_exit_1_within_seconds(loihi_net, tmp_path):
    _kill_during_simulation(loihi_net, tmp_path, "worker")


@requires_lava
def test_a_killed_lava_runner_is_exit_1_within_seconds(loihi_net, tmp_path):
    _kill_during_simulation(loihi_net, tmp_path, "runner")


@pytest.mark.slow
def test_a_killed_nir_consumer_is_exit_1_within_seconds(tmp_path):
    """Sinabs runs in a subprocess (``.sinabs-site``): killed there, the check stops with an
    ExternalToolError (exit 1) naming it, and leaves neither its folder nor its process."""
    import torch

    from neurokd.exporters.nir import consumers
    from neurokd.exporters.nir.export import export_nir
    from neurokd.student.sources import StudentSource

    # slow-marked: only `make test` runs it, and it builds .sinabs-site first
    assert consumers.sinabs_site() is not None, ".sinabs-site missing: run `make consumers`"
    model, config = make_student(width=4, timesteps=3)
    path = tmp_path / "s.nir"
    export_nir(StudentSource(model, (1, 8, 8), 3, "user", config | {"dataset": "digits"}),
               path, max_samples=8)
    killed: list[tuple[int, float, Path]] = []

    def kill_the_consumer() -> None:
        def running():
            return next((p for p in _children(os.getpid())
                         if "consumer_runner" in _cmdline(p)), None)
        pid = _wait_for(running, 60, "no consumer subprocess started")
        folder = Path(_cmdline(pid).split("\0")[2]).parent  # consumer_runner.py REQUEST RESULT
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, time.monotonic(), folder))

    thread = threading.Thread(target=kill_the_consumer, daemon=True)
    thread.start()
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ExternalToolError, match="the NIR consumer sinabs crashed: its process "
                                                "was killed by signal 9 \\(SIGKILL\\)"):
        consumers.check_consumers(path, x, np.zeros((3, 4, 10), np.float32), 3, 1e-4,
                                  names=["sinabs"])
    thread.join()
    assert killed and time.monotonic() - killed[0][1] < 5
    assert not _alive(killed[0][0])
    assert killed[0][2].name.startswith("neurokd-sinabs-") and not killed[0][2].exists()
