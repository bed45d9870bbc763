"""The NIR consumers: which libraries run a NIR file, and how closely they reproduce neurokd.

``CONSUMERS`` maps a library name to a :class:`Consumer`: its distribution, where it runs
(in this process, or in a subprocess with its own package folder), and what it is known not
to represent or to compute differently, as a function of the graph that names the nodes
(measured with each library; docs/nir.md). :func:`check_consumers` runs the written file in
every one that is installed, on the same inputs and batch sizes as the export check, and
compares its logits with the PyTorch student's.

Sinabs 3.1.3 cannot be installed beside neurokd (it pins nir <= 1.0.4, and nir 1.0.4 cannot
read nir 1.0.8's LIF nodes: ``TypeError: LIF.__init__() got an unexpected keyword argument
'v_reset'``), so ``make consumers`` puts it, without its dependencies (they are neurokd's own,
bar ``samna``), in ``.sinabs-site`` and it runs in a subprocess with that folder on its path.
A library that raises is a finding (its row in the report); a subprocess killed by a signal
(an OOM kill, a segfault) is a crashed tool: exit 1, noticed as soon as it dies.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import torch

from neurokd.errors import ExternalToolError
from neurokd.runtime.progress import Reporter

from ..loihi.lava_host import child_exited, signal_name, start_child, stop_child
from ..verify import chunks
from . import consumer_runner
from .consumer_limits import (
    norse_limits,
    rockpool_limits,
    sinabs_limits,
    snntorch_limits,
    spikingjelly_limits,
)

SINABS_SITE = ".sinabs-site"
TOLERANCE = 1e-4  # logits, times max(1, |logit|): float32 with another operation order
SUBPROCESS_SECONDS = 1800
POLL_SECONDS = 0.2  # how often a consumer subprocess is looked at


@dataclass(frozen=True)
class Consumer:
    name: str
    summary: str                                   # what it is, for the docs
    limits: Callable[[nir.NIRGraph, float], list[str]]   # known gaps in this graph, by node
    site: Callable[[], Path | None] | None = None  # its package folder (subprocess); None: here
    install: str = "pip install -e '.[dev]'"       # how neurokd's Makefile installs it


@dataclass
class ConsumerResult:
    consumer: str
    version: str
    runs: bool
    argmax_agreement: float | None = None
    max_logit_difference: float | None = None
    logit_scale: float = 1.0
    failure: str = ""                              # its exception, or why it did not run
    notes: list[str] = field(default_factory=list)  # known gaps in this graph, by node

    @property
    def agrees(self) -> bool:
        """Same predictions everywhere and logits within :data:`TOLERANCE`."""
        return (self.runs and self.argmax_agreement == 1.0 and self.max_logit_difference
                is not None and self.max_logit_difference <= TOLERANCE * max(1.0,
                                                                              self.logit_scale))


def sinabs_site() -> Path | None:
    """``NEUROKD_SINABS_SITE``, else ``.sinabs-site`` here, above, or beside this checkout."""
    chosen = os.environ.get("NEUROKD_SINABS_SITE")
    if chosen:
        return Path(chosen) if (Path(chosen) / "sinabs").is_dir() else None
    here = Path.cwd().resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[2]):
        if (folder / SINABS_SITE / "sinabs").is_dir():
            return folder / SINABS_SITE
    return None


CONSUMERS: dict[str, Consumer] = {c.name: c for c in (
    Consumer("snntorch", "snnTorch `snntorch.import_nir.import_from_nir`", snntorch_limits),
    Consumer("norse", "Norse `norse.torch.from_nir(graph, dt=...)`", norse_limits),
    Consumer("spikingjelly", "spikingjelly `nir_exchange.import_from_nir(graph, dt=...)`",
             spikingjelly_limits),
    Consumer("sinabs", "Sinabs `sinabs.from_nir` (subprocess, `.sinabs-site`)", sinabs_limits,
             sinabs_site, "make consumers"),
    Consumer("rockpool", "Rockpool `rockpool.nn.modules.from_nir`", rockpool_limits),
)}


def check_consumers(path: Path, inputs: torch.Tensor, reference_logits: np.ndarray,
                    timesteps: int, dt: float, batch_size: int = 64,
                    reporter: Reporter | None = None,
                    names: list[str] | None = None) -> list[ConsumerResult]:
    """Run the NIR file in each consumer (all by default) on ``inputs`` (static samples, in
    chunks of 1 and then ``batch_size``) and compare with ``reference_logits`` ``[T, N, K]``."""
    reporter = reporter or Reporter()
    graph = consumer_runner.read_graph(str(path))
    shape = tuple(int(d) for d in np.atleast_1d(_input_shape(graph)))
    x = inputs.reshape(len(inputs), *shape).numpy().astype(np.float32)
    sizes = [s.stop - s.start for s in chunks(len(x), batch_size)]
    results = []
    task = reporter.start("NIR consumers", len(names or CONSUMERS))
    for name in names or list(CONSUMERS):
        consumer = CONSUMERS[name]
        result, logits = _run_one(consumer, path, x, timesteps, dt, sizes)
        result.notes = consumer.limits(graph, dt)
        if logits is not None:
            _compare(result, logits, reference_logits)
        results.append(result)
        reporter.advance(task, 1, status=name)
    reporter.finish(task, f"{sum(r.agrees for r in results)} of {len(results)} agree")
    return results


def _input_shape(graph: nir.NIRGraph):
    inputs = [n for n in graph.nodes.values() if isinstance(n, nir.Input)]
    return inputs[0].input_type["input"]


Outcome = tuple[ConsumerResult, np.ndarray | None]  # and its logits [T, N, K] when it ran


def _run_one(consumer: Consumer, path: Path, x: np.ndarray, timesteps: int, dt: float,
             sizes: list[int]) -> Outcome:
    missing = ConsumerResult(consumer.name, "", False, failure=f"not installed ({consumer.install})")
    if consumer.site is not None:
        site = consumer.site()
        return (missing, None) if site is None else _run_in_subprocess(
            consumer.name, site, path, x, timesteps, dt, sizes)
    if importlib.util.find_spec(consumer_runner.PACKAGES[consumer.name]) is None:
        return missing, None
    version = consumer_runner.version(consumer.name)
    try:
        logits = consumer_runner.run_consumer(consumer.name, str(path), x, timesteps, dt, sizes)
    except Exception as exc:  # noqa: BLE001 - the library's failure is the finding
        return ConsumerResult(consumer.name, version, False,
                              failure=consumer_runner.describe(exc)), None
    return ConsumerResult(consumer.name, version, True), logits


def _run_in_subprocess(name: str, site: Path, path: Path, x: np.ndarray, timesteps: int,
                       dt: float, sizes: list[int]) -> Outcome:
    consumer = CONSUMERS[name]
    with tempfile.TemporaryDirectory(prefix=f"neurokd-{consumer.name}-") as folder:
        request, answer = Path(folder) / "request.npz", Path(folder) / "result.npz"
        np.savez(request, consumer=np.array(consumer.name), path=np.array(str(path.resolve())),
                 inputs=x, timesteps=np.array(timesteps), dt=np.array(dt),
                 chunks=np.array(sizes))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(site)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        log = Path(folder) / "stderr.txt"
        # Its own process group, waited on by its exit (not its output, which a process it
        # started could hold open), and ended with everything it started.
        with open(log, "w") as stderr:
            process = start_child([sys.executable, consumer_runner.__file__, str(request),
                                   str(answer)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=stderr)
            deadline = time.monotonic() + SUBPROCESS_SECONDS
            try:
                while not child_exited(process) and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)
                timed_out = not child_exited(process)
            finally:
                stop_child(process)
        if timed_out:
            return ConsumerResult(consumer.name, "", False, failure=(
                f"no result within {SUBPROCESS_SECONDS} s (stopped)")), None
        if process.returncode < 0:
            number = -process.returncode
            raise ExternalToolError(f"the NIR consumer {consumer.name} crashed: its process was "
                                    f"killed by signal {number} ({signal_name(number)}); {path} "
                                    "was written, its consumer report is incomplete")
        if process.returncode != 0 or not answer.exists():
            tail = [line for line in log.read_text(errors="replace").splitlines()
                    if line.strip()]
            return ConsumerResult(consumer.name, "", False, failure=(
                f"subprocess exit {process.returncode}: {tail[-1] if tail else 'no output'}")), None
        with np.load(answer, allow_pickle=False) as data:
            version = str(data["version"])
            if "error" in data.files:
                return ConsumerResult(consumer.name, version, False,
                                      failure=str(data["error"])), None
            return ConsumerResult(consumer.name, version, True), data["logits"]


def _compare(result: ConsumerResult, result_logits: np.ndarray, reference: np.ndarray) -> None:
    if result_logits.shape != reference.shape:
        result.failure = (f"gives outputs of shape {tuple(result_logits.shape)}, the student "
                          f"{tuple(reference.shape)}")
        return
    result.max_logit_difference = float(np.abs(result_logits - reference).max())
    result.logit_scale = float(np.abs(reference).max())
    same = result_logits.mean(0).argmax(-1) == reference.mean(0).argmax(-1)
    result.argmax_agreement = float(same.mean())


def consumer_table(results: list[ConsumerResult]) -> list[str]:
    """The compatibility report as text lines (consumer, version, runs, agreement, max
    |Δlogit|, what failed, what it cannot represent)."""
    lines = ["  NIR consumers (the written file, same inputs and batch sizes):",
             f"    {'consumer':<13}{'version':<9}{'runs':<6}{'argmax':>9}{'max |Δlogit|':>14}"
             "  verdict"]
    for r in results:
        agreement = "-" if r.argmax_agreement is None else f"{100 * r.argmax_agreement:.2f}%"
        diff = "-" if r.max_logit_difference is None else f"{r.max_logit_difference:.1e}"
        verdict = "agrees" if r.agrees else (r.failure or "differs")
        lines.append(f"    {r.consumer:<13}{r.version or '-':<9}{'yes' if r.runs else 'no':<6}"
                     f"{agreement:>9}{diff:>14}  {verdict}")
        lines += [f"      - {note}" for note in r.notes]
    return lines
