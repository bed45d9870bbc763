"""One run per folder: a running run's lock, no silent reuse, --overwrite, a changed resume,
and signals that end a command without leaving anything behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import neurokd
from neurokd.config import load_toml
from neurokd.errors import ConfigError
from neurokd.train.run_folder import claimed

from helpers import assert_one_line_error, run_cli


def _config(tmp_path: Path, **kw) -> neurokd.RunConfig:
    values = dict(out=str(tmp_path), name="run", epochs=1, teacher_epochs=1, width=4,
                  teacher_width=4, method="ce")
    return neurokd.RunConfig(**(values | kw))


def test_a_folder_being_written_is_refused_naming_the_writer(tmp_path, capsys):
    with claimed(tmp_path / "run", resume=False, overwrite=False):
        outcome = run_cli(capsys, "distill", "--out", str(tmp_path), "--name", "run", "-q",
                          "--method", "ce", "--epochs", "1")
    assert_one_line_error(outcome, 2, f"being written by another neurokd run (pid {os.getpid()})")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".neurokd.lock"]


def test_overwrite_removes_the_files_of_every_target_a_new_one_included(tmp_path, monkeypatch):
    """The export names come from the exporters' registry: a target added there has its files
    removed with the run they were made from, with no list in the core to keep up to date."""
    from neurokd.exporters import registry
    from neurokd.exporters.base import Exporter

    probe = Exporter("probe", ".probe", "a target added later", export=print, limits=list,
                     stems=("student", "student.alt"))
    monkeypatch.setitem(registry.EXPORTERS, "probe", probe)
    names = registry.default_export_names()
    assert {"student.onnx", "student.spikes.onnx", "teacher.onnx", "student.nir", "student.net",
            "student.probe", "student.alt.probe"} <= set(names)
    run = tmp_path / "run"
    run.mkdir()
    for name in (*names, "student.pt", "metrics.json", "config.toml"):
        (run / name).write_bytes(b"the old run")
    (run / "notes.txt").write_text("the user's own file stays")
    with claimed(run, resume=False, overwrite=True, exports=names):
        pass
    assert sorted(p.name for p in run.iterdir()) == [".neurokd.lock", "notes.txt"]


@pytest.mark.slow  # a training
def test_a_finished_run_is_not_replaced_unless_asked(tmp_path, capsys):
    first = neurokd.distill(_config(tmp_path))
    from neurokd.exporters.registry import default_export_names

    for name in default_export_names():
        (tmp_path / "run" / name).write_bytes(b"an export of the first run")
    before = first.checkpoint.read_bytes()
    outcome = run_cli(capsys, "distill", "--out", str(tmp_path), "--name", "run", "-q",
                      "--method", "ce", "--epochs", "1")
    assert_one_line_error(outcome, 2, "already holds a run")
    assert first.checkpoint.read_bytes() == before
    outcome = run_cli(capsys, "distill", "--out", str(tmp_path), "--name", "run", "-q",
                      "--method", "ce", "--epochs", "1", "--seed", "3", "--overwrite")
    assert outcome.code == 0, outcome.err
    for name in default_export_names():  # they described the old model
        assert not (tmp_path / "run" / name).exists(), name
    assert neurokd.load(first.checkpoint).config["seed"] == 3


@pytest.mark.slow  # a training
def test_resume_refuses_a_changed_setting(tmp_path, monkeypatch):
    from neurokd.train import distillation, fitting

    config = _config(tmp_path, epochs=3)
    real = fitting._end_epoch

    def stop_after_first(run, *args):
        real(run, *args)
        if run.settings.label == "student":
            raise KeyboardInterrupt  # the state of epoch 1 is saved

    monkeypatch.setattr(fitting, "_end_epoch", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        distillation.distill(config)
    monkeypatch.undo()
    toml = tmp_path / "run" / "config.toml"
    toml.write_text(toml.read_text().replace("epochs = 3", "epochs = 5"))
    changed = neurokd.RunConfig.from_dict(load_toml(toml))
    with pytest.raises(ConfigError, match="says epochs = 5 but the interrupted run trained "
                                          "with epochs = 3"):
        distillation.distill(changed, resume=True)
    toml.write_text(toml.read_text().replace("epochs = 5", "epochs = 3"))
    resumed = distillation.distill(neurokd.RunConfig.from_dict(load_toml(toml)), resume=True)
    assert [r["epoch"] for r in resumed.metrics["history"]] == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_an_export_leaves_no_temporary_file(trained_run, tmp_path, signum):
    """The export is stopped while it checks the file it wrote under a temporary name."""
    out = tmp_path / "s.net"
    proc = subprocess.Popen([sys.executable, "-m", "neurokd", "export", "--target", "loihi",
                             str(trained_run / "student.pt"), "-o", str(out), "-q",
                             "--lava-samples", "0", "--check-samples", "360"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".s.net.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_inside_a_finaliser_is_silent_and_still_stops(monkeypatch):
    """Python cannot raise out of a __del__ or weakref callback: it prints 'Exception ignored'
    with a traceback and goes on. The signal must still stop the command, without that print."""
    from neurokd.runtime import signals

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: seen.append(type(info.exc_value)))

    class Interrupted:
        def __del__(self):
            signals._handle(signal.SIGINT, None)  # the handler, as if the signal landed here

    class Broken:
        def __del__(self):
            raise ValueError("a finaliser's own bug is still reported")

    with signals.stoppable():
        Interrupted()  # collected at once: the handler raises inside __del__
        Broken()
        assert seen == [ValueError]
        with pytest.raises(signals.Stopped) as stopped:
            signals.check()
    assert stopped.value.exit_code == 128 + signal.SIGINT
    signals.check()  # outside the block the remembered signal stops nothing (library use)
    assert seen == [ValueError]


def test_a_stop_wrapped_by_c_code_is_the_stop_not_an_internal_error():
    """A signal landing in Cython (h5py's lock) surfaces as a SystemError whose context is the
    Stopped the handler raised: the CLI must end it as the stop (exit 128 + signal)."""
    from neurokd.cli import _signal_behind
    from neurokd.runtime.signals import Stopped

    try:
        try:
            raise Stopped(signal.SIGTERM)
        except Stopped:
            raise SystemError("<cyfunction FastRLock.__exit__> returned a result with an "
                              "exception set") from None
    except SystemError as exc:
        assert exc.__cause__ is None and isinstance(exc.__context__, Stopped)
        assert _signal_behind(exc) == signal.SIGTERM
    assert _signal_behind(ValueError("an unrelated failure")) is None


def test_default_run_names_tell_runs_apart_and_a_name_wins():
    """`--encoding rate` used to land in the default run's folder; what tells runs apart is in
    the name (the student and encoding only when not the defaults, so names stay short)."""
    names = {key: neurokd.RunConfig(**values).run_name for key, values in {
        "default": {}, "rate": {"encoding": "rate"}, "resnet": {"student": "resnet"},
        "kd": {"method": "kd"}, "t8": {"timesteps": 8}, "seed": {"seed": 1},
        "mnist1d": {"dataset": "mnist1d"},
        "both": {"student": "resnet", "encoding": "rate", "method": "tser+fitnet"}}.items()}
    assert names["default"] == "digits-tser-t4-s0"
    assert names["rate"] == "digits-rate-tser-t4-s0"
    assert names["resnet"] == "digits-resnet-tser-t4-s0"
    assert names["both"] == "digits-resnet-rate-tser+fitnet-t4-s0"
    assert len(set(names.values())) == len(names)
    # direct is what no encoding means: the same run, the same folder
    assert neurokd.RunConfig(encoding="direct").run_name == names["default"]
    assert neurokd.RunConfig(name="mine", encoding="rate", seed=3).run_name == "mine"


def test_a_name_clash_is_refused_in_words_for_both_callers(tmp_path, capsys):
    """Before any training: the CLI exits 2 with one line, the library raises; neither names
    a CLI flag (from Python, --overwrite means nothing)."""
    run = tmp_path / "digits-tser-t4-s0"
    run.mkdir()
    (run / "student.pt").write_bytes(b"an earlier run")
    with pytest.raises(ConfigError) as caught:
        neurokd.distill(neurokd.RunConfig(out=str(tmp_path), epochs=1, teacher_epochs=1))
    message = str(caught.value)
    assert message == (f"{run} already holds a run (student.pt): choose another name, resume "
                       "it or overwrite it")
    assert "--" not in message
    outcome = run_cli(capsys, "distill", "--out", str(tmp_path), "-q", "--epochs", "1")
    assert_one_line_error(outcome, 2, "already holds a run (student.pt)")
    assert sorted(p.name for p in run.iterdir()) == [".neurokd.lock", "student.pt"]
    assert (run / "student.pt").read_bytes() == b"an earlier run"
