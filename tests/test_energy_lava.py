"""`energy report --from-lava` on the file a real `neurokd simulate --backend lava` run wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import covering_outputs, requires_lava, run_cli


def _synops_by_loops(data, i: int) -> float:
    events = data[f"input_events_{i}"]
    geometry = data[f"geometry_{i}"].tolist()
    if str(data["layer_types"][i]) == "dense":
        return float(events.sum()) * geometry[0]
    out_ch, _, kh, kw, sh, sw, ph, pw, dh, dw, groups = geometry
    rows = np.array(covering_outputs(events.shape[1], kh, sh, ph, dh))
    cols = np.array(covering_outputs(events.shape[2], kw, sw, pw, dw))
    return float((events * rows[None, :, None] * cols[None, None, :]).sum()) * out_ch // groups


@requires_lava
def test_energy_of_a_real_lava_run(trained_run, tmp_path, capsys):
    export, result = tmp_path / "student.net", tmp_path / "result.npz"
    outcome = run_cli(capsys, "export", "--target", "loihi", str(trained_run / "student.pt"),
                      "-o", str(export), "--check-samples", "50")
    assert outcome.code == 0, outcome.err
    outcome = run_cli(capsys, "simulate", str(export), "--samples", "8", "-q", "--save",
                      str(result))
    assert outcome.code == 0, outcome.err
    report_json = tmp_path / "energy.json"
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"), "--from-lava",
                      str(result), "--profile", "loihi", "--json", str(report_json), "-q")
    assert outcome.code == 0, outcome.err
    assert "deployed (lava, result.npz)" in outcome.out
    estimate = json.loads(report_json.read_text())
    deployed = estimate["deployed"]
    assert estimate["samples"] == deployed["samples"] == 8 and deployed["counted_on"] == "lava"
    with np.load(result, allow_pickle=False) as data:
        names = [str(n) for n in data["layer_names"]]
        assert [row["name"] for row in deployed["layers"]] == names
        assert [row["name"] for row in estimate["layers"]] == names
        for i, (ours, floats) in enumerate(zip(deployed["layers"], estimate["layers"],
                                               strict=True)):
            # Same network shape: the same dense MACs at the encoding layer and neuron counts.
            assert ours["macs"] == floats["macs"]
            assert ours["neuron_updates"] == floats["neuron_updates"]
            if i > 0:  # the recorded spikes x fan-out, counted here by explicit loops
                assert ours["synops"] == pytest.approx(_synops_by_loops(data, i) / 8)
            if int(data[f"has_neurons_{i}"]):
                spikes = float(data[f"output_spikes_{i}"].sum())
                assert ours["active_neuron_updates"] == pytest.approx(spikes / 8)
    # The quantized network spikes a little differently from the float one, not wildly.
    assert deployed["snn_energy_pj"] == pytest.approx(estimate["snn_energy_pj"], rel=0.1)
    assert deployed["ann_energy_pj"] == estimate["ann_energy_pj"]
    # The memory model on the same file: Loihi's word sizes (1-byte weights, 2-byte biases),
    # and each spike's weight reads equal to its synaptic ops under memory-exact.
    from neurokd.energy import LayerGeometry, load_profile
    from neurokd.energy.memory import sram_pj_per_byte

    memory_json = tmp_path / "memory.json"
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"), "--from-lava",
                      str(result), "--energy-model", "memory-exact", "--json", str(memory_json),
                      "-q")
    assert outcome.code == 0, outcome.err
    deployed = json.loads(memory_json.read_text())["deployed"]
    assert deployed["memory_layout"]["name"] == "loihi"
    costs = load_profile("45nm-fp32").costs
    with np.load(result, allow_pickle=False) as data:
        timesteps = int(data["timesteps"])
        for i, row in enumerate(deployed["layers"][1:], start=1):
            kind = str(data["layer_types"][i])
            geometry = LayerGeometry.from_array(kind, data[f"geometry_{i}"],
                                                tuple(data[f"input_shape_{i}"].tolist()))
            synops = _synops_by_loops(data, i) / 8
            assert row["exact_weight_reads"] == pytest.approx(synops)
            outputs = int(np.prod(geometry.output_shape))
            params = geometry.out_channels * geometry.fan_in * 1 + geometry.out_channels * 2
            weights = (synops * 1 + timesteps * outputs * 2) * sram_pj_per_byte(costs, params)
            assert row["weights_energy_pj"] == pytest.approx(weights)
