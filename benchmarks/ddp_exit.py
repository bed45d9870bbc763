"""How often a two-process `torchrun ... neurokd distill` run exits cleanly.

    python benchmarks/ddp_exit.py                # 40 launches
    python benchmarks/ddp_exit.py --runs 100

A CI run once failed because rank 1 aborted at interpreter exit ("terminate called without an
active exception", SIGABRT, no Python frame) after training had finished and rank 0 had written
the run folder. It happened in about one launch in ten, so one passing test says little: this
launches the same small command as tests/test_distributed.py `--runs` times and counts the
launches that exit non-zero and the ones whose output carries the abort message. Writes
ddp_exit.md into benchmarks/runs/results/ (--publish: benchmarks/results/).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_dir

from neurokd.files.safe_io import write_text

ABORT = "terminate called without an active exception"


def launch(out: Path) -> tuple[int, bool, float]:
    torchrun = Path(sys.executable).with_name("torchrun")
    started = time.perf_counter()
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "neurokd", "distill",
         "--dataset", "mnist1d", "--epochs", "1", "--teacher-epochs", "1", "--width", "8",
         "--teacher-width", "8", "--out", str(out), "--name", "ddp", "--quiet"],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        print(proc.stderr[-4000:], file=sys.stderr)
    return proc.returncode, ABORT in proc.stdout + proc.stderr, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    results_dir.add_options(parser)
    args = parser.parse_args()
    failed = aborted = 0
    seconds = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            code, abort, took = launch(Path(tmp))
        failed += code != 0
        aborted += abort
        seconds.append(took)
        print(f"launch {i + 1}/{args.runs}: exit {code}{' (abort)' if abort else ''}, "
              f"{took:.1f} s", flush=True)
    import torch

    text = (
        "# Two-process torchrun exits\n\n"
        f"`torchrun --standalone --nproc_per_node 2 -m neurokd distill --dataset mnist1d "
        f"--epochs 1 --teacher-epochs 1 --width 8 --teacher-width 8` launched {args.runs} times "
        f"(gloo, CPU, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"), {sum(seconds) / len(seconds):.1f} s per launch on average.\n\n"
        f"| launches | non-zero exits | with \"{ABORT}\" |\n|---|---|---|\n"
        f"| {args.runs} | {failed} | {aborted} |\n\n"
        f"Command: `python benchmarks/ddp_exit.py --runs {args.runs}`\n")
    write_text(results_dir.folder(args) / "ddp_exit.md", text)
    print(text)


if __name__ == "__main__":
    main()
