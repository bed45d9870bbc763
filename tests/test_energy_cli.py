"""`neurokd energy` end to end: JSON, PNG, --from-sim (alias --from-lava), --model, bad input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

from neurokd.energy import count_events, write_spike_counts

from helpers import run_cli

USER_MODEL = '''
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn


class Net(nn.Module):
    """Not a Sequential: a conv/LIF stem, a strided conv with IF, a linear read-out."""

    def __init__(self):
        super().__init__()
        self.stem = layer.Conv2d(1, 6, 3, padding=1, step_mode="m")
        self.lif = neuron.LIFNode(tau=2.0, step_mode="m")
        self.down = layer.Conv2d(6, 8, 3, stride=2, padding=1, step_mode="m")
        self.spike = neuron.IFNode(step_mode="m")
        self.head = layer.Linear(8 * 4 * 4, 10, step_mode="m")

    def forward(self, x):
        s = self.spike(self.down(self.lif(self.stem(x))))
        return self.head(s.flatten(2))


def build():
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.stem.weight.mul_(4.0)   # enough drive for both layers to spike
        net.down.weight.mul_(4.0)
    return net
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "energy_user_model.py").write_text(USER_MODEL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "energy_user_model"
    sys.modules.pop("energy_user_model", None)


def test_report_writes_json_and_png(trained_run, tmp_path, capsys):
    from PIL import Image

    out_json, out_png = tmp_path / "e.json", tmp_path / "e.png"
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"), "--samples",
                      "120", "--json", str(out_json), "--plot", str(out_png), "--quiet")
    assert outcome.code == 0, outcome.err
    assert outcome.err == ""  # --quiet: no progress lines
    assert "SNN / ANN energy" in outcome.out and "features.3" in outcome.out
    data = json.loads(out_json.read_text())
    for key in ("profile", "samples", "snn_energy_pj", "ann_energy_pj", "ratio", "layers"):
        assert key in data
    assert data["profile"] == "45nm-fp32" and data["samples"] == 120
    assert data["ratio"] == pytest.approx(data["snn_energy_pj"] / data["ann_energy_pj"])
    assert [row["name"] for row in data["layers"]] == ["features.0", "features.3", "features.6",
                                                       "classifier.1"]
    for row in data["layers"]:
        assert set(row) >= {"name", "firing_rate", "synops", "macs", "neuron_updates",
                            "energy_pj"}
    assert data["snn_energy_pj"] == pytest.approx(sum(r["energy_pj"] for r in data["layers"]))
    with Image.open(out_png) as image:
        assert image.format == "PNG" and image.size[0] > 400
    import matplotlib.image

    assert matplotlib.image.imread(out_png).ndim == 3


def test_loihi_profile_and_twin(trained_run, tmp_path, capsys):
    out = tmp_path / "l.json"
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"), "--samples",
                      "40", "--profile", "loihi", "--ann", "twin", "--json", str(out), "-q")
    assert outcome.code == 0, outcome.err
    data = json.loads(out.read_text())
    assert data["profile"] == "loihi" and "Davies" in data["profile_source"]
    assert data["ann"] == "ReLU twin of the student"
    # The twin has the student's layers: fan-in x outputs of each, once (T=1).
    assert [a["macs"] for a in data["ann_layers"]] == [9 * 16 * 64, 144 * 32 * 16, 288 * 32 * 4,
                                                       128 * 10]
    for row in data["layers"]:
        inactive = row["neuron_updates"] - row["active_neuron_updates"]
        expected = (row["synops"] * 23.6 + row["macs"] * 4.6 + inactive * 52
                    + row["active_neuron_updates"] * 81)
        assert row["energy_pj"] == pytest.approx(expected)


def test_from_lava_result_prices_the_recorded_counts(trained_run, tmp_path, capsys):
    """An npz in the simulate contract, written from a float run of the same samples, must give
    the float estimate's numbers back, alone and next to the checkpoint."""
    import neurokd
    from neurokd.data import load_data

    run = neurokd.load(trained_run / "student.pt")
    x = load_data("digits").test.tensors[0][:50]
    counts = count_events(run.student, x, (1, 8, 8))
    npz = write_spike_counts(tmp_path / "result.npz", counts, backend="lava")
    with np.load(npz, allow_pickle=False) as data:
        assert str(data["format"]) == "neurokd.spike-counts" and int(data["samples"]) == 50
        assert data["geometry_1"].tolist() == [32, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1]
    both, alone = tmp_path / "both.json", tmp_path / "alone.json"
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"),
                      "--from-lava", str(npz), "--json", str(both), "-q")
    assert outcome.code == 0, outcome.err
    assert "deployed (lava, result.npz)" in outcome.out
    float_report = json.loads(both.read_text())
    deployed = float_report["deployed"]
    assert float_report["samples"] == deployed["samples"] == 50  # same samples by default
    assert deployed["counted_on"] == "lava"
    assert deployed["snn_energy_pj"] == pytest.approx(float_report["snn_energy_pj"])
    assert deployed["ratio"] == pytest.approx(float_report["ratio"])
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(npz), "--json",
                      str(alone), "-q")
    assert outcome.code == 0, outcome.err
    only = json.loads(alone.read_text())
    assert only["ann_energy_pj"] is None and "no ANN reference" in only["note"]
    for a, b in zip(only["layers"], float_report["layers"], strict=True):
        assert (a["name"], a["synops"], a["macs"]) == (b["name"], b["synops"], b["macs"])
        assert a["energy_pj"] == pytest.approx(b["energy_pj"])


def test_user_model_from_elsewhere(user_module, tmp_path, capsys):
    out = tmp_path / "u.json"
    outcome = run_cli(capsys, "energy", "report", "--model", f"{user_module}:build",
                      "--input-shape", "1,8,8", "--timesteps", "3", "--random-inputs",
                      "--random-weights", "--samples", "24", "--ann", "twin", "--json", str(out), "-q")
    assert outcome.code == 0, outcome.err
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["layers"]] == ["stem", "down", "head"]
    assert data["timesteps"] == 3 and data["inputs"].startswith("24 random")
    stem, down, head = data["layers"]
    assert stem["macs"] == 9 * 6 * 64 * 3 and stem["neuron_updates"] == 6 * 64 * 3
    assert down["neuron_updates"] == 8 * 16 * 3 and head["neuron_updates"] == 0
    assert down["synops"] > 0 and head["synops"] > 0
    # SOPs agree with op_counter on the same seeded inputs.
    from neurokd.student.sources import load_source

    source = load_source(model=f"{user_module}:build", input_shape="1,8,8", timesteps=3)
    x = torch.randn(24, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    counter = SynOpCounter()
    with DispatchCounterMode([counter]), torch.no_grad():
        functional.reset_net(source.model)
        source.model(x)
    per_layer = {k.rsplit(".", 1)[-1]: sum(v.values()) / 24 for k, v in counter.get_counts().items()
                 if k.count(".") == 2}
    assert down["synops"] == pytest.approx(per_layer["down"])
    assert head["synops"] == pytest.approx(per_layer["head"])
    # Twin: the same convs/linear with ReLU, T=1.
    assert [a["macs"] for a in data["ann_layers"]] == [9 * 6 * 64, 54 * 8 * 16, 128 * 10]

    outcome = run_cli(capsys, "energy", "report", "--model", f"{user_module}:build",
                      "--input-shape", "1,8,8", "--timesteps", "2", "--dataset", "digits",
                      "--random-weights", "--samples", "30", "-q")
    assert outcome.code == 0, outcome.err
    assert "digits test split (30 samples)" in outcome.out
    assert "no ANN reference" in outcome.out


def test_profiles_command(capsys):
    outcome = run_cli(capsys, "energy", "profiles")
    assert outcome.code == 0, outcome.err
    for text in ("45nm-fp32", "45nm-int8", "loihi", "Horowitz", "Davies", "23.6"):
        assert text in outcome.out


@pytest.mark.parametrize("width", [80, 100, 170])
def test_the_report_fits_the_terminal_and_never_cuts_a_number(trained_run, width):
    """An 80- or 100-column terminal cut numbers to "…" (the ratio read "0.1…"): the table
    now splits (counts, then energy) or lists the values, each printed whole."""
    import io

    from rich.console import Console

    from neurokd.cli.energy_render import _rows, print_report
    from neurokd.energy.estimation import estimate_from_options
    from neurokd.student.sources import load_source

    source = load_source(trained_run / "student.pt")
    report = estimate_from_options(source, ann="teacher", samples=20, energy_model="memory")
    out = io.StringIO()
    print_report(report, Console(width=width, file=out, force_terminal=True, color_system=None))
    text = out.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    _, rows, _ = _rows(report)
    for value in {cell for row in rows for cell in row[2:] if cell}:
        assert value in text, value   # every figure, whole
