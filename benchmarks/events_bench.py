"""Event data figures: digits-dvs generation, SNN/ANN energy on events, memory over CIFAR10-DVS.

1. generation: digits-dvs generated and binned into a fresh frames cache in a child process
   (imports excluded: the time of ``digits_dvs.generate`` and of the cache build), its event
   counts per sample and the cache's size on disk.
2. energy: ``neurokd energy report``'s call on every ce / kd / tser student of
   ``compare_methods.py --dataset digits-dvs`` and on the direct-encoded digits demo student
   (``runs/demo/student.pt``), test splits, every built-in profile, against the teacher and
   the ReLU twin: SNN/ANN energy and the first layer's SOPs and MACs.
3. memory: a synthetic folder in CIFAR10-DVS's layout and format (10 classes x 1000 AEDAT 2.0
   recordings of ``--events`` random events each, so the disk stays small), then one epoch of
   ``neurokd distill`` on it (cache build, one teacher and one student epoch, evaluation) in a
   child process; its peak resident memory (VmHWM) beside the same run on 3,000 recordings, and beside reading the cached training frames once through a memory map
   (``np.load(mmap_mode="r")``), which is what reading by offset avoids. The folder and the
   caches are deleted afterwards.

Writes events.md and events.json (``--publish``: into benchmarks/results/).

Usage: python benchmarks/events_bench.py [--parts generation,energy,memory] [--publish]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import results_dir  # noqa: E402

PARTS = ("generation", "energy", "memory")


def _child(code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


GENERATION = r"""
import json, resource, time
from pathlib import Path
import numpy as np, sklearn.datasets, torch, spikingjelly.datasets
from neurokd.data import digits_dvs, load_data
started = time.perf_counter()
streams, labels = digits_dvs.generate(digits_dvs.SEED)
generated = time.perf_counter() - started
load_data("digits-dvs", timesteps=4)
total = time.perf_counter() - started
cache = next(Path(__import__("os").environ["NEUROKD_CACHE_DIR"]).iterdir())
counts = np.array([len(s["t"]) for s in streams])
print(json.dumps({"generate_s": generated, "generate_and_bin_s": total,
                  "cache_bytes": sum(p.stat().st_size for p in cache.iterdir()),
                  "cache_files": sorted(p.name for p in cache.iterdir()),
                  "events_min": int(counts.min()), "events_max": int(counts.max()),
                  "events_mean": float(counts.mean()), "samples": len(streams),
                  "on_share": float(np.mean([s["p"].mean() for s in streams]))}))
"""


def generation() -> dict:
    with tempfile.TemporaryDirectory(prefix="digits-dvs-cache-") as cache:
        return _child(GENERATION, {"NEUROKD_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"})


def _dvs_runs() -> dict[str, list[Path]]:
    """The ce / kd / tser students of ``compare_methods.py --dataset digits-dvs``, by method."""
    found = {m: sorted((HERE / "runs" / "digits-dvs").glob(f"{m}_T4_*s[0-9]/student.pt"))
             for m in ("ce", "kd", "tser")}
    if not found["tser"]:
        raise SystemExit("no digits-dvs runs: run benchmarks/compare_methods.py --dataset "
                         "digits-dvs --groups methods first")
    return found


def _ratios(path: Path) -> dict:
    """SNN/ANN energy of one student under every profile, teacher and ReLU twin."""
    from neurokd.energy import PROFILES, estimate_from_options
    from neurokd.student.sources import load_source

    source, rows = load_source(path), {}
    for profile in PROFILES:
        for ann in ("teacher", "twin"):
            report = estimate_from_options(source, profile, ann)
            first = report.layers[0]
            rows[f"{profile}/{ann}"] = {
                "ratio": report.ratio, "snn_pj": report.snn_energy_pj,
                "ann_pj": report.ann_energy_pj, "samples": report.samples,
                "first_layer_synops": first.counts.get("synops", 0.0),
                "first_layer_macs": first.counts.get("macs", 0.0)}
    return {"checkpoint": os.path.relpath(path, ROOT), "rows": rows,
            "dataset": source.config.get("dataset")}


def energy(digits: Path) -> dict:
    """Every digits-dvs run of the method benchmark, and the direct-encoded digits demo."""
    runs = {method: [_ratios(p) for p in paths] for method, paths in _dvs_runs().items()}
    return {"digits-dvs": runs, "digits": _ratios(digits)}


def _synthetic_cifar10dvs(root: Path, per_class: int, events: int) -> None:
    from neurokd.data.event_sets import CIFAR10_CLASSES
    from neurokd.data.event_writers import random_events, write_cifar10dvs

    for k, name in enumerate(CIFAR10_CLASSES):
        write_cifar10dvs(root, {name: [random_events(events, 128, 128, seed=k * per_class + i)
                                       for i in range(per_class)]})


# Peak RSS is this process's VmHWM (Linux): ru_maxrss would include the parent's resident
# memory at fork, which exec does not reset.
PEAK = r"""
def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""

EPOCH = PEAK + r"""
import json, sys, time
from neurokd.cli import main
started = time.perf_counter()
try:
    main(sys.argv[1:])
except SystemExit as exc:
    if exc.code:
        raise
print(json.dumps({"peak_rss_kib": peak_kib(), "seconds": time.perf_counter() - started}))
"""

MAPPED = PEAK + r"""
import json, sys
import numpy as np
before = peak_kib()
frames = np.load(sys.argv[1], mmap_mode="r")
total = 0
for i in range(len(frames)):
    total += int(frames[i].sum())
print(json.dumps({"peak_rss_kib": peak_kib(), "before_kib": before, "events": total}))
"""


def _epoch(data: Path, cache: Path, work: Path, args) -> dict:
    argv = ["distill", "--dataset", "cifar10dvs", "--data-dir", str(data), "--cache-dir",
            str(cache), "--timesteps", str(args.timesteps), "--event-size", str(args.size),
            "--epochs", "1", "--teacher-epochs", "1", "--width", "4", "--teacher-width", "4",
            "--method", "kd", "--out", str(work), "--name", data.name, "--quiet"]
    done = subprocess.run([sys.executable, "-c", EPOCH, *argv], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"distill failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    folder = next(p for p in cache.iterdir() if p.is_dir())
    result["cache_bytes"] = sum(p.stat().st_size for p in folder.iterdir())
    result["command"] = "neurokd " + " ".join(argv)
    return result | {"frames_file": str(folder / "train.frames.npy")}


def memory(args) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="cifar10dvs-synthetic-", dir=args.scratch))
    try:
        figures = {}
        for per_class in (int(n) for n in args.per_class.split(",")):
            data, cache = scratch / f"cifar10dvs-{per_class}", scratch / f"cache-{per_class}"
            cache.mkdir()
            started = time.perf_counter()
            _synthetic_cifar10dvs(data, per_class, args.events)
            written = time.perf_counter() - started
            data_bytes = sum(p.stat().st_size for p in data.rglob("*.aedat"))
            run = _epoch(data, cache, scratch / "runs", args)
            mapped = subprocess.run([sys.executable, "-c", MAPPED, run.pop("frames_file")],
                                    capture_output=True, text=True, check=True)
            run["mapped"] = json.loads(mapped.stdout.strip().splitlines()[-1])
            figures[str(10 * per_class)] = run | {"data_bytes": data_bytes,
                                                  "write_seconds": written}
            shutil.rmtree(data)
            shutil.rmtree(cache)
        return figures
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def render(f: dict) -> str:
    lines = ["# Event data: digits-dvs, energy on events, memory over CIFAR10-DVS", "",
             f"Machine: {f['machine']}, shared with other jobs: times are upper bounds. Each "
             "part says the load average when it started and the command that produced it.",
             ""]
    if "generation" in f:
        g = f["generation"]
        lines += ["## digits-dvs generation", "",
                  "| quantity | value |", "|---|---:|",
                  f"| recordings | {g['samples']} |",
                  f"| events per recording: min, mean, max | {g['events_min']}, "
                  f"{g['events_mean']:.0f}, {g['events_max']} |",
                  f"| share of ON events | {g['on_share']:.3f} |",
                  f"| generation time (events, all recordings) | {g['generate_s']:.2f} s |",
                  f"| generation + binning + cache written (T = 4) | "
                  f"{g['generate_and_bin_s']:.2f} s |",
                  f"| cache size on disk (T = 4, 20 x 20, uint16 counts) | "
                  f"{g['cache_bytes'] / 2**20:.2f} MiB |", "", _provenance(g)]
    if "energy" in f:
        lines += _energy_lines(f["energy"])
    if "memory" in f:
        lines += _memory_lines(f["memory"], f["settings"])
    return "\n".join(lines) + "\n"


def _mean_std(values: list[float]) -> str:
    import statistics

    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {spread:.3f}"


def _energy_lines(e: dict) -> list[str]:
    runs, digits = e["digits-dvs"], e["digits"]
    keys = list(digits["rows"])
    samples = digits["rows"][keys[0]]["samples"]
    lines = ["## SNN / ANN energy: digits-dvs (event input) vs digits (direct encoding)", "",
             f"Every student of the digits-dvs method benchmark (mean ± std over its seeds) "
             f"and the direct-encoded digits demo `{digits['checkpoint']}`, on their test splits "
             f"({samples} samples), compute model. ANN: the teacher (for digits-dvs on the "
             "frames averaged over time) or the student's ReLU twin, priced like the SNN.", "",
             "| profile | ANN | " + " | ".join(f"digits-dvs {m}" for m in runs) +
             " | digits demo (tser) |", "|---|---|" + "---:|" * (len(runs) + 1)]
    for key in keys:
        profile, ann = key.split("/")
        cells = [_mean_std([r["rows"][key]["ratio"] for r in group]) for group in runs.values()]
        lines.append(f"| {profile} | {ann} | " + " | ".join(cells) +
                     f" | {digits['rows'][key]['ratio']:.3f} |")
    first = runs["tser"][0]["rows"][keys[0]]
    demo = digits["rows"][keys[0]]
    lines += ["", f"First layer per inference: digits-dvs (tser, seed 0) "
              f"{first['first_layer_synops']:,.0f} SOPs and {first['first_layer_macs']:,.0f} "
              f"MACs (binary input spikes); digits demo {demo['first_layer_synops']:,.0f} SOPs "
              f"and {demo['first_layer_macs']:,.0f} MACs (analog input, direct encoding)."]
    return lines + ["", _provenance(e)]


def _provenance(part: dict) -> str:
    return f"Load average {part['load']}; `{part['command']}`.\n"


def _memory_lines(m: dict, settings: dict) -> list[str]:
    lines = ["## Peak memory of one epoch over a CIFAR10-DVS-sized folder", "",
             f"Synthetic folders in CIFAR10-DVS's layout and format (AEDAT 2.0, 128 x 128, 10 "
             f"classes), {settings['events']} random events per recording; `neurokd distill` "
             f"with T = {settings['timesteps']}, --event-size {settings['size']}, one teacher "
             "and one student epoch (widths 4, batch 64; evaluation batches of 256, so both folders "
             "fill whole evaluation batches), from an empty cache. Peak RSS is the child "
             "process's VmHWM (the imports of torch and spikingjelly.datasets are most of it).",
             "",
             "| recordings | data on disk | frames cache | peak RSS, whole run | wall time | peak "
             "RSS reading the cached train frames through a memory map |",
             "|---:|---:|---:|---:|---:|---:|"]
    for count, row in ((k, v) for k, v in m.items() if k.isdigit()):
        mapped = row["mapped"]
        lines.append(f"| {int(count):,} | {row['data_bytes'] / 2**20:.1f} MiB | "
                     f"{row['cache_bytes'] / 2**20:.1f} MiB | {_mib(row['peak_rss_kib'])} | "
                     f"{row['seconds']:.0f} s | {_mib(mapped['peak_rss_kib'])} (from "
                     f"{_mib(mapped['before_kib'])}) |")
    few, many = sorted((k for k in m if k.isdigit()), key=int)
    growth = (m[many]["peak_rss_kib"] - m[few]["peak_rss_kib"]) / 1024
    lines += ["", f"{int(many) / int(few):.1f} times the recordings (and the cache) change the "
              f"run's peak RSS by {growth:+.0f} MiB: memory is bounded by a batch and the 8 MB "
              "write chunk, not by the data set. A memory map of the same cache grows by the "
              "file's size as an epoch touches it.", "", _provenance(m)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--digits", type=Path, default=ROOT / "runs" / "demo" / "student.pt")
    parser.add_argument("--events", type=int, default=64, help="events per synthetic recording")
    parser.add_argument("--timesteps", type=int, default=10)
    parser.add_argument("--size", type=int, default=32, help="--event-size of the memory run")
    parser.add_argument("--scratch", default=None, help="where the synthetic folder goes")
    parser.add_argument("--per-class", default="300,1000",
                        help="recordings per class of the two synthetic folders")
    results_dir.add_options(parser)
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    figures = {"machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
               "command": "python benchmarks/events_bench.py " + " ".join(sys.argv[1:]),
               "settings": {"events": args.events, "timesteps": args.timesteps,
                            "size": args.size}}
    runs = {"generation": generation,
            "energy": lambda: energy(args.digits),
            "memory": lambda: memory(args)}
    for part in parts:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        figures[part] = runs[part]() | {"load": load, "command": figures["command"]}
    out = results_dir.folder(args)
    from neurokd.files.safe_io import write_json, write_text

    previous = out / "events.json"  # parts run at another time are kept
    if previous.is_file():
        kept = json.loads(previous.read_text())
        figures = {**{k: kept[k] for k in PARTS if k in kept and k not in parts}, **figures}
        if "memory" not in parts and "settings" in kept:
            figures["settings"] = kept["settings"]

    write_json(out / "events.json", figures)
    write_text(out / "events.md", render(figures))
    print(render(figures))


if __name__ == "__main__":
    main()
