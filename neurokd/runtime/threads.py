"""How many torch threads a job gets: the cores other jobs leave free, not torch's default of
every core.

Measured here (issue 17, benchmarks/results/threads.md): the demo distill on the 2-core machine
is faster with two threads than with one when the machine is quiet, slower beside a light job
on one core, and 3x slower with one CPU-bound job per core: each intra-op step waits for the
thread whose core another job holds. So: ``--threads N`` wins; then ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS`` (torch reads them at start-up); then the interrupted run's count on
``--resume``; else the cores left free by other jobs while the run started (its data set
loading), read from ``/proc/stat`` with this process's own CPU time taken out (on systems
without it, the 1-minute load average). Under torchrun the processes on the machine share the
cores.

The thread count changes the order of float sums, so the same seed can give slightly
different weights with another count: the count is recorded (run summary, ``metrics.json``,
the training state) and ``--threads N`` repeats a run exactly.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

MIN_READING_SECONDS = 0.2   # a shorter interval is extended by sleeping: a reading, not noise
# A core counts as free when other jobs keep at most this share of it busy: measured on the
# demo distill, two threads beat one by 13% beside nothing, lose by 15% beside a job that is
# busy 30% of the time on one core and take 3x as long beside one CPU-bound job per core.
SPARE = 0.15


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


@dataclass(frozen=True)
class CpuReading:
    """The busy and total CPU time of each usable core, this process's CPU time, the clock."""

    wall: float
    own: float                                   # seconds of CPU this process used
    cores: dict[str, tuple[int, int]] | None     # cpuN -> (busy, total) ticks; None: no /proc


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _core_ticks(stat: str = "/proc/stat") -> dict[str, tuple[int, int]] | None:
    try:
        allowed = {f"cpu{n}" for n in os.sched_getaffinity(0)}
        with open(stat) as handle:
            lines = handle.read().splitlines()
    except (OSError, AttributeError):
        return None
    ticks = {}
    for line in lines:
        fields = line.split()
        if fields and fields[0] in allowed and len(fields) >= 8:
            # user nice system idle iowait irq softirq steal: idle and iowait are free time;
            # steal (another virtual machine ran) is not ours to use
            values = [int(v) for v in fields[1:9]]
            total = sum(values)
            ticks[fields[0]] = (total - values[3] - values[4], total)
    return ticks or None


def cpu_reading() -> CpuReading:
    """Take one at the start of a job; :func:`free_cores` compares a later one with it."""
    return CpuReading(time.monotonic(), _own_cpu_seconds(), _core_ticks())


def free_cores(since: CpuReading, now: CpuReading, cores: int) -> tuple[float, str]:
    """Cores of the ``cores`` usable ones that other jobs left free between two readings, and
    how that was read: the usable cores' busy share, less this process's own CPU time."""
    if since.cores and now.cores and now.wall > since.wall:
        busy = total = 0
        for name, (busy_now, total_now) in now.cores.items():
            busy_then, total_then = since.cores.get(name, (busy_now, total_now))
            busy, total = busy + busy_now - busy_then, total + total_now - total_then
        if total > 0:
            busy_cores = busy / total * len(now.cores)
            own_cores = (now.own - since.own) / (now.wall - since.wall)
            return max(0.0, cores - max(0.0, busy_cores - own_cores)), "/proc/stat"
    try:
        return max(0.0, cores - os.getloadavg()[0]), "load average"
    except (OSError, AttributeError):  # no reading on this system: assume the cores are free
        return float(cores), "no load reading"


def reading_since(since: CpuReading) -> CpuReading:
    """A reading at least MIN_READING_SECONDS after ``since`` (sleeping the rest)."""
    waited = time.monotonic() - since.wall
    if waited < MIN_READING_SECONDS:
        time.sleep(MIN_READING_SECONDS - waited)
    return cpu_reading()


def choose_threads(requested: int | None, processes: int = 1,
                   since: CpuReading | None = None, resumed: int | None = None,
                   environ: dict[str, str] | None = None) -> ThreadChoice:
    """The thread count for a job that started at ``since`` (see the module docstring);
    ``resumed``: the count an interrupted run trained with."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        return ThreadChoice(requested, "--threads")
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if environ.get(variable):
            return ThreadChoice(torch.get_num_threads(), f"{variable}={environ[variable]}")
    if resumed is not None:
        return ThreadChoice(resumed, "the interrupted run's count")
    share = max(1, usable_cores() // max(1, processes))
    if processes > 1:
        return ThreadChoice(share, f"{share} of {usable_cores()} cores for each of "
                                   f"{processes} processes")
    since = since or cpu_reading()
    return choice_between(since, reading_since(since), share)


def choice_between(since: CpuReading, now: CpuReading, share: int) -> ThreadChoice:
    """The thread count for the cores of ``share`` that other jobs left free between two
    readings (a pure function of the readings: tested on recorded samples)."""
    free, how = free_cores(since, now, share)
    threads = max(1, min(share, int(free + SPARE)))
    return ThreadChoice(threads, f"{free:.1f} of {share} cores free at start ({how})")


@contextlib.contextmanager
def used(choice: ThreadChoice) -> Iterator[ThreadChoice]:
    """``choice`` inside the block; the caller's thread count again after it (a library call
    must not leave the process changed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(choice.threads)
    try:
        yield choice
    finally:
        torch.set_num_threads(before)
