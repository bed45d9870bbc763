"""The thread choice: --threads, then the environment, then a resumed run's count, else the
cores other jobs leave free, read from /proc/stat with this process's own CPU time taken out."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import pytest
import torch

from neurokd.runtime.threads import (
    CpuReading,
    _core_ticks,
    choose_threads,
    cpu_reading,
    free_cores,
    usable_cores,
)


def test_an_explicit_count_then_the_environment_then_the_resumed_count_win():
    assert choose_threads(3, environ={}) == choose_threads(3, environ={"OMP_NUM_THREADS": "1"})
    assert choose_threads(3, environ={}).threads == 3
    from_env = choose_threads(None, environ={"OMP_NUM_THREADS": "1"}, resumed=2)
    assert from_env.threads == torch.get_num_threads() and "OMP_NUM_THREADS=1" in from_env.reason
    resumed = choose_threads(None, environ={}, resumed=2)
    assert (resumed.threads, resumed.reason) == (2, "the interrupted run's count")


def test_processes_under_torchrun_share_the_cores():
    choice = choose_threads(None, processes=2 * usable_cores(), environ={})
    assert choice.threads == 1 and "for each of" in choice.reason


@pytest.fixture
def busy_cores():
    """One CPU-bound process per usable core: the other jobs of a shared machine."""
    workers = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(usable_cores())]
    time.sleep(0.3)  # running before the first reading
    yield
    for worker in workers:
        worker.kill()
        worker.wait()


def test_cores_held_by_other_jobs_leave_one_thread(busy_cores):
    since = cpu_reading()
    time.sleep(0.6)
    free, how = free_cores(since, cpu_reading(), usable_cores())
    assert how == "/proc/stat" and free < 0.75, free
    choice = choose_threads(None, since=since, environ={})
    assert choice.threads == 1 and "cores free at start (/proc/stat)" in choice.reason


def test_this_process_own_work_does_not_count_as_other_jobs():
    since = cpu_reading()
    end = time.monotonic() + 0.6
    while time.monotonic() < end:  # one core busy in this process for the whole interval
        pass
    now = cpu_reading()
    cores = usable_cores()
    own_taken_out, _ = free_cores(since, now, cores)
    own_kept, _ = free_cores(since, dataclasses.replace(now, own=since.own), cores)
    assert own_taken_out - own_kept == pytest.approx(1.0, abs=0.25)


def test_proc_stat_gives_each_usable_core_and_counts_steal_as_busy(tmp_path):
    ticks = _core_ticks()
    assert set(ticks) == {f"cpu{n}" for n in os.sched_getaffinity(0)}
    assert all(0 <= busy <= total for busy, total in ticks.values())
    stat = tmp_path / "stat"  # user nice system idle iowait irq softirq steal
    stat.write_text("cpu  1 1 1 1 1 1 1 1\n" + "".join(
        f"cpu{n} 10 0 10 70 5 0 0 5 0 0\n" for n in os.sched_getaffinity(0)))
    assert set(_core_ticks(str(stat)).values()) == {(25, 100)}


def test_without_proc_stat_the_load_average_is_used():
    empty = CpuReading(0.0, 0.0, None)
    free, how = free_cores(empty, dataclasses.replace(empty, wall=1.0), 4)
    assert how == "load average"
    assert free == pytest.approx(max(0.0, 4 - os.getloadavg()[0]), abs=0.2)


@pytest.mark.parametrize("recorded", ["many", 0, True, 10 ** 6])
def test_a_resumed_run_refuses_a_damaged_recorded_count(tmp_path, monkeypatch, recorded):
    from neurokd.config import RunConfig
    from neurokd.errors import CheckpointError
    from neurokd.train.distillation import _choose_threads, _interrupted
    from neurokd.train.distributed import World
    from neurokd.train.fitting import STATE_FORMAT

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    config = RunConfig(out=str(tmp_path), name="run")
    config.run_dir.mkdir()
    torch.save({"format": STATE_FORMAT, "version": 1, "label": "student",
                "run_config": {"threads": recorded}}, config.run_dir / "last.pt")
    with pytest.raises(CheckpointError, match="the training state records"):
        _choose_threads(config, World(), cpu_reading(), _interrupted(config.run_dir))
    torch.save({"format": STATE_FORMAT, "version": 1, "label": "student",
                "run_config": {"threads": 3}}, config.run_dir / "last.pt")
    assert _choose_threads(config, World(), cpu_reading(),
                           _interrupted(config.run_dir)).threads == 3
