"""`neurokd simulate --backend onnx`: accuracy and per-layer counts of an ONNX export, checked
against the student itself run in spikingjelly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron

import neurokd
from neurokd.data import load_data

from helpers import assert_one_line_error, run_cli


def _student_spikes(checkpoint, x):
    """Predictions and summed spikes per neuron module of the PyTorch student."""
    run = neurokd.load(checkpoint)
    sums, hooks = {}, []
    for name, module in run.student.named_modules():
        if isinstance(module, neuron.BaseNode):
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, name=name: sums.__setitem__(name, out.sum(dim=(0, 1)))))
    functional.reset_net(run.student)
    with torch.no_grad():
        logits = run.student(x)
    for hook in hooks:
        hook.remove()
    return logits.mean(0).argmax(-1).numpy(), {k: v.numpy() for k, v in sums.items()}


@pytest.mark.slow
def test_onnx_backend_counts_match_the_student(trained_run, tmp_path, capsys):
    onnx_path = tmp_path / "s.onnx"
    outcome = run_cli(capsys, "export", "--target", "onnx", "--spikes",
                      str(trained_run / "student.pt"), "-o", str(onnx_path),
                      "--check-samples", "32")
    assert outcome.code == 0, outcome.err
    # no --dataset: the export names the data set it was made from in its metadata
    outcome = run_cli(capsys, "simulate", "--backend", "onnx", str(onnx_path), "--samples",
                      "40", "-q", "--json", str(tmp_path / "r.json"),
                      "--save", str(tmp_path / "r.npz"))
    assert outcome.code == 0, outcome.err
    test = load_data("digits").test
    x, y = test.tensors[0][:40], test.tensors[1][:40].numpy()
    predicted, spikes = _student_spikes(trained_run / "student.pt", x)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["backend"] == "onnx" and report["samples"] == 40
    assert report["lava_accuracy"] == float((predicted == y).mean())
    assert report["agreement"] is None and report["quantized_accuracy"] is None
    with np.load(tmp_path / "r.npz", allow_pickle=False) as data:
        assert str(data["backend"]) == "onnx" and int(data["timesteps"]) == 4
        assert list(data["layer_types"]) == ["conv", "conv", "conv", "dense"]
        assert list(data["geometry_1"]) == [32, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1]
        assert list(data["input_shape_3"]) == [128]
        assert np.array_equal(data["input_events_0"], (x.numpy() != 0).sum(0) * 4.0)
        # layers named by their conv / linear, their spikes those of the neurons after it
        assert list(data["layer_names"]) == report["layer_names"] == \
            ["features.0", "features.3", "features.6", "classifier.1"]
        for i, name in enumerate(["features.2", "features.5", "features.8"]):
            assert np.array_equal(data[f"output_spikes_{i}"], spikes[name]), name
            assert report["spike_counts"][report["layer_names"][i]] == int(spikes[name].sum())
        assert int(data["has_neurons_3"]) == 0


@pytest.mark.slow
def test_onnx_without_spike_outputs_is_one_line(trained_run, tmp_path, capsys):
    onnx_path = tmp_path / "s.onnx"
    assert run_cli(capsys, "export", "--target", "onnx", str(trained_run / "student.pt"), "-o",
                   str(onnx_path), "--check-samples", "16").code == 0
    outcome = run_cli(capsys, "simulate", "--backend", "onnx", str(onnx_path), "--dataset",
                      "digits", "--save", str(tmp_path / "r.npz"))
    assert_one_line_error(outcome, 2, "--spikes")
    assert not (tmp_path / "r.npz").exists()


def test_commands_share_their_data_options():
    """--dataset / --data-dir / --samples / --random-inputs mean the same in every command
    that takes them (export, simulate, energy report)."""
    from neurokd.cli import cli

    def data_options(command, names=("dataset", "data_dir", "samples", "random_inputs")):
        return {p.name: p.to_info_dict() for p in command.params if p.name in names}

    import click

    context = click.Context(cli)
    simulate, export = cli.get_command(context, "simulate"), cli.get_command(context, "export")
    energy = cli.get_command(context, "energy")
    report = energy.get_command(click.Context(energy), "report")
    assert set(data_options(simulate)) == {"dataset", "data_dir", "samples"}
    assert data_options(simulate) == data_options(report, ("dataset", "data_dir", "samples"))
    assert data_options(export) == data_options(report, ("dataset", "data_dir",
                                                         "random_inputs"))


@pytest.mark.slow
def test_onnx_export_records_its_data_folder_for_simulate(tmp_path):
    """An imagefolder run's ONNX export carries data_dir and image_size, so simulate finds the
    test images without --data-dir, as it does for Loihi exports."""
    import onnx
    from PIL import Image
    from spikingjelly.activation_based import layer
    from torch import nn

    from neurokd.data.encoding import DirectEncoding
    from neurokd.exporters import export_onnx
    from neurokd.exporters.simulation import simulate
    from neurokd.student.sources import StudentSource

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("test", 3)):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{i}.png")
    torch.manual_seed(0)
    model = nn.Sequential(layer.Conv2d(3, 4, 3, padding=1, step_mode="m"),
                          neuron.LIFNode(step_mode="m"), layer.Flatten(step_mode="m"),
                          layer.Linear(4 * 8 * 8, 2, step_mode="m"))
    shape = (3, 8, 8)
    source = StudentSource(DirectEncoding(model, shape, 2).eval(), shape, 2, "user",
                           config={"dataset": "imagefolder", "data_dir": str(root),
                                   "image_size": 8})
    path = tmp_path / "s.onnx"
    export_onnx(source, path, spike_outputs=True, max_samples=4)
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert props["neurokd.data_dir"] == str(root) and props["neurokd.image_size"] == "8"
    result = simulate(path, backend="onnx")
    assert result.dataset == "imagefolder" and result.samples == 6  # root/test: 2 x 3 images


@pytest.mark.parametrize("name, maker", [
    ("student.spikes.onnx", "neurokd export --target onnx --spikes {run}/student.pt"),
    ("student.net", "neurokd export --target loihi {run}/student.pt"),
    ("s.net", "neurokd export --target loihi CHECKPOINT -o {run}/s.net"),
])
def test_a_missing_export_names_the_command_that_makes_it(tmp_path, capsys, name, maker):
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    outcome = run_cli(capsys, "simulate", str(run / name), "--save", str(tmp_path / "r.npz"))
    assert_one_line_error(outcome, 2, f"no such export file: {run / name} (make it with: "
                          + maker.format(run=run) + ")")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["demo", "runs"]  # nothing written


def test_the_command_a_missing_export_names_makes_it(trained_run, tmp_path, capsys):
    """The hint is a command that works: run as given, simulate then runs."""
    import shlex
    import shutil

    run = tmp_path / "demo"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns(".neurokd.lock"))
    export = run / "student.spikes.onnx"
    outcome = run_cli(capsys, "simulate", str(export), "--samples", "16")
    hint = outcome.err.strip().split("(make it with: ", 1)[1].removesuffix(")")
    words = shlex.split(hint)
    assert words[0] == "neurokd"
    assert run_cli(capsys, *words[1:], "--check-samples", "16").code == 0
    outcome = run_cli(capsys, "simulate", str(export), "--samples", "16", "-q")
    assert outcome.code == 0, outcome.err
