"""The thread choice: --threads, then the environment, then a resumed run's count, else the
cores other jobs leave free, read from /proc/stat with this process's own CPU time taken out."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from neurokd.runtime.threads import (
    CpuReading,
    _core_ticks,
    choice_between,
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


# Recorded /proc/stat samples of two cores one second apart (busy, total ticks per core): the
# arithmetic is checked on them, so no test here depends on how busy the machine is.
_QUIET = {"cpu0": (100, 1000), "cpu1": (50, 1000)}
_BOTH_HELD = {"cpu0": (200, 1100), "cpu1": (150, 1100)}     # other jobs: 100% of both cores
_ONE_OWN = {"cpu0": (200, 1100), "cpu1": (60, 1100)}        # cpu0 busy, cpu1 10% busy


def test_cores_held_by_other_jobs_leave_one_thread():
    since, now = CpuReading(0.0, 5.0, _QUIET), CpuReading(1.0, 5.0, _BOTH_HELD)
    assert free_cores(since, now, 2) == (0.0, "/proc/stat")
    choice = choice_between(since, now, 2)
    assert choice.threads == 1 and choice.reason == "0.0 of 2 cores free at start (/proc/stat)"


def test_free_cores_are_the_busy_share_less_this_process_own_time():
    """110 of 200 ticks busy = 1.1 cores busy; 1 s of this process's CPU in 1 s of wall time is
    one of them, so other jobs hold 0.1 and 1.9 cores are free. Counted as another job's, the
    same busy core would leave 0.9."""
    since = CpuReading(0.0, 5.0, _QUIET)
    own_busy = CpuReading(1.0, 6.0, _ONE_OWN)
    others_busy = CpuReading(1.0, 5.0, _ONE_OWN)
    assert free_cores(since, own_busy, 2)[0] == pytest.approx(1.9)
    assert free_cores(since, others_busy, 2)[0] == pytest.approx(0.9)
    assert choice_between(since, own_busy, 2).threads == 2
    assert choice_between(since, others_busy, 2).threads == 1


def test_a_core_missing_from_the_first_reading_adds_nothing():
    since = CpuReading(0.0, 0.0, {"cpu0": (100, 1000)})
    now = CpuReading(1.0, 0.0, {"cpu0": (100, 1100), "cpu1": (900, 1000)})
    assert free_cores(since, now, 2) == (2.0, "/proc/stat")


def test_proc_stat_gives_each_usable_core_and_counts_steal_as_busy(tmp_path):
    ticks = _core_ticks()
    assert set(ticks) == {f"cpu{n}" for n in os.sched_getaffinity(0)}
    assert all(0 <= busy <= total for busy, total in ticks.values())
    stat = tmp_path / "stat"  # user nice system idle iowait irq softirq steal
    stat.write_text("cpu  1 1 1 1 1 1 1 1\n" + "".join(
        f"cpu{n} 10 0 10 70 5 0 0 5 0 0\n" for n in os.sched_getaffinity(0)))
    assert set(_core_ticks(str(stat)).values()) == {(25, 100)}


def test_without_proc_stat_the_load_average_is_used(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 0.5))  # a recorded reading
    empty = CpuReading(0.0, 0.0, None)
    assert free_cores(empty, dataclasses.replace(empty, wall=1.0), 4) == (2.5, "load average")
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert free_cores(empty, dataclasses.replace(empty, wall=1.0), 4) == (0.0, "load average")


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
