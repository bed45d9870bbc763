"""The training log: what each epoch records, checked against independent computations, and
the same records in TensorBoard (read back by tensorboard itself), the CSV, the Python
callback and `neurokd plot`."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron

import neurokd
from neurokd.data import Indexed, load_data, make_loader
from neurokd.models import build_student

from helpers import run_cli


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A 2-epoch ce run that cannot learn (lr 1e-30): its training accuracy is then the
    accuracy of the initial weights on the shuffled batches, computable independently."""
    out = tmp_path_factory.mktemp("logged")
    seen = []
    config = neurokd.RunConfig(out=str(out), name="run", method="ce", epochs=2, lr=1e-30,
                               log_dir=str(out / "logs"), width=8)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:  # the choice neurokd makes by itself
        patch.delenv("OMP_NUM_THREADS", raising=False)
        patch.delenv("MKL_NUM_THREADS", raising=False)
        result = neurokd.distill(config, on_epoch=lambda phase, rec: seen.append((phase, rec)))
    assert torch.get_num_threads() == threads  # the caller's setting is given back
    return result, seen, out / "logs"


def test_train_accuracy_is_the_initial_weights_on_the_same_batches(logged_run):
    result, _, _ = logged_run
    config = result.config.to_dict()
    data = load_data("digits")
    torch.manual_seed(config["seed"])
    student = build_student(config).train()  # batch statistics, as in training
    loader = make_loader(Indexed(data.train), config["batch_size"], shuffle=True,
                         seed=config["seed"])
    correct = 0
    with torch.no_grad():
        # epoch 1's order: the sampler on the loader's seeded generator (the fit loop walks
        # the batch sampler itself, so a resumed epoch replays it; iter(loader) would first
        # draw a worker seed from the same generator)
        for indices in loader.batch_sampler:
            x, y, _ = loader.collate_fn([loader.dataset[i] for i in indices])
            functional.reset_net(student)
            correct += int((student(x).mean(0).argmax(-1) == y).sum())
    first = result.metrics["history"][0]
    assert first["train_accuracy"] == pytest.approx(correct / len(data.train), abs=1e-9)


def test_layer_firing_rates_are_spikes_per_neuron_and_step_on_validation(logged_run):
    result, _, _ = logged_run
    student = neurokd.load(result.checkpoint).student  # best epoch: the last of a flat run
    spikes, sizes = {}, {}
    def counter(name):
        def hook(module, inputs, out):
            spikes[name] = spikes.get(name, 0.0) + out.sum().item()
            sizes[name] = sizes.get(name, 0) + out.numel()
        return hook

    hooks = [m.register_forward_hook(counter(name)) for name, m in student.named_modules()
             if isinstance(m, neuron.BaseNode)]
    val = load_data("digits").val
    with torch.no_grad():
        for batch in make_loader(val, 256):
            functional.reset_net(student)
            student(batch[0])
    for hook in hooks:
        hook.remove()
    best = result.metrics["history"][result.metrics["best_epoch"] - 1]
    # each neuron module's rate under its layer's name, the conv before it (docs/formats.md)
    layer = {"features.2": "features.0", "features.5": "features.3", "features.8": "features.6"}
    expected = {layer[name]: spikes[name] / sizes[name] for name in spikes}
    assert set(best["layer_firing_rates"]) == set(expected) == {"features.0", "features.3",
                                                                "features.6"}
    for name, rate in expected.items():
        assert best["layer_firing_rates"][name] == pytest.approx(rate, rel=1e-6)
    assert best["firing_rate"] == pytest.approx(sum(spikes.values()) / sum(sizes.values()),
                                                rel=1e-6)


def test_each_epoch_records_the_cosine_rate_it_trained_with_and_its_time(logged_run):
    result, _, _ = logged_run
    history = result.metrics["history"]
    epochs = len(history)
    for record in history:
        cosine = 1e-30 * (1 + math.cos(math.pi * (record["epoch"] - 1) / epochs)) / 2
        assert record["lr"] == pytest.approx(cosine)
        assert record["epoch_seconds"] > 0
    assert [r["epoch"] for r in history] == [1, 2]
    assert set(history[0]["terms"]) == {"ce"}


def test_callback_csv_and_tensorboard_carry_the_same_records(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, seen, logs = logged_run
    history = result.metrics["history"]
    assert [record for phase, record in seen if phase == "student"] == history
    assert [phase for phase, _ in seen] == ["student", "student"]  # ce: no teacher
    with open(logs / "student.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row, record in zip(rows, history, strict=True):
        assert float(row["val_accuracy"]) == record["val_accuracy"]
        assert float(row["term:ce"]) == record["terms"]["ce"]
        assert float(row["rate:features.3"]) == record["layer_firing_rates"]["features.3"]
        curve = record["val_accuracy_by_timestep"]  # from steps 1..t; the last is val_accuracy
        assert [float(row[f"val_by_t:{t}"]) for t in range(1, 5)] == curve
        assert curve[-1] == record["val_accuracy"]
    events = EventAccumulator(str(logs))
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("student/loss")]
    assert [step for step, _ in loss] == [1, 2]
    np.testing.assert_allclose([v for _, v in loss], [r["loss"] for r in history], rtol=1e-6)
    val = [e.value for e in events.Scalars("student/accuracy/val")]
    np.testing.assert_allclose(val, [r["val_accuracy"] for r in history], rtol=1e-6)
    assert "student/firing_rate/features.0" in events.Tags()["scalars"]


def test_plot_draws_every_panel(logged_run, tmp_path, capsys):
    from PIL import Image

    result, _, _ = logged_run
    outcome = run_cli(capsys, "plot", str(result.run_dir), "-o", str(tmp_path / "t.png"))
    assert outcome.code == 0, outcome.err
    with Image.open(tmp_path / "t.png") as image:
        assert image.size == (1200, 1200)  # three rows: two of them over timesteps


def test_the_run_summary_states_the_threads(logged_run):
    result, _, _ = logged_run
    from neurokd.runtime.threads import usable_cores

    assert 1 <= result.metrics["threads"] <= usable_cores()
    assert re.fullmatch(r"\d+\.\d of \d+ cores free at start \(/proc/stat\)",
                        result.metrics["threads_reason"]), result.metrics["threads_reason"]
