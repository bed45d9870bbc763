"""Start-up of the commands a new user runs first: wall time of fresh processes, as ratios.

Times, in fresh interpreters and alternating round by round so that load from other processes
hits every command alike (median of ``--rounds``):

- ``python -c "import torch"``: the floor every command that touches a model pays;
- ``neurokd --help`` and ``neurokd energy profiles``: goal <= 0.5 s (nothing heavy imported);
- ``neurokd energy report CHECKPOINT``: goal <= 2x (import torch + the report's own work), the
  work being the same report run again in one warm process (imports done);
- ``neurokd export --target onnx CHECKPOINT``: goal <= 4 s wall, with the export's full check.

Writes startup.md and startup.json (benchmarks/runs/results/; --publish: benchmarks/results/)
with the machine's load average before and after.

Usage: python benchmarks/startup.py [CHECKPOINT] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_dir

from neurokd.files.safe_io import write_json, write_text

NEUROKD = [sys.executable, "-m", "neurokd"]


def _wall(argv: list[str]) -> float:
    """Seconds one fresh process takes (it must succeed: a failing command is no timing)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _warm_report_seconds(checkpoint: str, repeats: int = 3) -> float:
    """The energy report's own work: the command run in one process, imports already done."""
    code = "\n".join([
        "import sys, time, contextlib, io",
        "from neurokd.cli import main",
        "def once():",
        "    with contextlib.redirect_stdout(io.StringIO()):",
        "        try:",
        f"            main(['energy', 'report', {checkpoint!r}, '-q'])",
        "        except SystemExit:",
        "            pass",
        "once()",
        "times = []",
        f"for _ in range({repeats}):",
        "    start = time.perf_counter(); once(); times.append(time.perf_counter() - start)",
        "print(min(times))"])
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="runs/demo/student.pt")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    results_dir.add_options(parser)
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"no checkpoint {args.checkpoint}: run `make demo` first")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        commands = {
            "import torch": [sys.executable, "-c", "import torch"],
            "neurokd --help": [*NEUROKD, "--help"],
            "neurokd energy profiles": [*NEUROKD, "energy", "profiles"],
            "neurokd energy report": [*NEUROKD, "energy", "report", args.checkpoint, "-q"],
            "neurokd export --target onnx": [*NEUROKD, "export", "--target", "onnx",
                                             args.checkpoint, "-o",
                                             str(Path(folder) / "s.onnx"), "-q"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(args.rounds):
            for name, argv_ in commands.items():
                times[name].append(_wall(argv_))
                Path(folder, "s.onnx").unlink(missing_ok=True)
            print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(
                f"{name} {times[name][-1]:.2f} s" for name in commands))
        work = _warm_report_seconds(args.checkpoint)
    load_after = os.getloadavg()
    median = {name: statistics.median(values) for name, values in times.items()}
    report_ratio = median["neurokd energy report"] / (median["import torch"] + work)
    figures = {
        "checkpoint": args.checkpoint, "rounds": args.rounds, "seconds": median,
        "all_seconds": times, "energy_report_work_seconds": work,
        "energy_report_ratio": report_ratio,
        "goals": {"neurokd --help": median["neurokd --help"] <= 0.5,
                  "neurokd energy profiles": median["neurokd energy profiles"] <= 0.5,
                  "neurokd energy report": report_ratio <= 2.0,
                  "neurokd export --target onnx": median["neurokd export --target onnx"] <= 4.0},
        "load_average_before": load_before, "load_average_after": load_after,
        "cores": len(os.sched_getaffinity(0)),
    }
    out = results_dir.folder(args)
    write_json(out / "startup.json", figures)
    path = write_text(out / "startup.md", render(figures))
    print(f"wrote {path}")
    return 0


def render(f: dict) -> str:
    s, goals = f["seconds"], f["goals"]
    verdict = {True: "met", False: "MISSED"}
    lines = [
        "# Start-up of the first commands",
        "",
        f"Fresh processes, median of {f['rounds']} alternating rounds, on "
        f"{f['cores']} cores; load average {f['load_average_before'][0]:.2f} before, "
        f"{f['load_average_after'][0]:.2f} after (`python benchmarks/startup.py "
        f"{f['checkpoint']}`).",
        "",
        "| command | wall (s) | goal | |",
        "|---|---:|---|---|",
        f"| `python -c \"import torch\"` | {s['import torch']:.2f} | (the floor) | |",
        f"| `neurokd --help` | {s['neurokd --help']:.2f} | ≤ 0.5 s | "
        f"{verdict[goals['neurokd --help']]} |",
        f"| `neurokd energy profiles` | {s['neurokd energy profiles']:.2f} | ≤ 0.5 s | "
        f"{verdict[goals['neurokd energy profiles']]} |",
        f"| `neurokd energy report` | {s['neurokd energy report']:.2f} | ≤ 2x (torch + "
        f"{f['energy_report_work_seconds']:.2f} s of work): {f['energy_report_ratio']:.2f}x | "
        f"{verdict[goals['neurokd energy report']]} |",
        f"| `neurokd export --target onnx` | {s['neurokd export --target onnx']:.2f} | ≤ 4 s | "
        f"{verdict[goals['neurokd export --target onnx']]} |",
        "",
        "What remains in the report's and the export's start-up is imported, not computed: "
        "torch; spikingjelly's LIF op, whose registration with `torch.library.triton_op` "
        "imports torch._dynamo and torch._inductor on the first neuron forward (spikingjelly "
        "offers no switch around it); scikit-learn, whose stratified split makes the data "
        "set's splits (replacing it would change every split); onnx (its ml_dtypes). The ONNX "
        "export writes with the TorchScript exporter and keeps its file only if it passes the "
        "full check (identical spikes, logits within 1e-5); the dynamo exporter only where it "
        "does not.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
