"""Students on event frames and rate-coded spikes: ONNX takes [T, batch, C, H, W], the Loihi
export feeds binary spikes per timestep (Lava bit for bit), simulate runs event samples, and
the energy of the first layer is synaptic operations counted like the loops below."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurokd.config import RunConfig
from neurokd.errors import NeuroKDError
from neurokd.exporters import export_loihi, export_onnx
from neurokd.models import build_student, build_teacher
from neurokd.student.checkpoint import save_checkpoint

from helpers import covering_outputs, randomise_batchnorm, requires_lava

SAMPLES = 24


def _checkpoint(folder: Path, name: str, shape=(2, 20, 20), **settings) -> Path:
    """An untrained student (random BatchNorm statistics: its neurons fire) and teacher."""
    config = RunConfig(width=8, timesteps=4, **settings).to_dict()
    config |= {"input_shape": list(shape), "num_classes": 10}
    torch.manual_seed(0)
    student = randomise_batchnorm(build_student(config), seed=1)
    teacher = build_teacher(config).eval()
    path = folder / f"{name}.pt"
    save_checkpoint(path, config, student.state_dict(), teacher.state_dict(), {},
                    [str(c) for c in range(10)])
    return path


@pytest.fixture(scope="module")
def event_student(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("events"), "dvs", dataset="digits-dvs")


def _test_frames(count: int, frames: str = "binary") -> torch.Tensor:
    from neurokd.data import load_data, make_loader

    bundle = load_data("digits-dvs", timesteps=4, event_frames=frames)
    return next(iter(make_loader(bundle.test, count)))[0]       # [T, N, 2, 20, 20]


@pytest.mark.slow  # a torch.onnx (dynamo) export: ~10 s
def test_onnx_takes_time_major_spikes_with_a_dynamic_batch(event_student, tmp_path):
    import onnxruntime as ort

    from neurokd import load

    path = tmp_path / "dvs.onnx"
    result = export_onnx(event_student, path, max_samples=SAMPLES, spike_outputs=True)
    assert result.input_shape == (4, "batch", 2, 20, 20)
    assert result.agreement.spike_mismatches == 0 and result.agreement.spikes_checked > 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _test_frames(5)
    student = load(event_student).student
    for part in (x[:, :1], x[:, 1:5]):
        with torch.no_grad():
            expected = student(part).numpy()
        got = session.run(["logits"], {"input": part.numpy()})[0]
        np.testing.assert_allclose(got, expected, atol=1e-5)
    props = session.get_modelmeta().custom_metadata_map
    assert "[T, batch, C, H, W] spikes" in props["neurokd.input"]
    assert '"dataset": "digits-dvs"' in props["neurokd.data"]


@pytest.mark.slow  # an export and an ONNX Runtime run
def test_onnx_simulation_counts_input_spikes(event_student, tmp_path):
    from neurokd.energy import price_spike_counts
    from neurokd.energy.spike_counts import read_spike_counts
    from neurokd.exporters.simulation import simulate, write_result

    path = tmp_path / "dvs.onnx"
    export_onnx(event_student, path, max_samples=8, spike_outputs=True)
    result = simulate(path, samples=SAMPLES)
    assert result.dataset == "digits-dvs" and result.samples == SAMPLES
    write_result(tmp_path / "counts.npz", result)
    counts, _ = read_spike_counts(tmp_path / "counts.npz")
    first = counts.layers[0]
    assert first.spiking_input
    np.testing.assert_array_equal(first.input_events, _test_frames(SAMPLES).sum((0, 1)).numpy())
    layer = price_spike_counts(tmp_path / "counts.npz", "loihi").layers[0]
    assert layer.counts["synops"] > 0 and layer.counts["macs"] == 0


def _first_layer_spikes(network, spikes: np.ndarray) -> np.ndarray:
    """The first CUBA layer on ``[N, T, C, H, W]`` 0/1 inputs, with explicit loops over the
    kernel (an independent computation of what Loihi's first layer does with them)."""
    layer = network.layers[0]
    w, count, steps = layer.weight, spikes.shape[0], spikes.shape[1]
    out_c, _, kh, kw = w.shape
    padded = np.pad(spikes, ((0, 0), (0, 0), (0, 0), (1, 1), (1, 1)))
    height, width = spikes.shape[-2:]
    v = np.zeros((count, out_c, height, width), dtype=np.int64)
    fired_all = np.zeros((count, steps, out_c, height, width), dtype=np.uint8)
    for t in range(steps):
        a = np.zeros_like(v)
        for dy in range(kh):
            for dx in range(kw):
                window = padded[:, t, :, dy:dy + height, dx:dx + width]
                a += np.einsum("nchw,oc->nohw", window, w[:, :, dy, dx])
        v = np.sign(v * (4096 - layer.neuron.v_decay)) * (np.abs(v * (
            4096 - layer.neuron.v_decay)) >> 12) + (a << 6) + (layer.bias[:, None, None] << 6)
        fired = v > (layer.neuron.v_th_mant << 6)
        fired_all[:, t] = fired
        v = np.where(fired, 0, v)
    return fired_all


def test_loihi_export_feeds_binary_spikes_every_timestep(event_student, tmp_path):
    from neurokd.exporters.loihi.export import SPIKE_ENCODING
    from neurokd.exporters.loihi.fixed_point import run_fixed_point
    from neurokd.exporters.loihi.netx_file import read_netx

    path = tmp_path / "dvs.net"
    result = export_loihi(event_student, path, max_samples=SAMPLES, lava_samples=0,
                          min_agreement=0.0)
    assert result.encoding == SPIKE_ENCODING and result.input_scale == 1.0
    network = read_netx(path).network
    assert network.input_spikes and (network.input_min, network.input_max) == (0, 1)
    x = _test_frames(6)
    x_q = network.quantize_input(x)                               # [N, T, ...], nothing scaled
    assert x_q.shape == (6, 4, 2, 20, 20)
    np.testing.assert_array_equal(x_q, x.numpy().swapaxes(0, 1))
    run = run_fixed_point(network, x_q)
    np.testing.assert_array_equal(run.spikes[0], _first_layer_spikes(network, x_q))
    repeated = run_fixed_point(network, np.repeat(x_q[:, :1], 4, axis=1))
    assert not np.array_equal(repeated.spikes[0], run.spikes[0])  # each step its own input
    assert min(result.spike_agreement.values()) > 0.95


def test_loihi_refuses_frames_holding_event_counts(tmp_path):
    student = _checkpoint(tmp_path, "counts", dataset="digits-dvs", event_frames="counts")
    with pytest.raises(NeuroKDError, match="--event-frames binary"):
        export_loihi(student, tmp_path / "counts.net", max_samples=SAMPLES, lava_samples=0)
    assert not list(tmp_path.glob("*.net")) and not list(tmp_path.glob(".*tmp"))


@requires_lava
def test_lava_runs_event_samples_bit_for_bit(event_student, tmp_path):
    from neurokd.exporters.simulation import simulate

    path = tmp_path / "dvs.net"
    result = export_loihi(event_student, path, max_samples=SAMPLES, lava_samples=6,
                          min_agreement=0.0)
    assert result.lava_samples == 6 and result.lava_skipped is None
    run = simulate(path, samples=10)
    assert run.agreement == 1.0 and set(run.identical_spikes.values()) == {1.0}
    assert run.counts.layers[0].spiking_input and run.samples == 10


def _first_layer_synops(frames: torch.Tensor, out_channels: int) -> float:
    """Input events x fan-out of a 3x3, stride 1, padding 1 conv, with explicit loops."""
    reach_y = covering_outputs(frames.shape[-2], 3, 1, 1, 1)
    reach_x = covering_outputs(frames.shape[-1], 3, 1, 1, 1)
    per_position = frames.sum((0, 1, 2)).numpy()                    # over T, samples, channels
    total = 0.0
    for y in range(per_position.shape[0]):
        for x in range(per_position.shape[1]):
            total += per_position[y, x] * reach_y[y] * reach_x[x] * out_channels
    return total / frames.shape[1]


@pytest.mark.parametrize("frames", ["binary", "counts"])
def test_energy_prices_the_first_layer_as_synaptic_operations(tmp_path, frames):
    from neurokd import energy

    student = _checkpoint(tmp_path, frames, dataset="digits-dvs", event_frames=frames)
    x = _test_frames(SAMPLES, frames)
    if frames == "counts":
        assert x.max() > 1  # some pixels hold several events: k events each
    report = energy.estimate(student, x, profile="loihi", ann="teacher")
    first = report.layers[0]
    assert first.counts["macs"] == 0
    assert first.counts["synops"] == pytest.approx(_first_layer_synops(x, 8), rel=1e-12)
    # the ANN reference is the teacher on the frames averaged over time: its MACs
    teacher_macs = sum(lay.counts["macs"] for lay in report.ann_layers)
    convs = [(2, 32, 20), (32, 64, 10), (64, 64, 5)]                  # in, out, output side
    expected = sum(c_in * 9 * c_out * side * side for c_in, c_out, side in convs)
    assert teacher_macs == expected + 64 * 5 * 5 * 10


def test_energy_of_a_rate_coded_student_is_synaptic_from_the_first_layer(tmp_path):
    from neurokd import energy
    from neurokd.data import load_data, make_loader

    student = _checkpoint(tmp_path, "rate", shape=(1, 8, 8), encoding="rate")
    x = next(iter(make_loader(load_data("digits", encoding="rate", timesteps=4).test, 32)))[0]
    first = energy.estimate(student, x, profile="45nm-fp32").layers[0]
    assert first.counts["macs"] == 0
    assert first.counts["synops"] == pytest.approx(_first_layer_synops(x, 8), rel=1e-12)


def test_a_rate_coded_export_records_how_to_make_the_same_spikes(tmp_path):
    """`simulate` needs nothing but the file: the netx metadata re-creates the very spike
    trains the export was checked on (the run's seed, T and encoding)."""
    from neurokd.exporters.loihi.netx_file import read_netx
    from neurokd.student.inputs import DataRef, source_inputs, split_inputs
    from neurokd.student.sources import load_source

    student = _checkpoint(tmp_path, "rate", shape=(1, 8, 8), encoding="rate", seed=7)
    export_loihi(student, tmp_path / "rate.net", max_samples=SAMPLES, lava_samples=0,
                 min_agreement=0.0)
    meta = read_netx(tmp_path / "rate.net").meta
    assert (meta["encoding"], meta["seed"], meta["timesteps"]) == ("rate", 7, 4)
    recorded, labels, _ = split_inputs(DataRef.of(meta), "test", SAMPLES, (1, 8, 8))
    checked, expected, _ = source_inputs(load_source(student), "test", SAMPLES)
    assert torch.equal(recorded, checked) and np.array_equal(labels, expected)
    assert tuple(recorded.shape) == (4, SAMPLES, 1, 8, 8)
