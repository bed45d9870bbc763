"""Speed under load: the demo distill with neurokd's own thread choice vs fixed thread counts,
on a quiet machine, with one competing CPU-bound process on each core, and with one light job
(busy 30% of the time) on one core, side by side.

    python benchmarks/threads.py [--rounds 2] [--conditions quiet,loaded,part-loaded] [--publish]

Each round runs every (condition, setting) pair once, in alternating order, so slow drifts of
the machine hit every setting alike. Settings: neurokd's default (no OMP_NUM_THREADS, no
--threads: it counts the cores other jobs leave free), OMP_NUM_THREADS=1 and
OMP_NUM_THREADS=<cores>. Goal: the default within 1.2x of the best setting in every condition.
Writes threads.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import results_dir  # noqa: E402

CORES = len(os.sched_getaffinity(0))
SETTINGS = {"neurokd default": None, "OMP_NUM_THREADS=1": "1",
            f"OMP_NUM_THREADS={CORES}": str(CORES)}


def demo_seconds(threads: str | None) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "neurokd", "distill", "--name", "demo", "--out",
                        out, "--quiet"], check=True, env=env, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        metrics = json.loads((Path(out) / "demo" / "metrics.json").read_text())
    return seconds, metrics


# A job busy DUTY of each 10 ms, sleeping the rest: an editor, a browser tab, a light service.
PART_BUSY = ("import time\nwhile True:\n    t = time.perf_counter()\n"
             "    while time.perf_counter() - t < {duty} * 0.01: pass\n"
             "    time.sleep((1 - {duty}) * 0.01)\n")
CONDITIONS = {
    "quiet": "nothing else runs",
    "loaded": "one CPU-bound process (`while True: pass`) per core",
    "part-loaded": "one process busy 30% of every 10 ms on one core",
}


def load_for(condition: str) -> list[subprocess.Popen]:
    """The 'other jobs' of a shared machine in ``condition``."""
    if condition == "loaded":
        return [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(CORES)]
    if condition == "part-loaded":
        return [subprocess.Popen([sys.executable, "-c", PART_BUSY.format(duty=0.3)])]
    return []


def run(rounds: int, conditions: list[str]) -> dict:
    times: dict[tuple[str, str], list[float]] = {}
    chosen = {}
    for round_index in range(rounds):
        for condition in conditions:
            load = load_for(condition)
            time.sleep(1.0)  # the other jobs are running before the distill starts
            try:
                order = list(SETTINGS.items())
                order = order if round_index % 2 == 0 else order[::-1]
                for label, threads in order:
                    seconds, metrics = demo_seconds(threads)
                    times.setdefault((condition, label), []).append(seconds)
                    chosen.setdefault((condition, label), []).append(
                        (metrics["threads"], metrics["threads_reason"]))
                    print(f"round {round_index + 1} {condition:11s} {label:20s} {seconds:6.1f} s",
                          flush=True)
            finally:
                for process in load:
                    process.kill()
                    process.wait()
    return {"times": times, "chosen": chosen}


def render(result: dict, rounds: int, conditions: list[str], load_before: tuple) -> str:
    times = result["times"]
    lines = ["# Speed under load: neurokd's thread choice", "",
             f"The demo distill (`neurokd distill --name demo`, digits, 30 + 30 epochs) on {CORES} "
             f"cores; median of {rounds} rounds per cell, settings alternating. Conditions: "
             + "; ".join(f"{c}: {CONDITIONS[c]}" for c in conditions) + ".", "",
             "| setting | " + " | ".join(f"threads used, {c} | {c} (s)" for c in conditions)
             + " |", "|---|" + "---|---:|" * len(conditions)]
    medians = {key: statistics.median(v) for key, v in times.items()}

    def used(condition: str, label: str) -> str:  # every round's choice, in round order
        return "; ".join(f"{t} ({reason})" for t, reason in result["chosen"][(condition, label)])

    for label in SETTINGS:
        lines.append(f"| {label} | " + " | ".join(
            f"{used(c, label)} | {medians[(c, label)]:.1f}" for c in conditions) + " |")
    lines.append("")
    for condition in conditions:
        best = min(medians[(condition, label)] for label in SETTINGS)
        ratio = medians[(condition, "neurokd default")] / best
        lines.append(f"- {condition}: default / best setting = {ratio:.2f} (goal <= 1.2: "
                     f"{'met' if ratio <= 1.2 else 'missed'})")
    lines += ["", f"Load average before the run: {load_before[0]:.2f}, {load_before[1]:.2f}, "
              f"{load_before[2]:.2f}.", "", f"Command: `python benchmarks/threads.py --rounds "
              f"{rounds} --conditions {','.join(conditions)}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--conditions", default=",".join(CONDITIONS),
                        help=f"comma-separated, of {', '.join(CONDITIONS)}")
    results_dir.add_options(parser)
    args = parser.parse_args()
    conditions = args.conditions.split(",")
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        parser.error(f"unknown condition {unknown[0]!r}; choose from {', '.join(CONDITIONS)}")
    load_before = os.getloadavg()
    result = run(args.rounds, conditions)
    path = results_dir.folder(args) / "threads.md"
    path.write_text(render(result, args.rounds, conditions, load_before))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
