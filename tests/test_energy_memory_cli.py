"""The memory models from the outside: `energy report --energy-model memory` end to end (JSON,
plot, a deployed run's word sizes), profile TOML files with memory costs, per-cost sources,
word sizes and an ANN profile, and `energy profiles --sources`."""

from __future__ import annotations

import pytest

from neurokd.energy import EnergyProfile, Prices, count_events
from neurokd.energy.memory import sram_pj_per_byte
from neurokd.errors import ConfigError

from helpers import run_cli


def test_cli_memory_report_json_plot_and_deployed_words(trained_run, tmp_path, capsys):
    """`energy report --energy-model memory` next to a Lava-style spike-count file of the same
    samples: the float estimate in 32-bit words, the deployed one in Loihi's."""
    import json

    import matplotlib.image

    import neurokd
    from neurokd.data import load_data
    from neurokd.energy import write_spike_counts

    run = neurokd.load(trained_run / "student.pt")
    x = load_data("digits").test.tensors[0][:30]
    npz = write_spike_counts(tmp_path / "r.npz", count_events(run.student, x, (1, 8, 8)), "lava")
    out, png = tmp_path / "m.json", tmp_path / "m.png"
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"),
                      "--energy-model", "memory", "--ann", "twin", "--from-lava", str(npz),
                      "--json", str(out), "--plot", str(png), "-q")
    assert outcome.code == 0, outcome.err
    for header in ("fan-out", "compute", "addressing", "memory", "break-even", "cheaper"):
        assert header in outcome.out
    data = json.loads(out.read_text())
    assert data["energy_model"] == "memory" and data["memory_layout"]["name"] == "32bit"
    assert set(data["profile_cost_sources"]) == set(data["profile_costs_pj"])
    for row in data["layers"]:
        parts = row["compute_energy_pj"] + row["addressing_energy_pj"] + row["memory_energy_pj"]
        assert parts == pytest.approx(row["energy_pj"])
        assert "break_even_rate" in row and "below_break_even" in row
    assert data["layers"][0]["break_even_rate"] is None  # analog input: no spike rate
    assert all(row["break_even_rate"] is not None for row in data["layers"][1:])
    for ann in data["ann_layers"]:
        assert ann["memory_energy_pj"] > 0 and ann["activation_writes"] > 0
    deployed = data["deployed"]
    assert deployed["memory_layout"]["name"] == "loihi"
    for ours, theirs in zip(deployed["layers"], data["layers"], strict=True):
        assert ours["fanout_synops"] == pytest.approx(theirs["fanout_synops"])  # same counts
        assert ours["compute_energy_pj"] == pytest.approx(theirs["compute_energy_pj"])
        assert ours["memory_energy_pj"] < theirs["memory_energy_pj"]  # 1-3 byte words
    assert matplotlib.image.imread(png).ndim == 3


def test_cli_compute_only_profile_still_prices_compute(trained_run, tmp_path, capsys):

    toml = tmp_path / "old.toml"
    toml.write_text('name = "old"\nmac_pj = 1\nsynop_pj = 0.5\nneuron_update_pj = 0.2\n'
                    'source = "written before the memory model"\n')
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"), "--samples",
                      "10", "--profile", str(toml), "-q")
    assert outcome.code == 0, outcome.err
    assert "SNN / ANN energy" in outcome.out


def test_toml_profile_with_memory_costs_sources_layout_and_ann_profile(tmp_path):
    from neurokd.energy import load_profile

    path = tmp_path / "chip.toml"
    path.write_text(
        'name = "chip"\nmac_pj = 1\nsynop_pj = 0.5\nneuron_update_pj = 0.2\n'
        'address_add_pj = 0.1\naddress_mac_pj = 1.1\nsram_8kib_pj = 1\nsram_32kib_pj = 2\n'
        'sram_1mib_pj = 9\nsource = "datasheet"\nmemory_layout = "int8"\n'
        'ann_profile = "45nm-fp32"\n[sources]\nsram_8kib_pj = "CACTI run 3"\n')
    chip = load_profile(path)
    assert chip.memory_layout == "int8" and chip.ann_profile == "45nm-fp32"
    assert chip.cost_source("sram_8kib_pj") == "CACTI run 3"
    assert chip.cost_source("mac_pj") == "datasheet"  # no source of its own: the profile's
    prices = Prices.of(chip, "memory")
    assert prices.layout.word_bytes["weight"] == 1
    assert prices.unit_pj["bias_adds"] == 0.5  # bias_add_pj missing: priced at synop_pj
    assert sram_pj_per_byte(chip.costs, 4096) == pytest.approx(0.5)  # half-way to 8 KiB
    assert sram_pj_per_byte(chip.costs, 20 * 1024) == pytest.approx(1.5)
    assert EnergyProfile.from_dict(chip.to_dict()).to_dict() == chip.to_dict()  # round trip
    bad = [('sources = {mac_pjj = "x"}', "sources names 'mac_pjj'"),
           ('memory_layout = "int4"', "memory_layout must be one of 32bit, int8, loihi"),
           ('ann_profile = "loihi2"', "ann_profile 'loihi2' is not a built-in profile"),
           ("ann_profile = [1]", "is not a built-in profile"),
           ("memory_layout = [8]", "memory_layout must be one of"),
           ('sources = "mine"', "sources must map cost keys to strings")]
    for line, message in bad:
        path.write_text(f'name = "x"\nmac_pj = 1\nsource = "a test"\n{line}\n')
        with pytest.raises(ConfigError, match=message):
            load_profile(path)


def test_profiles_command_prints_every_cost_source(capsys):

    outcome = run_cli(capsys, "energy", "profiles", "--sources")
    assert outcome.code == 0, outcome.err
    for profile in ("45nm-fp32", "lemaire-2022", "loihi"):
        assert profile in outcome.out
    assert "sram_32kib_pj: Lemaire et al." in outcome.out
    assert "the ANN reference priced by 45nm-fp32" in outcome.out
