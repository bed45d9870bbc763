"""Early exit in deployed runs (issue 25, items 1-2): `simulate` reports the accuracy by
timestep and the exit from the backend's own per-step logits, `--save` writes each sample's
exit step and the counts of its frames t < e_b, and `energy report --from-sim` prices them.

The independent paths: the float estimate counts the PyTorch student (hooks, frame masks),
the ONNX backend counts ONNX Runtime's spike outputs; exit steps are checked against an
explicit per-sample loop; the Lava run against the bit-accurate integer model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional
from test_anytime_energy import _middle_threshold

from neurokd.data import load_data
from neurokd.energy import estimate, price_spike_counts
from neurokd.energy.count import count_events_with_exit
from neurokd.energy.estimation import ExitChoice
from neurokd.energy.spike_counts import ExitRun, read_spike_file, write_spike_counts
from neurokd.errors import NeuroKDError
from neurokd.student.loading import load

from helpers import assert_one_line_error, requires_lava, run_cli

SAMPLES = 60


def _test_split(count: int = SAMPLES):
    x, y = load_data("digits").test.tensors
    return x[:count], y[:count]


def _student(trained_run):
    return load(trained_run / "student.pt").student.eval()


def _onnx_logits(path, x: torch.Tensor) -> np.ndarray:
    """ONNX Runtime's own per-step logits ``[T, N, K]`` of the export."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x.numpy()})[0]


def _margin_steps_by_loop(logits: np.ndarray, threshold: float) -> list[int]:
    """The margin rule by its definition, one sample and one step at a time: the first t with
    p_(1) - p_(2) >= c for p = softmax of the mean of the first t logits, else T."""
    steps, (timesteps, samples, _) = [], logits.shape
    for b in range(samples):
        stop = timesteps
        for t in range(1, timesteps + 1):
            mean = [sum(float(logits[s, b, k]) for s in range(t)) / t
                    for k in range(logits.shape[2])]
            top = max(mean)
            weights = [math.exp(v - top) for v in mean]
            p = sorted((w / sum(weights) for w in weights), reverse=True)
            if p[0] - p[1] >= threshold:
                stop = t
                break
        steps.append(stop)
    return steps


def _same_rows(float_layers, deployed_layers) -> None:
    assert [r.name for r in float_layers] == [r.name for r in deployed_layers]
    for ours, theirs in zip(float_layers, deployed_layers, strict=True):
        assert ours.counts == theirs.counts, ours.name
        assert ours.energy_pj == pytest.approx(theirs.energy_pj, rel=1e-12), ours.name


@pytest.fixture(scope="module")
def onnx_exit_run(trained_run, trained_exports, tmp_path_factory):
    """`simulate --backend onnx --exit-rule margin --exit-threshold c --save` on SAMPLES test
    samples, c midway between two scores the student gives (no sample sits on it)."""
    x, _ = _test_split()
    threshold = _middle_threshold(_student(trained_run), x, "margin")
    folder = tmp_path_factory.mktemp("onnx-exit")
    export = trained_exports / "student-spikes.onnx"
    from neurokd.exporters.simulation import simulate, write_result

    result = simulate(export, samples=SAMPLES, exit_rule="margin", exit_threshold=threshold)
    write_result(folder / "r.npz", result)
    (folder / "r.json").write_text(json.dumps(result.to_json()))
    return folder, export, threshold


def test_onnx_exit_energy_equals_the_float_estimate_with_the_same_exit(trained_run,
                                                                       onnx_exit_run):
    folder, export, threshold = onnx_exit_run
    x, y = _test_split()
    stored = read_spike_file(folder / "r.npz")
    assert stored.exit is not None and stored.exit.rule == "margin"
    assert stored.exit.threshold == threshold
    # each sample's exit step: by the rule's definition, on ONNX Runtime's logits
    steps = stored.exit.steps.tolist()
    assert steps == _margin_steps_by_loop(_onnx_logits(export, x), threshold)
    assert len(set(steps)) > 1, steps  # the comparison means something only if exits differ
    for profile in ("45nm-fp32", "loihi"):
        floats = estimate(trained_run / "student.pt", [(x, y)], profile, ann="none",
                          exit=ExitChoice.of("margin", threshold))
        deployed = price_spike_counts(folder / "r.npz", profile)
        _same_rows(floats.layers, deployed.layers)            # with the exit, layer by layer
        _same_rows(floats.full_layers, deployed.full_layers)  # and at full T
        assert deployed.snn_energy_pj == pytest.approx(floats.snn_energy_pj, rel=1e-12)
        assert deployed.snn_energy_full_pj == pytest.approx(floats.snn_energy_full_pj,
                                                            rel=1e-12)
        assert deployed.snn_energy_pj < deployed.snn_energy_full_pj
        assert deployed.exit["mean_timesteps"] == floats.exit["mean_timesteps"] == \
            np.mean(steps)
        assert deployed.exit["exit_histogram"] == floats.exit["exit_histogram"]
        assert deployed.exit["accuracy"] is None  # the file holds no labels
    # neuron updates count only the frames run: neurons x sum(e_b)
    for layer in stored.exit.counts.layers:
        if layer.output_spikes is not None:
            assert layer.neuron_updates == layer.output_spikes.size * sum(steps)
    # the simulate JSON: the curve and the exit, as the energy report's record
    result = json.loads((folder / "r.json").read_text())
    assert len(result["accuracy_by_timestep"]) == result["timesteps"]
    assert result["accuracy_by_timestep"][-1] == result["accuracy"]
    assert result["exit"]["mean_timesteps"] == np.mean(steps)
    assert result["exit"]["origin"] == "given"
    assert result["exit"]["accuracy"] == floats.exit["accuracy"]


def test_energy_report_from_sim_prints_and_writes_the_exit(trained_run, onnx_exit_run,
                                                            tmp_path, capsys):
    folder, _, threshold = onnx_exit_run
    out = tmp_path / "e.json"
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"),
                      "--from-sim", str(folder / "r.npz"), "--ann", "none", "-q", "--json",
                      str(out))
    assert outcome.code == 0, outcome.err
    assert "deployed: the simulated run's exit margin" in outcome.out
    data = json.loads(out.read_text())
    # the float estimate beside the file prices the file's exit too: the same numbers
    for report in (data, data["deployed"]):
        assert report["exit"]["rule"] == "margin" and report["exit"]["threshold"] == threshold
        assert report["exit"]["origin"] == "simulation"
        assert report["snn_energy_pj"] < report["snn_energy_full_pj"]
        assert report["exit_energy_ratio"] == report["snn_energy_pj"] / \
            report["snn_energy_full_pj"]
    assert data["deployed"]["snn_energy_pj"] == pytest.approx(data["snn_energy_pj"], rel=1e-12)
    assert data["exit"]["accuracy"] is not None and data["deployed"]["exit"]["accuracy"] is None
    # the file alone; the same exit given again; --no-exit prices all T
    alone = tmp_path / "alone.json"
    assert run_cli(capsys, "energy", "report", "--from-sim", str(folder / "r.npz"), "-q",
                   "--exit-rule", "margin", "--exit-threshold", repr(threshold), "--json",
                   str(alone)).code == 0
    alone = json.loads(alone.read_text())
    assert alone["exit"]["origin"] == "given"
    assert alone["snn_energy_pj"] == data["deployed"]["snn_energy_pj"]
    full = tmp_path / "full.json"
    assert run_cli(capsys, "energy", "report", "--from-sim", str(folder / "r.npz"), "-q",
                   "--no-exit", "--json", str(full)).code == 0
    full = json.loads(full.read_text())
    assert full["exit"] is None
    assert full["snn_energy_pj"] == alone["snn_energy_full_pj"]


def test_a_threshold_that_never_fires_prices_the_deployed_run_at_full_t(trained_exports,
                                                                        tmp_path, capsys):
    saved, out = tmp_path / "r.npz", tmp_path / "e.json"
    outcome = run_cli(capsys, "simulate", str(trained_exports / "student-spikes.onnx"),
                      "--samples", "20", "-q", "--exit-rule", "entropy", "--exit-threshold",
                      "0", "--save", str(saved))  # a normalised entropy is never exactly 0
    assert outcome.code == 0, outcome.err
    stored = read_spike_file(saved)
    assert stored.exit.steps.tolist() == [stored.counts.timesteps] * 20
    assert run_cli(capsys, "energy", "report", "--from-sim", str(saved), "-q", "--json",
                   str(out)).code == 0
    data = json.loads(out.read_text())
    assert data["snn_energy_pj"] == data["snn_energy_full_pj"]
    assert data["exit"]["mean_timesteps"] == stored.counts.timesteps


# --- bad input: one line, exit 2 -------------------------------------------------------------

@pytest.fixture(scope="module")
def exit_file(trained_run, tmp_path_factory):
    """A spike-count file with an exit, written from a float count of 12 samples."""
    x, _ = _test_split(12)
    student = _student(trained_run)
    threshold = _middle_threshold(student, x, "confidence")
    both = count_events_with_exit(student, x, "confidence", threshold, (1, 8, 8))
    path = tmp_path_factory.mktemp("exit-file") / "r.npz"
    write_spike_counts(path, both.full, "onnx", "digits",
                       exit=ExitRun("confidence", threshold, both.steps.numpy(), both.exited))
    return path, threshold


def _damaged(path, tmp_path, **changes):
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    out = tmp_path / "bad.npz"
    np.savez(out, **arrays)
    return out


def _steps_with(path, index: int, value: int) -> np.ndarray:
    with np.load(path) as data:
        steps = data["exit_steps"].copy()
    steps[index] = value
    return steps


@pytest.mark.parametrize("case, contains", [
    ("step 0", "exit_steps must lie in 1..4"),
    ("step past T", "exit_steps must lie in 1..4"),
    ("float steps", "exit_steps must be 12 whole numbers"),
    ("steps of another length", "exit_steps must be 12 whole numbers"),
    ("exit counts above the totals", "input_events_exit_1"),
    ("wrong-shape exit array", "output_spikes_exit_0"),
    ("negative exit counts", "input_events_exit_0"),
    ("exit counts missing", "lacks output_spikes_exit_1"),
    ("exit counts of a layer without neurons", "output_spikes_exit_3"),
    ("rule missing", "lacks exit_rule"),
    ("unknown rule", "exit_rule 'nope'"),
    ("threshold out of range", "exit_threshold"),
])
def test_a_damaged_exit_is_one_line(exit_file, tmp_path, capsys, case, contains):
    path, _ = exit_file
    with np.load(path) as data:
        events1, spikes0 = data["input_events_1"], data["output_spikes_0"]
        assert "output_spikes_3" not in data.files  # the readout has no neurons
    changes = {
        "step 0": {"exit_steps": _steps_with(path, 3, 0)},
        "step past T": {"exit_steps": _steps_with(path, 3, 5)},
        "float steps": {"exit_steps": np.ones(12)},
        "steps of another length": {"exit_steps": np.ones(11, dtype=np.int64)},
        "exit counts above the totals": {"input_events_exit_1": events1 + 1},
        "wrong-shape exit array": {"output_spikes_exit_0": spikes0.reshape(-1)[:-1]},
        "negative exit counts": {"input_events_exit_0": -np.ones((1, 8, 8))},
        "exit counts missing": {"output_spikes_exit_1": None},
        "exit counts of a layer without neurons": {"output_spikes_exit_3": np.zeros(10)},
        "rule missing": {"exit_rule": None},
        "unknown rule": {"exit_rule": np.array("nope")},
        "threshold out of range": {"exit_threshold": np.array(1.5)},
    }[case]
    bad = _damaged(path, tmp_path, **changes)
    with pytest.raises(NeuroKDError, match="bad.npz"):
        read_spike_file(bad)
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(bad), "-q")
    assert_one_line_error(outcome, 2, contains)
    assert "bad.npz" in outcome.err


def test_an_old_file_reads_as_before_and_the_writer_refuses_what_the_reader_would(
        exit_file, tmp_path):
    path, threshold = exit_file
    with np.load(path) as data:
        old = {key: data[key] for key in data.files if "exit" not in key}
    np.savez(tmp_path / "old.npz", **old)
    assert read_spike_file(tmp_path / "old.npz").exit is None
    stored = read_spike_file(path)
    assert stored.exit.threshold == threshold
    too_many = stored.exit.counts.layers[1]
    too_many.input_events = too_many.input_events + 1
    with pytest.raises(NeuroKDError, match="input_events_exit_1"):
        write_spike_counts(tmp_path / "never.npz", stored.counts, "onnx", exit=stored.exit)
    assert not (tmp_path / "never.npz").exists()


@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_pricing_another_exit_than_the_files_is_refused(trained_run, exit_file, tmp_path,
                                                        capsys, with_checkpoint):
    path, threshold = exit_file
    source = [str(trained_run / "student.pt")] if with_checkpoint else []
    out = tmp_path / "e.json"
    for args in (["--exit-rule", "margin", "--exit-threshold", repr(threshold)],
                 ["--exit-rule", "confidence", "--exit-threshold", "0.25"]):
        outcome = run_cli(capsys, "energy", "report", *source, "--from-sim", str(path), "-q",
                          *args, "--json", str(out))
        assert_one_line_error(outcome, 2, "cannot be re-masked")
        assert args[1] in outcome.err and "confidence" in outcome.err  # both exits named
        assert not out.exists()


def test_an_exit_on_a_file_saved_without_one_is_refused(exit_file, tmp_path, capsys):
    path, _ = exit_file
    with np.load(path) as data:
        np.savez(tmp_path / "old.npz", **{k: data[k] for k in data.files if "exit" not in k})
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(tmp_path / "old.npz"),
                      "-q", "--exit-rule", "margin", "--exit-threshold", "0.5")
    assert_one_line_error(outcome, 2, "saved without an exit")


@pytest.mark.parametrize("args, contains", [
    (["--exit-rule", "nope", "--exit-threshold", "0.5"], "nope"),
    (["--exit-rule", "margin", "--exit-threshold", "2"], "threshold"),
    (["--exit-rule", "margin"], "--exit-threshold"),
    (["--no-exit", "--exit-threshold", "0.5"], "--no-exit"),
])
def test_bad_simulate_exit_options_are_one_line(trained_exports, tmp_path, capsys, args,
                                                contains):
    outcome = run_cli(capsys, "simulate", str(trained_exports / "student-spikes.onnx"), "-q",
                      *args, "--save", str(tmp_path / "r.npz"))
    assert_one_line_error(outcome, 2, contains)
    assert not (tmp_path / "r.npz").exists()


def test_a_bad_exit_recorded_in_a_loihi_file_is_one_line(trained_exports, tmp_path, capsys):
    import shutil

    import h5py

    bad = tmp_path / "bad.net"
    shutil.copy(trained_exports / "student.net", bad)
    with h5py.File(bad, "a") as handle:
        handle.attrs["neurokd.exit"] = json.dumps({"rule": "margin", "threshold": 7})
    outcome = run_cli(capsys, "simulate", str(bad), "-q", "--samples", "2")
    assert_one_line_error(outcome, 2, "neurokd.exit")
    assert "bad.net" in outcome.err


def test_the_exit_options_help_names_every_rule():
    from neurokd.anytime import EXIT_RULES
    from neurokd.cli.options import EXIT_RULE_NAMES

    assert EXIT_RULE_NAMES == tuple(EXIT_RULES)


# --- Lava ------------------------------------------------------------------------------------

@requires_lava
def test_lava_reports_the_recorded_exit_from_its_own_logits(trained_run, tmp_path, capsys):
    """A Loihi export of a run with an exit: Lava's curve and exit equal the rule applied to
    the bit-accurate integer model's per-step logits, and --save's exit counts equal the
    integer model's spikes over each sample's frames t < e_b."""
    import h5py

    from neurokd.anytime import accuracy_by_timestep, apply_rule, exit_record, rule_scores
    from neurokd.exporters import export_loihi
    from neurokd.exporters.loihi.fixed_point import run_fixed_point
    from neurokd.exporters.loihi.netx_file import read_netx
    from neurokd.student.sources import load_source

    count = 12
    x, y = _test_split(count)
    source = load_source(trained_run / "student.pt")
    student = _student(trained_run)
    functional.reset_net(student)
    with torch.no_grad():
        logits = student(x)
    functional.reset_net(student)
    source.exit = exit_record("margin", logits, y, logits, y, threshold=0.5)
    export = tmp_path / "s.net"
    export_loihi(source, export, max_samples=16, lava_samples=0)
    stored = read_netx(export)
    assert stored.meta["exit"] == source.exit  # the export records the run's exit
    network = stored.network
    x_q = network.quantize_input(x)
    fixed = run_fixed_point(network, x_q)
    integer = torch.from_numpy(network.logits(fixed.readout).swapaxes(0, 1).copy())
    # the threshold: midway between two scores of the integer model, so exits differ
    scores = rule_scores("margin", integer).flatten().unique().tolist()
    threshold = max(((a + b) / 2 for a, b in zip(scores, scores[1:], strict=False)),
                    key=lambda c: len(set(apply_rule("margin", integer, c).steps.tolist())))
    with h5py.File(export, "a") as handle:  # the run's exit, at that threshold
        handle.attrs["neurokd.exit"] = json.dumps(source.exit | {"threshold": threshold})

    saved, out = tmp_path / "r.npz", tmp_path / "r.json"
    outcome = run_cli(capsys, "simulate", str(export), "--samples", str(count), "-q",
                      "--save", str(saved), "--json", str(out))
    assert outcome.code == 0, outcome.err
    assert "the export's exit (margin" in outcome.out
    result = json.loads(out.read_text())
    assert result["accuracy_by_timestep"][-1] == result["accuracy"]
    assert result["accuracy_by_timestep"] == accuracy_by_timestep(integer, y)
    expected = apply_rule("margin", integer, threshold)
    assert len(set(expected.steps.tolist())) > 1
    assert result["exit"] == {"rule": "margin", "threshold": threshold, "origin": "run",
                              "mean_timesteps": expected.mean_timesteps,
                              "accuracy": expected.accuracy(y),
                              "exit_histogram": expected.histogram}
    file = read_spike_file(saved)
    steps = expected.steps.numpy()
    assert file.exit.steps.tolist() == steps.tolist()
    ran = np.arange(network.timesteps)[None, :] < steps[:, None]  # [N, T]
    spiking = [layer for layer in file.exit.counts.layers if layer.output_spikes is not None]
    for layer, spikes in zip(spiking, fixed.spikes, strict=True):  # spikes [N, T, ...]
        kept = ran.reshape(ran.shape + (1,) * (spikes.ndim - 2))
        assert np.array_equal(layer.output_spikes, (spikes * kept).sum((0, 1)))
    # graded input, repeated at every step: its non-zero values x the steps each sample ran
    first = file.exit.counts.layers[0]
    assert np.array_equal(first.input_events,
                          ((x_q != 0) * steps.reshape(-1, 1, 1, 1)).sum(0))
    energy = tmp_path / "e.json"
    assert run_cli(capsys, "energy", "report", "--from-sim", str(saved), "-q", "--json",
                   str(energy)).code == 0
    data = json.loads(energy.read_text())
    assert data["exit"]["mean_timesteps"] == expected.mean_timesteps
    assert data["snn_energy_pj"] < data["snn_energy_full_pj"]
