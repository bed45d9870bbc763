"""Energy up to the exit (issue 25, item 3): each sample priced only up to its exit step.

The independent computation is the definition: the student is causal, so a sample that exits
at step e costs what running that sample alone for exactly e steps costs. Those short runs are
counted with the plain counter, one sample at a time, and their sums must equal the exit's
counts exactly (whole numbers in float64: no tolerance)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional

from neurokd.anytime import EXIT_RULES, exit_steps, rule_scores
from neurokd.data import load_data
from neurokd.energy import count_events, estimate, price
from neurokd.energy.count import count_events_with_exit
from neurokd.energy.estimation import ExitChoice
from neurokd.student.loading import load

from helpers import assert_one_line_error, run_cli


def _student(trained_run):
    run = load(trained_run / "student.pt")
    return run.student.eval(), int(run.config["timesteps"])


def _samples(count: int = 12) -> torch.Tensor:
    return load_data("digits").test.tensors[0][:count]


def _rate_frames(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    intensity = x / x.amax()
    draws = torch.rand((timesteps, *x.shape), generator=generator)
    return (draws < intensity.unsqueeze(0)).float()  # [T, B, 1, 8, 8] spikes


def _middle_threshold(student, x, rule: str) -> float:
    """Of the scores seen, the threshold giving the most distinct exit steps."""
    functional.reset_net(student)
    with torch.no_grad():
        logits = student(x)
    functional.reset_net(student)
    scores = rule_scores(rule, logits).flatten().unique().tolist()  # sorted
    # Midway between neighbouring scores: no score sits on the threshold, so logits that
    # differ by rounding (ONNX Runtime's) stop every sample at the same step.
    candidates = [(a + b) / 2 for a, b in zip(scores, scores[1:], strict=False)] or scores
    return max(candidates, key=lambda c: len(set(exit_steps(rule, logits, c).tolist())))


def _layer_sums(counts_list):
    """Per layer: (frames, input events, neuron updates, output spikes) summed over runs."""
    sums = {}
    for counts in counts_list:
        for layer in counts.layers:
            frames, events, updates, spikes = sums.get(layer.name, (0, 0.0, 0, 0.0))
            sums[layer.name] = (frames + layer.frames, events + layer.input_events,
                                updates + layer.neuron_updates,
                                spikes + (0.0 if layer.output_spikes is None
                                          else layer.output_spikes))
    return sums


@pytest.mark.parametrize("inputs", ["static", "rate"])
@pytest.mark.parametrize("rule", list(EXIT_RULES))
def test_exit_energy_equals_each_sample_run_for_its_exit_step(trained_run, rule, inputs):
    student, timesteps = _student(trained_run)
    x = _samples()
    if inputs == "rate":
        x = _rate_frames(x, timesteps)
    threshold = _middle_threshold(student, x, rule)
    both = count_events_with_exit(student, x, rule, threshold, (1, 8, 8))
    steps = both.steps.tolist()
    assert len(set(steps)) > 1, steps  # the test means something only if exits differ

    singles = []
    for b, step in enumerate(steps):  # each sample alone, for exactly its exit step
        if inputs == "rate":
            singles.append(count_events(student, x[:step, b:b + 1], (1, 8, 8)))
        else:
            student.timesteps = step
            try:
                singles.append(count_events(student, x[b:b + 1], (1, 8, 8)))
            finally:
                student.timesteps = timesteps
    expected = _layer_sums(singles)
    for layer in both.exited.layers:
        frames, events, updates, spikes = expected[layer.name]
        assert layer.frames == frames == sum(steps)
        assert np.array_equal(layer.input_events, events)
        assert layer.neuron_updates == updates
        if layer.output_spikes is not None:
            assert np.array_equal(layer.output_spikes, spikes)
    # Priced: the per-inference energy is the mean of the short runs' energies.
    for profile in ("45nm-fp32", "loihi"):
        for model in ("compute", "memory"):
            got = sum(layer.energy_pj for layer in price(both.exited, profile, model))
            each = [sum(layer.energy_pj for layer in price(c, profile, model)) for c in singles]
            assert got == pytest.approx(sum(each) / len(each), rel=1e-12)


def test_a_threshold_that_never_fires_prices_full_t_exactly(trained_run):
    student, timesteps = _student(trained_run)
    x = _samples()
    both = count_events_with_exit(student, x, "entropy", 0.0, (1, 8, 8))  # never exactly 0
    assert both.steps.tolist() == [timesteps] * len(x)
    plain = count_events(student, x, (1, 8, 8))
    for layer, exited, full in zip(plain.layers, both.exited.layers, both.full.layers,
                                   strict=True):
        for other in (exited, full):
            assert other.frames == layer.frames
            assert np.array_equal(other.input_events, layer.input_events)
            assert other.neuron_updates == layer.neuron_updates
    report = estimate(trained_run / "student.pt", x, "loihi",
                      exit=ExitChoice.of("entropy", 0.0))
    assert report.snn_energy_pj == report.snn_energy_full_pj
    assert report.snn_energy_pj == estimate(trained_run / "student.pt", x, "loihi").snn_energy_pj
    assert report.exit["mean_timesteps"] == timesteps


def test_report_prints_and_writes_the_exit(trained_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"), "--quiet",
                      "--samples", "40", "--exit-rule", "confidence", "--exit-threshold",
                      "0.6", "--json", str(out))
    assert outcome.code == 0, outcome.err
    assert "with the exit" in outcome.out and "accuracy by timestep" in outcome.out
    data = json.loads(out.read_text())
    exit = data["exit"]
    assert {"rule", "threshold", "mean_timesteps", "accuracy"} <= set(exit)
    assert exit["rule"] == "confidence" and exit["threshold"] == 0.6
    assert 1 <= exit["mean_timesteps"] <= data["timesteps"]
    assert data["snn_energy_pj"] <= data["snn_energy_full_pj"]
    assert len(data["accuracy_by_timestep"]) == data["timesteps"]
    # The same counts without the exit: the full energy is what --no-exit reports.
    plain = tmp_path / "p.json"
    assert run_cli(capsys, "energy", "report", str(trained_run / "student.pt"), "--quiet",
                   "--samples", "40", "--no-exit", "--json", str(plain)).code == 0
    full = json.loads(plain.read_text())
    assert full["exit"] is None
    assert full["snn_energy_pj"] == pytest.approx(data["snn_energy_full_pj"], rel=1e-12)
    assert full["ann_energy_pj"] == data["ann_energy_pj"]  # the ANN reference is unchanged


@pytest.mark.parametrize("args, contains", [
    (["--exit-rule", "confidence", "--exit-threshold", "1.5"], "threshold"),
    (["--exit-rule", "nope", "--exit-threshold", "0.5"], "nope"),
    (["--exit-rule", "margin"], "--exit-threshold"),
    (["--no-exit", "--exit-rule", "margin", "--exit-threshold", "0.5"], "--no-exit"),
])
def test_bad_exit_options_one_line_nothing_written(trained_run, tmp_path, capsys, args,
                                                   contains):
    out = tmp_path / "e.json"
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"), "--quiet",
                      *args, "--json", str(out))
    assert_one_line_error(outcome, 2, contains)
    assert not out.exists()


def test_simulate_onnx_reports_the_curve_and_the_recorded_exit(trained_run, tmp_path):
    """simulate --backend onnx: accuracy after each timestep and the export's recorded exit,
    against the same quantities computed from the PyTorch student's logits."""
    from neurokd.anytime import accuracy_by_timestep, apply_rule, exit_record
    from neurokd.exporters import export_onnx
    from neurokd.exporters.simulation import simulate
    from neurokd.student.sources import load_source

    student, _ = _student(trained_run)
    data = load_data("digits").test.tensors
    x, y = data[0][:50], data[1][:50]
    functional.reset_net(student)
    with torch.no_grad():
        logits = student(x)
    functional.reset_net(student)
    threshold = _middle_threshold(student, x, "margin")
    source = load_source(trained_run / "student.pt")
    source.exit = exit_record("margin", logits, y, logits, y, threshold=threshold)
    path = tmp_path / "s.spikes.onnx"
    export_onnx(source, path, spike_outputs=True, max_samples=16, exporter="torchscript")
    result = simulate(path, samples=50)
    assert result.accuracy_by_timestep == pytest.approx(accuracy_by_timestep(logits, y),
                                                        abs=1e-12)
    expected = apply_rule("margin", logits, threshold)
    assert result.exit["mean_timesteps"] == pytest.approx(expected.mean_timesteps)
    assert result.exit["accuracy"] == pytest.approx(expected.accuracy(y))
    assert result.exit["exit_histogram"] == expected.histogram
