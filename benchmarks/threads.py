"""Speed under load: the demo distill with neurokd's own thread choice vs fixed thread counts,
on a quiet machine and with one competing CPU-bound process on each core, side by side.

    python benchmarks/threads.py [--rounds 2] [--publish]

Each round runs every (condition, setting) pair once, in alternating order, so slow drifts of
the machine hit every setting alike. Settings: neurokd's default (no OMP_NUM_THREADS, no
--threads: it picks for the model), OMP_NUM_THREADS=1 and OMP_NUM_THREADS=<cores>. Goal: the
default within 1.2x of the best setting in both conditions. Writes threads.md.
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


def busy_processes() -> list[subprocess.Popen]:
    """One CPU-bound process per core: the 'other jobs' of a shared machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(CORES)]


def run(rounds: int) -> dict:
    times: dict[tuple[str, str], list[float]] = {}
    chosen = {}
    for round_index in range(rounds):
        for condition in ("quiet", "loaded"):
            load = busy_processes() if condition == "loaded" else []
            try:
                order = list(SETTINGS.items())
                order = order if round_index % 2 == 0 else order[::-1]
                for label, threads in order:
                    seconds, metrics = demo_seconds(threads)
                    times.setdefault((condition, label), []).append(seconds)
                    chosen[label] = (metrics["threads"], metrics["threads_reason"])
                    print(f"round {round_index + 1} {condition:6s} {label:20s} {seconds:6.1f} s",
                          flush=True)
            finally:
                for process in load:
                    process.kill()
                    process.wait()
    return {"times": times, "chosen": chosen}


def render(result: dict, rounds: int, load_before: tuple) -> str:
    times = result["times"]
    lines = ["# Speed under load: neurokd's thread choice", "",
             f"The demo distill (`neurokd distill --name demo`, digits, 30 + 30 epochs) on {CORES} "
             f"cores; median of {rounds} rounds per cell, settings alternating. 'loaded': one "
             "CPU-bound process (`while True: pass`) per core runs beside it.", "",
             "| setting | threads used | quiet (s) | loaded (s) |", "|---|---|---:|---:|"]
    medians = {key: statistics.median(v) for key, v in times.items()}
    for label in SETTINGS:
        threads, reason = result["chosen"][label]
        lines.append(f"| {label} | {threads} ({reason}) | {medians[('quiet', label)]:.1f} | "
                     f"{medians[('loaded', label)]:.1f} |")
    lines.append("")
    for condition in ("quiet", "loaded"):
        best = min(medians[(condition, label)] for label in SETTINGS)
        ratio = medians[(condition, "neurokd default")] / best
        lines.append(f"- {condition}: default / best setting = {ratio:.2f} (goal <= 1.2: "
                     f"{'met' if ratio <= 1.2 else 'missed'})")
    lines += ["", f"Load average before the run: {load_before[0]:.2f}, {load_before[1]:.2f}, "
              f"{load_before[2]:.2f}.", "", f"Command: `python benchmarks/threads.py --rounds "
              f"{rounds}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    results_dir.add_options(parser)
    args = parser.parse_args()
    load_before = os.getloadavg()
    result = run(args.rounds)
    path = results_dir.folder(args) / "threads.md"
    path.write_text(render(result, args.rounds, load_before))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
