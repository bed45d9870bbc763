"""An export records its run's data split settings (data set, folder, image size,
--val-fraction, seed) and `simulate` loads its test split with them.

The ImageFolder here is so small that the default --val-fraction 0.1 cannot hold out a
validation sample of each class: a simulate that ignored the recorded 0.3 would fail."""

from __future__ import annotations

import json

import h5py
import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from neurokd.data import load_data
from neurokd.data.encoding import DirectEncoding
from neurokd.errors import DataError
from neurokd.student.sources import StudentSource

from helpers import requires_lava

SHAPE = (3, 8, 8)
SETTINGS = {"dataset": "imagefolder", "image_size": 8, "val_fraction": 0.3, "seed": 3}


@pytest.fixture
def tiny_run(tmp_path):
    """8 images in each of 3 classes (no train/ test/ folders: 20% are the test split) and a
    student whose config holds the run's settings."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for index, label in enumerate(("a", "b", "c")):
        (root / label).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            pixels[..., index] = 255
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    torch.manual_seed(0)
    model = nn.Sequential(layer.Conv2d(3, 4, 3, padding=1, step_mode="m"),
                          neuron.IFNode(v_threshold=0.5, step_mode="m"),
                          layer.Flatten(step_mode="m"), layer.Linear(4 * 8 * 8, 3, step_mode="m"))
    config = SETTINGS | {"data_dir": str(root), "timesteps": 2}
    source = StudentSource(DirectEncoding(model, SHAPE, 2).eval(), SHAPE, 2, "user", config)
    return source, root


def _test_split(root):
    with pytest.raises(DataError, match="raise --val-fraction"):  # why the setting matters
        load_data("imagefolder", str(root), val_fraction=0.1, image_size=8, augment=False)
    bundle = load_data("imagefolder", str(root), val_fraction=0.3, image_size=8, augment=False)
    x = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])
    y = np.array([int(bundle.test[i][1]) for i in range(len(bundle.test))])
    return x, y


def _accuracy(source, x, y) -> float:
    functional.reset_net(source.model)
    with torch.no_grad():
        predicted = source.model(x).mean(0).argmax(-1).numpy()
    return float((predicted == y).mean())


@pytest.mark.slow
def test_onnx_export_records_the_split_and_simulate_uses_it(tiny_run, tmp_path):
    from neurokd.exporters import export_onnx
    from neurokd.exporters.simulation import simulate

    source, root = tiny_run
    path = tmp_path / "s.spikes.onnx"
    export_onnx(source, path, spike_outputs=True)
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    recorded = json.loads(props["neurokd.data"])
    assert {k: recorded[k] for k in SETTINGS} == SETTINGS
    assert recorded["data_dir"] == str(root)
    x, y = _test_split(root)
    result = simulate(path)  # the backend from the suffix, the data from the file
    assert result.dataset == "imagefolder" and result.samples == len(y) == 5
    assert result.accuracy == pytest.approx(_accuracy(source, x, y))


@requires_lava
def test_loihi_export_records_the_split_and_simulate_uses_it(tiny_run, tmp_path):
    from neurokd.exporters.loihi.export import export_loihi
    from neurokd.exporters.simulation import simulate

    source, root = tiny_run
    path = tmp_path / "s.net"
    export_loihi(source, path, lava_samples=0)
    with h5py.File(path) as handle:
        attrs = {key: json.loads(handle.attrs[f"neurokd.{key}"]) for key in SETTINGS}
    assert attrs == SETTINGS
    _, y = _test_split(root)
    result = simulate(path)
    assert result.dataset == "imagefolder" and result.samples == len(y)
    assert result.agreement == 1.0 and set(result.identical_spikes.values()) == {1.0}
    assert result.torch_accuracy == pytest.approx(_accuracy(source, *_test_split(root)))
