"""Interrupted runs resume to the same result; NaN stops with the last good state kept."""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from neurokd.config import RunConfig
from neurokd.errors import TrainingError
from neurokd.train.fitting import Interrupted

distill_module = importlib.import_module("neurokd.train.distillation")


def _config(tmp_path: Path, name: str, **kw) -> RunConfig:
    values = dict(out=str(tmp_path), name=name, epochs=3, teacher_epochs=1, batch_size=128,
                  width=8, teacher_width=8)
    values.update(kw)
    return RunConfig(**values)


def _signal_at_step(monkeypatch, step: int, signum: int) -> None:
    """Deliver a real signal to this process during the student's training step ``step``."""
    calls = {"n": 0}
    build = distill_module.build_student

    def hooked(config, spiking=True):
        model = build(config, spiking)

        def hook(module, inputs, output):
            if module.training:
                calls["n"] += 1
                if calls["n"] == step:
                    signal.raise_signal(signum)
        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(distill_module, "build_student", hooked)


def _untimed(metrics: dict) -> dict:
    """The metrics without what a clock measured (wall time, per-epoch seconds)."""
    kept = {k: v for k, v in metrics.items() if k != "wall_time_s"}
    for key in ("history", "teacher_history"):
        kept[key] = [{k: v for k, v in r.items() if k != "epoch_seconds"}
                     for r in metrics.get(key) or []]
    return kept


@pytest.mark.slow  # a training
def test_same_seed_gives_identical_runs(tmp_path):
    # the same thread count too: another count sums floats in another order
    a = distill_module.distill(_config(tmp_path, "a", epochs=2, threads=2))
    b = distill_module.distill(_config(tmp_path, "b", epochs=2, threads=2))
    assert _untimed(a.metrics) == _untimed(b.metrics)
    for (name, x), (_, y) in zip(a.student.state_dict().items(), b.student.state_dict().items(),
                                 strict=True):
        assert torch.equal(x, y), name


@pytest.mark.slow  # a training
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, signum):
    config = _config(tmp_path, "cut")  # threads: neurokd's own choice, kept for the resume
    steps_per_epoch = -(-1293 // 128)
    _signal_at_step(monkeypatch, steps_per_epoch + 4, signum)  # mid-way through epoch 2
    with pytest.raises(Interrupted) as caught:
        distill_module.distill(config)
    assert caught.value.exit_code == 128 + signum
    assert "resume with: neurokd distill --resume" in str(caught.value)
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (2, 4)  # nothing of the finished steps is lost
    assert not (tmp_path / "cut" / "student.pt").exists()
    chosen = state["run_config"]["threads"]
    monkeypatch.undo()
    resumed = distill_module.distill(config, resume=True)
    assert (resumed.metrics["threads"], resumed.metrics["threads_reason"]) == \
        (chosen, "the interrupted run's count")
    reference = distill_module.distill(_config(tmp_path, "whole", threads=chosen))
    for (name, x), (_, y) in zip(reference.student.state_dict().items(),
                                 resumed.student.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    for key in ("student_accuracy", "teacher_accuracy", "firing_rate", "best_epoch", "history"):
        assert _untimed(resumed.metrics)[key] == _untimed(reference.metrics)[key], key


def test_nan_loss_stops_with_message_and_keeps_last_good_state(tmp_path, monkeypatch):
    import dataclasses

    from neurokd import losses

    steps_per_epoch = -(-1293 // 128)
    calls = {"n": 0}
    real = losses.LOSS_SPECS["tser"]

    def poisoned(student_logits, teacher_logits, targets, **kw):
        calls["n"] += 1
        value = real.fn(student_logits, teacher_logits, targets, **kw)
        if calls["n"] == steps_per_epoch + 3:
            return losses.LossValue(value.total * float("nan"), value.terms)
        return value

    monkeypatch.setitem(losses.LOSS_SPECS, "tser", dataclasses.replace(real, fn=poisoned))
    with pytest.raises(TrainingError, match="epoch 2, step 3"):
        distill_module.distill(_config(tmp_path, "nan"))
    state = torch.load(tmp_path / "nan" / "last.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (2, 0)  # the end of epoch 1, the last good state
    assert torch.isfinite(torch.cat([v.flatten().float() for v in state["model"].values()])).all()
    assert not (tmp_path / "nan" / "student.pt").exists()


@pytest.mark.slow
def test_sigint_through_the_cli_then_resume(tmp_path):
    run_dir = tmp_path / "cli"
    args = [sys.executable, "-m", "neurokd", "distill", "--out", str(tmp_path), "--name", "cli",
            "--epochs", "12", "--teacher-epochs", "1", "--width", "8", "--teacher-width", "8"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run_dir / "last.pt").exists():  # the first student epoch is done
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("neurokd: interrupted during student epoch")  # not an error
    assert f"--resume {run_dir}" in last and "Traceback" not in err
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["epoch"] >= 2 or state["step"] > 0  # at most the current step is redone
    done = subprocess.run([sys.executable, "-m", "neurokd", "distill", "--resume", str(run_dir),
                           "--quiet"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    import json

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, 13))


def test_resuming_a_finished_run_says_so_and_changes_nothing(trained_run, tmp_path, capsys):
    """--resume of a finished run retrained nothing and rewrote student.pt and metrics.json;
    now it is refused before anything is opened for writing."""
    import shutil

    from helpers import assert_one_line_error, run_cli

    run = tmp_path / "finished"
    shutil.copytree(trained_run, run)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()
              if p.is_file()}
    outcome = run_cli(capsys, "distill", "--resume", str(run), "-q")
    assert_one_line_error(outcome, 2, "is a finished run")
    assert "nothing changed" in outcome.err
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()
             if p.is_file()}
    assert after == before
