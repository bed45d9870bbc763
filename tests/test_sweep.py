"""`neurokd sweep` (neurokd.train.sweep): Optuna studies of distill runs — workers sharing one
storage, a killed worker's trial retried, resume after Ctrl-C, the Pareto outputs, bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neurokd.train.sweep import outcome, read_spec

from helpers import assert_one_line_error, run_cli

SPEC = """\
[sweep]
trials = {trials}
sampler = "random"
energy_model = "memory"

[base]
epochs = {epochs}
teacher_epochs = 1
threads = 1
rate_target = "break-even"

[space]
rate_weight = {{low = 1.0, high = 1000.0, log = true}}
timesteps = [2, 3]
"""


def _spec(tmp_path: Path, trials: int = 2, epochs: int = 1, text: str | None = None) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text or SPEC.format(trials=trials, epochs=epochs))
    return path


def _study(folder: Path):
    import optuna

    return optuna.load_study(study_name="spec", storage=f"sqlite:///{folder / 'study.db'}")


def _worker(spec: Path, folder: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "neurokd", "sweep", str(spec), "--out",
                             str(folder), "--quiet", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _complete(folder: Path):
    from optuna.trial import TrialState

    return _study(folder).get_trials(states=(TrialState.COMPLETE,))


def _wait_for_running(folder: Path, timeout: float = 120) -> None:
    """Until a trial has trained an epoch (its last.pt exists): well inside a trial."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if list(folder.glob("runs/trial-*/last.pt")):
            return
        time.sleep(0.2)
    raise AssertionError("no trial started training")


@pytest.mark.parametrize("text,contains", [
    ("[space]\nwidht = [8, 16]\n", "width"),          # a distill option that does not exist
    ("[base]\nout = 'x'\n", "sets it"),                # the sweep's own
    ("[sweep]\ntrials = 0\n", "trials"),
    ("[sweep]\nsampler = 'magic'\n", "sampler"),
    ("[space]\nlr = {low = 1, high = 0}\n", "low < high"),
    ("[space]\nmethod = ['tser', 'nope']\n", "nope"),
    ("[sweep]\ntrials = 2\nprofile = 'nope'\n", "nope"),
])
def test_bad_spec(capsys, tmp_path, text, contains):
    spec = _spec(tmp_path, text=text)
    outcome_ = run_cli(capsys, "sweep", str(spec), "--out", str(tmp_path / "sweep"))
    assert_one_line_error(outcome_, 2, contains)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-folder/x/study.db",
                                 "postgresql://nobody@127.0.0.1:1/none",
                                 "nonsense://"])
def test_storage_that_cannot_be_opened(capsys, tmp_path, url):
    spec = _spec(tmp_path)
    outcome_ = run_cli(capsys, "sweep", str(spec), "--out", str(tmp_path / "sweep"),
                       "--storage", url)
    assert_one_line_error(outcome_, 2, "--storage")
    assert not (tmp_path / "sweep").exists()  # no folder, no study claiming runs


def test_grid_spec_counts_every_combination(tmp_path):
    text = "[sweep]\nsampler = 'grid'\n[space]\nmethod = ['ce', 'kd', 'tser']\nseed = [0, 1]\n"
    spec = read_spec(_spec(tmp_path, text=text))
    assert spec.trials == 6 and len(spec.grid) == 6
    assert spec.objectives == ("accuracy", "energy_pj")
    exits = "[base]\nexit_rule = 'margin'\nexit_threshold = 0.5\n[sweep]\ntrials = 1\n"
    assert read_spec(_spec(tmp_path, text=exits)).objectives[-1] == "exit_timesteps"


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
    spec, folder = _spec(tmp_path, trials=4), tmp_path / "sweep"
    # started together: they race to create the folder, the database's tables and the study
    workers = [_worker(spec, folder) for _ in range(2)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outs
    done = _complete(folder)
    assert len(done) == 4
    assert len({tuple(sorted(t.params.items())) for t in done}) == 4  # no point twice
    run_dirs = {t.user_attrs["run_dir"] for t in done}
    assert len(run_dirs) == 4 and all((Path(d) / "metrics.json").exists() for d in run_dirs)
    ran = [int(out.split("(")[1].split()[0]) for out, _ in outs]
    assert sum(ran) >= 4 and all(ran), outs  # both took trials
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    assert len(rows) == 4
    for name in ("pareto.md", "pareto.csv", "pareto.png"):
        assert (folder / name).stat().st_size > 0


@pytest.mark.slow
def test_killed_worker_trial_is_retried(tmp_path):
    from optuna.trial import TrialState

    spec, folder = _spec(tmp_path, trials=1, epochs=4), tmp_path / "sweep"
    worker = _worker(spec, folder, "--heartbeat", "1")
    _wait_for_running(folder)
    worker.send_signal(signal.SIGKILL)  # no handler runs: the trial stays RUNNING
    worker.wait()
    study = _study(folder)
    [dead] = study.get_trials(states=(TrialState.RUNNING,))
    time.sleep(3.5)  # past the grace period (3 heartbeats)
    again = _worker(spec, folder, "--heartbeat", "1")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    trials = _study(folder).get_trials()
    assert trials[dead.number].state == TrialState.FAIL
    [done] = [t for t in trials if t.state == TrialState.COMPLETE]
    assert done.params == dead.params  # the same point, trained again
    assert done.user_attrs["run_dir"] == dead.user_attrs["run_dir"]  # resumed in its folder
    assert done.system_attrs.get("failed_trial") == dead.number
    assert len(outcome(_study(folder), ("accuracy", "energy_pj")).trials) == 1


@pytest.mark.slow
def test_resume_after_ctrl_c(tmp_path):
    from optuna.trial import TrialState

    spec, folder = _spec(tmp_path, trials=2, epochs=4), tmp_path / "sweep"
    worker = _worker(spec, folder)
    _wait_for_running(folder)
    os.kill(worker.pid, signal.SIGINT)
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 130, err
    trials = _study(folder).get_trials()
    [stopped] = [t for t in trials if t.state == TrialState.FAIL]
    [waiting] = [t for t in trials if t.state == TrialState.WAITING]
    assert waiting.user_attrs["retry_of"] == stopped.number
    again = _worker(spec, folder)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    done = _complete(folder)
    assert len(done) == 2
    [resumed] = [t for t in done if t.params == stopped.params]
    assert resumed.user_attrs["run_dir"] == stopped.user_attrs["run_dir"]
    metrics = json.loads((Path(resumed.user_attrs["run_dir"]) / "metrics.json").read_text())
    assert len(metrics["history"]) == 4  # all its epochs, in the folder it started in
    assert len({t.user_attrs["run_dir"] for t in done}) == 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask/tell here, not optimize
def test_each_trial_draws_by_its_number_whichever_worker(tmp_path):
    """Two workers (two study objects, each with its sampler) on one storage draw what one
    worker alone draws: trial n's point depends on n, so workers never repeat each other's
    sequence (as two samplers seeded alike would) and a resume continues it."""
    import optuna

    from neurokd.train.sweep import open_study, per_trial_seed

    def sampler():
        return per_trial_seed(lambda n: optuna.samplers.TPESampler(seed=n))

    def draw(study) -> tuple[int, float]:
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, x)
        return trial.number, x

    shared = open_study(f"sqlite:///{tmp_path / 'a.db'}", "s", ["maximize"], sampler())
    other = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'a.db'}",
                              sampler=sampler())
    together = [draw(study) for study in (shared, other, shared, other)]
    alone_study = open_study(f"sqlite:///{tmp_path / 'b.db'}", "s", ["maximize"], sampler())
    alone = [draw(alone_study) for _ in range(4)]
    assert together == alone
    assert len({x for _, x in alone}) == 4
