"""Every benchmark that writes results takes --publish (benchmarks/results_dir.py), and without
it leaves the committed benchmarks/results/ alone."""

from __future__ import annotations

import hashlib
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
# Helpers imported by the scripts, not scripts; compare_methods.py keeps its own --results
# folder (its rows merge into the committed file by design).
NOT_SCRIPTS = {"results_dir.py", "publish.py", "bench_report.py", "bench_merge.py",
               "gpu_kernels.py", "compare_methods.py", "anytime_report.py"}
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name not in NOT_SCRIPTS)


@pytest.fixture
def benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import results_dir

    return results_dir


def _run(script: str, *args: str, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *args])
    try:
        runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    except SystemExit as stop:  # `raise SystemExit(main())`: 0 is success
        if stop.code not in (0, None):
            raise


def test_the_list_of_scripts_is_the_folder():
    assert {"threads.py", "energy_bench.py", "onnx_latency.py", "zoo.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_takes_publish(script, benchmarks_on_path, monkeypatch, capsys):
    _run(script, "--help", monkeypatch=monkeypatch)
    usage = capsys.readouterr().out
    assert "--publish" in usage and "--results" in usage, usage


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()
            if p.is_file()}


@pytest.mark.slow  # exports and times the trained student
def test_a_run_without_publish_leaves_the_committed_results(trained_run, benchmarks_on_path,
                                                            monkeypatch, tmp_path):
    scratch = tmp_path / "scratch"
    monkeypatch.setattr(benchmarks_on_path, "SCRATCH", scratch)
    committed = BENCHMARKS / "results"
    before = _digest(committed)
    _run("onnx_latency.py", str(trained_run / "student.pt"), "--repeats", "1",
         monkeypatch=monkeypatch)
    assert _digest(committed) == before
    report = (scratch / "onnx_latency.md").read_text()
    assert "ONNX Runtime" in report
    published = tmp_path / "elsewhere"
    monkeypatch.setattr(benchmarks_on_path, "COMMITTED", published)
    _run("onnx_latency.py", str(trained_run / "student.pt"), "--repeats", "1", "--publish",
         monkeypatch=monkeypatch)
    assert (published / "onnx_latency.md").is_file()
