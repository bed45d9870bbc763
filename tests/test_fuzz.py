"""A seeded mutation fuzzer over every file type neurokd reads (issue 27, items 2 and 3).

For each file type a valid file (the session's trained run and its exports, event recordings
from ``neurokd.data.event_writers``) is damaged by ``tests/fuzzing.py`` and given to the command
that reads it, in-process through the CLI's entry point (``neurokd.cli.main``, SystemExit
caught, stderr captured). Every mutation must end as one of:

- **refused**: exit 2 and exactly one stderr line ``neurokd: error: ...``;
- **read**: exit 0 (or the command reached the point where the file has been read, for the
  commands whose rest is a training or a Lava run: see STOPS) and what it produced is
  consistent: JSON written is strict (no NaN / Infinity), numbers printed are finite, labels
  lie in the class range, samples are finite and of the declared shape, a plot is a PNG.

Anything else fails the test with the type, the mutation's index and seed, what was done and
the command: a traceback, ``internal error`` (the CLI's catch-all, item 3: never reached), any
other exit code, an inconsistent result, a temporary file left behind, or the worker's peak
memory grown by more than 1 GiB (every command runs with ``--max-memory 1G``, so every size
claim from a file above that is refused before it is allocated).

``make test-fast`` runs FAST mutations per type; ``make test`` also the ``slow`` chunks, PER_TYPE
in all (``NEUROKD_FUZZ_COUNT`` overrides). One case of a failure reruns alone:
``pytest tests/test_fuzz.py -k "checkpoint and 17"`` (the id holds type and first index), or
``python -c "import random, fuzzing; ..."`` with the seed printed. With
``NEUROKD_FUZZ_COUNTS=DIR`` each chunk writes its counts there (the issue's closing note).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import re
import resource
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from fuzzing import mutate
from numpy.exceptions import ComplexWarning

PER_TYPE = int(os.environ.get("NEUROKD_FUZZ_COUNT", "200"))
FAST = 3        # per type, not slow: make test-fast
CHUNK = 20      # mutations per test case (xdist spreads the cases over the workers)
GIB = 1 << 30
SEED_BASE = int(os.environ.get("NEUROKD_FUZZ_SEED", "0"))


class ReadOK(BaseException):  # noqa: N818 - a signal, not an error: passes the CLI's catch-all
    """The command read its file and reached the part that no longer depends on it."""


class Inconsistent(BaseException):  # noqa: N818
    """The command accepted a damaged file and produced something that does not add up."""


@dataclass
class Target:
    """One file type: the valid file (``name`` inside the case folder, built by ``lay_out``),
    the mutation kind, the command that reads it and where that command may stop."""

    name: str
    kind: str
    argv: list[str]
    stop: str | None = None           # "distill" (before training) or "lava" (before Lava;
    #                                   a graph file runs on, the integer model in Lava's place)
    patches: dict = field(default_factory=dict)


# --- valid files, once per worker ------------------------------------------------------------

@pytest.fixture(scope="session")
def fuzz_seeds(trained_run, trained_exports, tmp_path_factory) -> dict[str, Path]:
    """Folder per file type holding a valid layout; the case copies it and damages ``file``."""
    from neurokd.data import load_data
    from neurokd.data.event_writers import (
        random_events,
        write_cifar10dvs,
        write_gesture,
        write_nmnist,
    )

    root = tmp_path_factory.mktemp("fuzz-seeds")

    def folder(name: str) -> Path:
        path = root / name
        path.mkdir()
        return path

    seeds = {}
    seeds["checkpoint"] = folder("checkpoint")
    shutil.copy(trained_run / "student.pt", seeds["checkpoint"] / "student.pt")
    seeds["config"] = folder("config")
    shutil.copy(trained_run / "config.toml", seeds["config"] / "config.toml")
    seeds["profile"] = folder("profile")
    from neurokd.energy.quantities import COST_KEYS

    (seeds["profile"] / "chip.toml").write_text(
        'name = "chip"\nsource = "a datasheet"\n' +
        "".join(f"{key} = {1.5 + i}\n" for i, key in enumerate(COST_KEYS)))
    seeds["result"] = folder("result")
    _result_file(trained_run, seeds["result"] / "r.npz")
    shutil.copy(seeds["result"] / "r.npz", seeds["profile"] / "r.npz")
    for kind, name in (("netx", "student.net"), ("onnx", "student-spikes.onnx"),
                       ("nir", "student.nir")):
        seeds[kind] = folder(kind)
        shutil.copy(trained_exports / name, seeds[kind] / name)
    seeds["metrics"] = folder("metrics")
    (seeds["metrics"] / "run").mkdir()
    shutil.copy(trained_run / "metrics.json", seeds["metrics"] / "run" / "metrics.json")
    for kind in ("frames", "labels"):
        seeds[kind] = folder(kind)
        (seeds[kind] / "cache").mkdir()
        load_data("digits-dvs", timesteps=2, cache_dir=seeds[kind] / "cache")
    seeds["nmnist"] = folder("nmnist")
    write_nmnist(seeds["nmnist"] / "data", {
        (split, digit): [random_events(40, 34, 34, 100 * digit + k + (split == "Test") * 50)
                         for k in range(10 if split == "Train" else 1)]
        for split in ("Train", "Test") for digit in range(10)})
    for kind in ("gesture", "gesture_labels"):
        seeds[kind] = folder(kind)
        train_events = random_events(1100, 128, 128, 7, span=1_100_000)
        rows = [(c + 1, (c * 10 + k) * 10_000, (c * 10 + k + 1) * 10_000)
                for c in range(11) for k in range(10)]
        test_events = random_events(110, 128, 128, 8, span=110_000)
        write_gesture(seeds[kind] / "data", {
            "user01_led": (train_events, rows),
            "user02_led": (test_events, [(c + 1, c * 10_000, (c + 1) * 10_000)
                                         for c in range(11)])},
            ["user01_led"], ["user02_led"])
    seeds["cifar10dvs"] = folder("cifar10dvs")
    from neurokd.data.event_sets import CIFAR10_CLASSES

    write_cifar10dvs(seeds["cifar10dvs"] / "data", {
        name: [random_events(40, 128, 128, 10 * c + k) for k in range(11)]
        for c, name in enumerate(CIFAR10_CLASSES)})
    seeds["log"] = folder("log")
    run = seeds["log"] / "run"
    shutil.copytree(trained_run, run)
    (seeds["log"] / "logs").mkdir()
    from neurokd.train.training_log import _csv, flat_record

    history = json.loads((trained_run / "metrics.json").read_text())["history"]
    (seeds["log"] / "logs" / "student.csv").write_text(_csv([flat_record(r) for r in history]))
    seeds["graph"] = folder("graph")
    _graph_file(seeds["graph"] / "student.net")
    return seeds


def _graph_file(path: Path) -> Path:
    """A Loihi graph file as ``export --target loihi`` writes it for a student that is not a
    chain: tests/test_loihi_graph.py's tiny residual net (max pool, membrane shortcut, SEW
    add: every group role), its data set recorded as a run's would be."""
    from dataclasses import replace

    from test_loihi_graph import tiny_residual

    from neurokd.exporters import export_loihi

    source = replace(tiny_residual(), config={"dataset": "digits"})
    export_loihi(source, path, dataset="digits", max_samples=64, lava_samples=0,
                 min_agreement=0.5)
    return path


def _result_file(trained_run: Path, path: Path) -> Path:
    import neurokd
    from neurokd.data import load_data
    from neurokd.energy import count_events, write_spike_counts

    run = neurokd.load(trained_run / "student.pt")
    x = load_data("digits").test.tensors[0][:16]
    return write_spike_counts(path, count_events(run.student, x, (1, 8, 8)), "lava", "digits")


def _first(folder: Path, pattern: str) -> Path:
    """The first file matching ``pattern`` (a name that is not there for other types)."""
    found = sorted(folder.rglob(pattern))
    return found[0] if found else folder / pattern


def targets(case: Path) -> dict[str, tuple[Path, Target]]:
    """Per file type: the file to damage inside ``case`` (a copy of the seed folder) and how
    it is read."""
    out = str(case / "out")
    distill = ["distill", "--name", "fz", "--out", str(case / "runs"), "--epochs", "1",
               "--teacher-epochs", "1", "-q"]
    events = ["--timesteps", "2", "--cache-dir", str(case / "fresh-cache")]
    return {
        "checkpoint": (case / "student.pt", Target(
            "checkpoint", "torch", ["energy", "report", "{file}", "--samples", "4", "-q",
                                    "--json", out + ".json"])),
        "config": (case / "config.toml", Target(
            "run config TOML", "text", [*distill, "--config", "{file}"], stop="distill")),
        "profile": (case / "chip.toml", Target(
            "profile TOML", "text", ["energy", "report", "--from-sim", str(case / "r.npz"),
                                     "--profile", "{file}", "-q", "--json", out + ".json"])),
        "result": (case / "r.npz", Target(
            "result .npz", "npz", ["energy", "report", "--from-sim", "{file}", "-q", "--json",
                                   out + ".json"])),
        "netx": (case / "student.net", Target(
            "netx .net", "hdf5", ["simulate", "{file}", "--samples", "4", "-q"], stop="lava")),
        "onnx": (case / "student-spikes.onnx", Target(
            "ONNX", "onnx", ["simulate", "{file}", "--backend", "onnx", "--samples", "4", "-q",
                             "--json", out + ".json"])),
        "nir": (case / "student.nir", Target(
            "NIR", "hdf5", ["energy", "report", "{file}", "--samples", "4", "-q", "--json",
                            out + ".json"])),
        "frames": (_first(case, "train.frames.npy"), Target(
            "frames cache .npy", "npy", [*distill, "--dataset", "digits-dvs", "--timesteps",
                                         "2", "--cache-dir", str(case / "cache")],
            stop="distill")),
        "labels": (_first(case, "train.labels.npy"), Target(
            "frames cache labels .npy", "npy", [*distill, "--dataset", "digits-dvs",
                                                "--timesteps", "2", "--cache-dir",
                                                str(case / "cache")], stop="distill")),
        "nmnist": (_first(case, "*.bin"), Target(
            "N-MNIST .bin", "binary", [*distill, "--dataset", "nmnist", "--data-dir",
                                       str(case / "data"), *events], stop="distill")),
        "gesture": (_first(case, "user01_led.aedat"), Target(
            "DVS Gesture AEDAT 3.1", "binary", [*distill, "--dataset", "dvsgesture",
                                                "--data-dir", str(case / "data"), *events],
            stop="distill")),
        "gesture_labels": (_first(case, "user01_led_labels.csv"), Target(
            "DVS Gesture _labels.csv", "text", [*distill, "--dataset", "dvsgesture",
                                                "--data-dir", str(case / "data"), *events],
            stop="distill")),
        "cifar10dvs": (_first(case, "*.aedat"), Target(
            "CIFAR10-DVS AEDAT 2.0", "binary", [*distill, "--dataset", "cifar10dvs",
                                                "--data-dir", str(case / "data"), *events],
            stop="distill")),
        "metrics": (case / "run" / "metrics.json", Target(
            "metrics.json", "text", ["plot", str(case / "run"), "-o", out + ".png"])),
        "log": (case / "logs" / "student.csv", Target(
            "training-log CSV", "text", ["distill", "--resume", str(case / "run"), "-q"],
            stop="distill", patches={"log_dir": str(case / "logs")})),
        "graph": (case / "student.net", Target(
            "Loihi graph file", "hdf5", ["simulate", "{file}", "--samples", "4", "-q", "--json",
                                         out + ".json"], stop="lava")),
    }


TYPES = ["checkpoint", "config", "profile", "result", "netx", "onnx", "nir", "frames", "labels",
         "nmnist", "gesture", "gesture_labels", "cifar10dvs", "metrics", "log", "graph"]


# --- running one mutation --------------------------------------------------------------------

@dataclass
class Outcome:
    verdict: str      # "refused", "read" or "failed"
    code: int | None
    err: str
    why: str = ""


def _check_data(data) -> None:
    """What a distill that read damaged data would train on: labels in range, samples finite
    and of the declared shape (every sample of a small set, 64 of each split otherwise)."""
    import torch

    for split in ("train", "val", "test"):
        subset = getattr(data, split)
        for index in range(min(len(subset), 64)):
            x, y = subset[index]
            x = torch.as_tensor(x)
            if not 0 <= int(y) < data.num_classes:
                raise Inconsistent(f"{split}[{index}] has label {int(y)} of "
                                   f"{data.num_classes} classes")
            if not torch.isfinite(x.float()).all() or tuple(x.shape[-len(data.input_shape):]) \
                    != tuple(data.input_shape):
                raise Inconsistent(f"{split}[{index}] is {tuple(x.shape)}, not finite "
                                   f"{tuple(data.input_shape)} frames")
    raise ReadOK


@contextlib.contextmanager
def _stopped_at(target: Target, monkeypatch):
    """Stop the command once its file has been read (see module docstring)."""
    if target.stop == "distill":
        from neurokd.train import distillation

        monkeypatch.setattr(distillation, "_distill_with",
                            lambda config, data, *a, **k: _check_data(data))
        monkeypatch.setattr(distillation, "_finished", lambda *a, **k: False)
    if target.stop == "lava":
        from neurokd.exporters.simulation import lava_backend

        def reached(*args, **kwargs):
            raise ReadOK

        monkeypatch.setattr(lava_backend, "lava_python", lambda: "python")
        monkeypatch.setattr(lava_backend, "_run_blocks", reached)
        _integer_model_for_lava(monkeypatch)
    yield


def _integer_model_for_lava(monkeypatch) -> None:
    """A graph file's simulate runs on, with the integer model in Lava's place (a Lava run
    per case would take minutes): the integer and float models run on what the damaged file
    holds, and the result is written and checked like any other."""
    from neurokd.exporters.loihi.graph_network import run_graph_fixed_point
    from neurokd.exporters.simulation import lava_graph

    real_blocks = lava_graph._run_blocks

    def blocks(python, export, stored, *args, **kwargs):
        def integer_lava(python, export, inputs, *args, **kwargs):
            run = run_graph_fixed_point(stored.network, inputs)
            return {**{f"spikes_{k}": s for k, s in run.spikes.items()},
                    "readout": run.readout, "seconds": np.float64(0.0)}

        monkeypatch.setattr(lava_graph, "run_lava", integer_lava)
        return real_blocks(python, export, stored, *args, **kwargs)

    monkeypatch.setattr(lava_graph, "lava_python", lambda: "python")
    monkeypatch.setattr(lava_graph, "_run_blocks", blocks)


_NON_FINITE = re.compile(r"(?<![\w.])(-?inf|nan)(?![\w.])", re.IGNORECASE)


def _consistent(case: Path, out: str) -> str:
    """Why an exit-0 result does not add up ("" if it does)."""
    if _NON_FINITE.search(out):
        return f"printed a non-finite number: {_NON_FINITE.search(out).group()}"
    for path in case.glob("out.json"):
        try:
            json.loads(path.read_text(), parse_constant=lambda name: (_ for _ in ()).throw(
                ValueError(name)))
        except ValueError as exc:
            return f"wrote JSON that is not strict: {exc}"
    for path in case.glob("out.png"):
        if not path.read_bytes().startswith(b"\x89PNG"):
            return "wrote a PNG that is not one"
    return ""


def _leftovers(case: Path) -> list[str]:
    return [str(p.relative_to(case)) for p in case.rglob("*")
            if p.name.endswith(".tmp") or ".tmp" in p.name and p.name.startswith(".")]


def run_mutation(target: Target, file: Path, case: Path, monkeypatch) -> Outcome:
    from neurokd.cli import main

    argv = ["--max-memory", "1G", *(a.replace("{file}", str(file)) for a in target.argv)]
    err, out = io.StringIO(), io.StringIO()
    code: int | None = None
    why = ""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with _stopped_at(target, monkeypatch), contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except ReadOK:
            code = 0
        except Inconsistent as exc:
            why = f"inconsistent result: {exc}"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    text = err.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    # numbers from the file that reached arithmetic unchecked (a second stderr line, too)
    unchecked = [w for w in caught if issubclass(w.category, RuntimeWarning | ComplexWarning)]
    if not why and ("Traceback" in text or "internal error" in text):
        why = "traceback or internal error"
    elif not why and unchecked:
        why = f"warned {unchecked[0].category.__name__}: {unchecked[0].message}"
    elif not why and grown > GIB:
        why = f"peak memory grew by {grown / GIB:.2f} GiB"
    elif not why and _leftovers(case):
        why = f"left temporary files {_leftovers(case)}"
    elif not why and code == 2:
        if len(lines) != 1 or not lines[0].startswith("neurokd: error: "):
            why = "exit 2 without exactly one 'neurokd: error:' line"
        else:
            return Outcome("refused", code, text)
    elif not why and code == 0:
        why = _consistent(case, out.getvalue())
        if not why:
            return Outcome("read", code, text)
    elif not why:
        why = f"exit {code}"
    return Outcome("failed", code, text, why)


def seed_of(kind: str, index: int) -> int:
    """The seed of mutation ``index`` of ``kind`` (``NEUROKD_FUZZ_SEED`` shifts them all: a
    new set of mutations, each still printed with its own seed)."""
    return int.from_bytes(kind.encode(), "little") % 1_000_003 * 100_003 + index + \
        SEED_BASE * 10 ** 12


def _prepare_case(kind: str, seeds: dict[str, Path], case: Path) -> tuple[Path, Target]:
    if case.exists():
        shutil.rmtree(case)
    shutil.copytree(seeds[kind], case)
    file, target = targets(case)[kind]
    if kind == "log":  # the run being resumed logs into the case's folder
        config = case / "run" / "config.toml"
        text = re.sub(r"(?m)^log_dir = .*\n", "", config.read_text())
        config.write_text(text + f'log_dir = "{target.patches["log_dir"]}"\n')
    (case / "fresh-cache").mkdir(exist_ok=True)
    return file, target


def fuzz_chunk(kind: str, indices: range, seeds: dict[str, Path], workdir: Path,
               monkeypatch) -> dict[str, int]:
    counts = {"run": 0, "refused": 0, "read": 0, "failed": 0}
    failures = []
    for index in indices:
        case = workdir / f"{kind}-{index}"
        file, target = _prepare_case(kind, seeds, case)
        if index < 0:  # the valid file itself: must be read
            data, what = file.read_bytes(), "no mutation (the valid file)"
        else:
            rng = random.Random(seed_of(kind, index))
            data, what = mutate(target.kind, file.read_bytes(), rng)
        file.write_bytes(data)
        outcome = run_mutation(target, file, case, monkeypatch)
        monkeypatch.undo()
        counts["run"] += 1
        counts[outcome.verdict] += 1
        if outcome.verdict == "failed" or (index < 0 and outcome.verdict != "read"):
            failures.append(f"{target.name} mutation {index} (seed {seed_of(kind, index)}): "
                            f"{what}\n  command: neurokd {' '.join(target.argv)}\n  "
                            f"{outcome.why or 'the valid file was not read'}; exit "
                            f"{outcome.code}; stderr: {outcome.err.strip()[-600:]}")
        else:
            shutil.rmtree(case, ignore_errors=True)
    report = os.environ.get("NEUROKD_FUZZ_COUNTS")
    if report:
        Path(report).mkdir(parents=True, exist_ok=True)
        (Path(report) / f"{kind}-{indices.start}.json").write_text(json.dumps(counts))
    assert not failures, "\n".join(failures)
    return counts


def _cases() -> list:
    params = [pytest.param(kind, range(-1, FAST), id=f"{kind}-fast") for kind in TYPES]
    for kind in TYPES:
        for start in range(FAST, max(PER_TYPE, FAST), CHUNK):
            stop = min(start + CHUNK, max(PER_TYPE, FAST) + 1)
            params.append(pytest.param(kind, range(start, stop), id=f"{kind}-{start}",
                                       marks=pytest.mark.slow))
    return params


@pytest.mark.parametrize("kind, indices", _cases())
def test_fuzz(kind, indices, fuzz_seeds, tmp_path, monkeypatch):
    fuzz_chunk(kind, indices, fuzz_seeds, tmp_path, monkeypatch)


def test_the_mutations_are_reproducible():
    data = bytes(range(256)) * 4
    for kind in ("binary", "text"):
        first = mutate(kind, data, random.Random(seed_of(kind, 5)))
        assert first == mutate(kind, data, random.Random(seed_of(kind, 5)))


def test_no_mutation_reaches_the_catch_all_even_when_it_would_say_so(monkeypatch, capsys):
    """Item 3: the catch-all is still there (a bug, not a file, reaches it) and says so."""
    from neurokd import cli

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli.cli, "main", broken)
    with pytest.raises(SystemExit) as info:
        cli.main(["plot", "x"])
    assert info.value.code == 1 and "internal error: RuntimeError: a bug" in \
        capsys.readouterr().err
    assert math.isfinite(float(np.float64(1.0)))
