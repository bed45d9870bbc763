"""`neurokd distill` end to end on digits, the checkpoint contract, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import run_cli, run_subprocess

FAST = ["--epochs", "2", "--teacher-epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """One real 2-epoch run through a subprocess, shared by the tests below."""
    out = tmp_path_factory.mktemp("runs")
    outcome = run_subprocess("distill", "--out", str(out), "--name", "t", "--epochs", "2",
                             "--teacher-epochs", "2")
    assert outcome.code == 0, outcome.err
    assert "student accuracy" in outcome.out
    # Not a terminal: plain progress lines, no bar drawing characters.
    assert "student epoch 2/2" in outcome.err and "━" not in outcome.err
    return out / "t"


@pytest.mark.slow
def test_run_folder_holds_checkpoint_metrics_and_teacher(demo_run):
    assert sorted(p.name for p in demo_run.iterdir()) == [  # the lock stays: removing it could let two runs lock different files
        ".neurokd.lock", "config.toml", "last.pt", "metrics.json", "student.pt", "teacher.pt"]
    metrics = json.loads((demo_run / "metrics.json").read_text())
    for key in ("student_accuracy", "teacher_accuracy", "firing_rate", "method", "timesteps",
                "epochs", "wall_time_s"):
        assert key in metrics
    assert metrics["method"] == "tser" and metrics["timesteps"] == 4 and metrics["epochs"] == 2
    assert 0 < metrics["firing_rate"] < 1


@pytest.mark.slow
def test_checkpoint_loads_weights_only_and_reproduces_accuracy(demo_run):
    raw = torch.load(demo_run / "student.pt", weights_only=True)
    assert raw["format"] == "neurokd.checkpoint" and raw["version"] == 1
    assert set(raw) >= {"config", "student", "teacher", "metrics", "class_names"}

    import neurokd
    from neurokd.data import load_data, make_loader
    from neurokd.train.evaluation import evaluate

    run = neurokd.load(demo_run / "student.pt")  # the checkpoint alone rebuilds both models
    assert not run.student.training and not run.teacher.training
    test = make_loader(load_data("digits").test, 64)  # another batch size than training used
    accuracy, firing_rate = evaluate(run.student, test, torch.device("cpu"))
    assert accuracy == run.metrics["student_accuracy"]
    assert firing_rate == pytest.approx(run.metrics["firing_rate"], rel=1e-6)
    teacher_accuracy, _ = evaluate(run.teacher, test, torch.device("cpu"))
    assert teacher_accuracy == run.metrics["teacher_accuracy"]


@pytest.mark.slow
def test_teacher_is_reused_and_config_file_applies(demo_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text('method = "kd"\nepochs = 5\nalpha = 0.7\ntimesteps = 2\n')
    outcome = run_cli(capsys, "distill", "--config", "run.toml", "--epochs", "1", "--quiet",
                      "--teacher", str(demo_run / "teacher.pt"), "--name", "reuse")
    assert outcome.code == 0, outcome.err
    metrics = json.loads(Path("runs/reuse/metrics.json").read_text())
    stored = json.loads((demo_run / "metrics.json").read_text())
    assert metrics["method"] == "kd" and metrics["alpha"] == 0.7 and metrics["timesteps"] == 2
    assert metrics["epochs"] == 1  # the command line wins over the file
    assert metrics["teacher_accuracy"] == stored["teacher_accuracy"]
    assert not Path("runs/reuse/teacher.pt").exists()  # nothing retrained


@pytest.mark.slow  # a training
def test_teacher_logits_are_computed_once_without_augmentation(tmp_path, monkeypatch):
    import importlib

    from neurokd.config import RunConfig
    from neurokd.models import build_teacher

    distill_module = importlib.import_module("neurokd.train.distillation")  # the module, not the function
    calls = []

    def counting_teacher(config):
        model = build_teacher(config)
        model.register_forward_hook(lambda m, i, o: calls.append((len(i[0]), m.training)))
        return model

    monkeypatch.setattr(distill_module, "build_teacher", counting_teacher)
    config = RunConfig(out=str(tmp_path), epochs=3, teacher_epochs=1, batch_size=128)
    result = distill_module.distill(config)
    train_size, val_size, test_size = 1293, 144, 360
    assert result.metrics["epochs"] == 3
    seen_in_eval = [n for n, training in calls if not training]
    # teacher training: one pass over train; then val, test, and one cache pass over train.
    # Three student epochs add no teacher passes.
    assert sum(n for n, training in calls if training) == train_size
    assert sum(seen_in_eval) == val_size + test_size + train_size


def test_cifar10_and_imagefolder_load_from_real_formats(cifar10_dir, image_folder):
    from neurokd.data import load_data

    cifar = load_data("cifar10", str(cifar10_dir), val_fraction=0.1)
    assert cifar.input_shape == (3, 32, 32) and cifar.num_classes == 10
    assert len(cifar.train) + len(cifar.val) == 100 and len(cifar.test) == 20
    assert cifar.class_names[0] == "airplane" and cifar.augmented
    x, y = cifar.test[3]
    assert x.shape == (3, 32, 32) and y == 3
    # Same folder given directly, and the pixels are the ones written (un-normalised check).
    direct = load_data("cifar10", str(cifar10_dir / "cifar-10-batches-py"), augment=False)
    assert len(direct.test) == 20

    images = load_data("imagefolder", str(image_folder), val_fraction=0.2, image_size=16)
    assert images.class_names == ["circle", "square", "triangle"]
    assert images.input_shape == (3, 16, 16)
    assert len(images.train) + len(images.val) + len(images.test) == 30
    x, _ = images.train[0]
    assert x.shape == (3, 16, 16)


def test_distill_runs_on_tiny_cifar_and_imagefolder(cifar10_dir, image_folder, tmp_path, capsys):
    for dataset, folder in (("cifar10", cifar10_dir), ("imagefolder", image_folder)):
        outcome = run_cli(capsys, "distill", "--dataset", dataset, "--data-dir", str(folder),
                          "--out", str(tmp_path), "--name", dataset, "--width", "4",
                          "--teacher-width", "4", "--image-size", "16", *FAST)
        assert outcome.code == 0, outcome.err
        run = torch.load(tmp_path / dataset / "student.pt", weights_only=True)
        assert run["config"]["dataset"] == dataset


def test_crafted_cifar_pickle_is_refused(cifar10_dir, tmp_path):
    import pickle

    from neurokd.data import load_data
    from neurokd.errors import DataError

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(cifar10_dir / "cifar-10-batches-py" / "test_batch", "wb") as handle:
        pickle.dump({b"data": Payload(), b"labels": [0]}, handle)
    with pytest.raises(DataError, match="refusing"):
        load_data("cifar10", str(cifar10_dir))
    assert not marker.exists()


