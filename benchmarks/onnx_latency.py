"""ONNX Runtime vs PyTorch eager (spikingjelly) latency of one student, in one run.

Exports the checkpoint's student with ``neurokd.exporters.export_onnx`` (which verifies the file
against PyTorch first) to a temporary folder, then times a full forward pass (all T timesteps,
state reset before each call, as in inference) at batch 1 and 64 on the run's test inputs.
Both runtimes get the same thread count, and their timings alternate block by block so that load
from other processes hits both alike. Writes (into benchmarks/runs/results/; --publish: benchmarks/results/) onnx_latency.md.

Usage: python benchmarks/onnx_latency.py [CHECKPOINT] [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import results_dir
import torch
from spikingjelly.activation_based import functional

from neurokd.exporters import export_onnx
from neurokd.files.safe_io import write_text
from neurokd.student.inputs import source_inputs
from neurokd.student.sources import load_source

BATCHES = (1, 64)


def per_call_ms(run, x, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run(x)
    return 1000 * (time.perf_counter() - start) / calls


def measure(model, session, x, repeats: int) -> tuple[float, float]:
    """Median ms per call of eager PyTorch and ONNX Runtime, alternating blocks of calls."""
    def eager(batch):
        functional.reset_net(model)
        with torch.no_grad():
            return model(batch)

    feed = x.numpy()

    def onnx_run(batch):
        return session.run(None, {"input": batch})

    calls = 20 if len(x) == 1 else 4
    for _ in range(3):  # warm-up: allocator, oneDNN primitives, ORT arenas
        eager(x), onnx_run(feed)
    eager_ms, onnx_ms = [], []
    for _ in range(repeats):
        eager_ms.append(per_call_ms(eager, x, calls))
        onnx_ms.append(per_call_ms(onnx_run, feed, calls))
    return statistics.median(eager_ms), statistics.median(onnx_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="runs/demo/student.pt")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for both runtimes (default 1: the machine is shared)")
    parser.add_argument("--repeats", type=int, default=15, help="timed blocks per setting")
    results_dir.add_options(parser)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    source = load_source(checkpoint=args.checkpoint)
    inputs, _, _ = source_inputs(source, "test", max(BATCHES))
    with tempfile.TemporaryDirectory() as folder:
        result = export_onnx(source, Path(folder) / "student.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = args.threads
        session = ort.InferenceSession(str(result.path), options,
                                       providers=["CPUExecutionProvider"])
    rows = []
    for batch in BATCHES:
        eager_ms, onnx_ms = measure(source.model, session, inputs[:batch], args.repeats)
        rows.append((batch, eager_ms, onnx_ms, eager_ms / onnx_ms))
        print(f"batch {batch:>3}: PyTorch eager {eager_ms:8.3f} ms, ONNX Runtime {onnx_ms:8.3f} ms"
              f" -> ONNX Runtime is {eager_ms / onnx_ms:.2f}x as fast")
    report = render(args, source, result, rows)
    path = write_text(results_dir.folder(args) / "onnx_latency.md", report)
    print(f"wrote {path}")
    return 0


def render(args, source, result, rows) -> str:
    agreement = result.agreement
    lines = [
        "# ONNX Runtime vs PyTorch eager latency",
        "",
        f"Student `{args.checkpoint}` (T = {source.timesteps}, input {source.input_shape}), "
        f"exported with {result.exporter}, opset {result.opset}, {result.file_bytes} bytes.",
        f"Export check on the {result.verified_on}: max |logit error| {agreement.max_abs_logit_error:.2e}, "
        f"{agreement.spike_mismatches} of {agreement.spikes_checked} spikes differ, "
        f"argmax agreement {agreement.argmax_agreement:.0%}.",
        "",
        "One forward pass = all T timesteps (PyTorch: `reset_net` + spikingjelly multi-step "
        "forward; ONNX: the unrolled graph). Median over "
        f"{args.repeats} alternating blocks, {args.threads} thread(s) each.",
        "",
        "| batch | PyTorch eager (ms) | ONNX Runtime (ms) | eager / ONNX Runtime |",
        "|------:|-------------------:|------------------:|---------------------:|",
    ]
    lines += [f"| {b} | {e:.3f} | {o:.3f} | {r:.2f}x |" for b, e, o, r in rows]
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs (shared with other jobs); "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, onnxruntime "
        f"{ort.__version__}.",
        "",
        f"Command: `python benchmarks/onnx_latency.py {args.checkpoint} --threads {args.threads}"
        f" --repeats {args.repeats}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
