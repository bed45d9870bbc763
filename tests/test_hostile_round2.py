"""Issue 27, item 1: the cases a hostile suite found after the readers of round one landed,
one test each. Every case: exit 2 (exit 1, "cannot write", for an environment fault), one
stderr line naming the file and what is wrong, no traceback, nothing written."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from numpy.lib import format as npy
from test_hostile_exports import assert_refused
from test_hostile_limits import _peak

from helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def result_file(trained_run, tmp_path_factory) -> Path:
    import neurokd
    from neurokd.data import load_data
    from neurokd.energy import count_events, write_spike_counts

    run = neurokd.load(trained_run / "student.pt")
    x = load_data("digits").test.tensors[0][:16]
    folder = tmp_path_factory.mktemp("round2-results")
    return write_spike_counts(folder / "r.npz", count_events(run.student, x, (1, 8, 8)),
                              "lava", "digits")


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- the frames cache ------------------------------------------------------------------------

@pytest.fixture
def frames_folder(tmp_path) -> tuple[Path, Path]:
    """digits-dvs built into a cache of its own: (the cache folder, its one key folder)."""
    from neurokd.data import load_data

    cache = tmp_path / "cache"
    cache.mkdir()
    load_data("digits-dvs", timesteps=2, cache_dir=cache)
    return cache, next(cache.iterdir())


def _npy(path: Path, shape: tuple, dtype: str, data: bytes = b"") -> None:
    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    path.write_bytes(buffer.getvalue() + data)


def _distill_on(cache: Path, capsys, tmp_path):
    return run_cli(capsys, "distill", "--dataset", "digits-dvs", "--timesteps", "2",
                   "--cache-dir", str(cache), "--epochs", "1", "--teacher-epochs", "1",
                   "--out", str(tmp_path / "runs"), "--name", "r", "-q")


@pytest.mark.parametrize("damage, words", [
    (lambda f: _npy(f / "train.labels.npy", (10 ** 10,), "<i8"), "does not hold"),
    (lambda f: np.save(f / "train.labels.npy", np.full(
        np.load(f / "train.labels.npy").shape, 99)), "label 99, outside the 10 classes"),
    (lambda f: np.save(f / "train.labels.npy", np.full(
        np.load(f / "train.labels.npy").shape, -1)), "label -1"),
    (lambda f: _npy(f / "train.frames.npy", (1, 2, 2, 4294967296, 4294967296), "<u2"),
     "holds frames of shape"),
    (lambda f: _npy(f / "train.frames.npy", (4294967296, 4294967296, 1, 1, 1), "<u2"),
     "holds frames of shape"),
    (lambda f: _npy(f / "train.frames.npy", (2 ** 62, 2, 2, 20, 20), "<u2"), "is damaged"),
], ids=["labels-claim-1e10", "label-99", "label-negative", "frames-shape-absurd",
        "frames-shape-2x32bit", "frames-product-past-2**64"])
def test_a_damaged_frames_cache_is_named(damage, words, frames_folder, capsys, tmp_path):
    cache, folder = frames_folder
    damage(folder)
    outcome = _distill_on(cache, capsys, tmp_path)
    assert_one_line_error(outcome, 2, words)
    assert str(folder) in outcome.err
    assert not (tmp_path / "runs" / "r" / "student.pt").exists()


# --- event recordings ------------------------------------------------------------------------

def test_non_utf8_in_a_cifar10dvs_header_is_corrupt(tmp_path, capsys):
    from neurokd.data.event_writers import aedat2_bytes, random_events, write_cifar10dvs

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    root = write_cifar10dvs(tmp_path / "c", {n: [random_events(50, 128, 128, i + k)
                                                 for k in range(3)]
                                             for i, n in enumerate(names)})
    bad = root / "cat" / "cifar10_cat_0.aedat"
    bad.write_bytes(b"#!AER-DAT2.0\xff\xfe\r\n" + aedat2_bytes(random_events(50, 128, 128, 0))
                    .split(b"\r\n", 1)[1])
    outcome = run_cli(capsys, "distill", "--dataset", "cifar10dvs", "--data-dir", str(root),
                      "--cache-dir", str(tmp_path), "--timesteps", "2", "--out",
                      str(tmp_path / "runs"), "-q")
    assert_one_line_error(outcome, 2, "not UTF-8")
    assert str(bad) in outcome.err


def test_gesture_labels_that_miss_the_events_are_read_as_empty_samples(tmp_path, capsys):
    """A labels file whose windows lie outside the recording, or claim a window of 2**62 us:
    the samples hold no events (no allocation sized by the window); the run goes on."""
    from neurokd.data import load_data
    from neurokd.data.event_writers import random_events, write_gesture

    events = random_events(200, 128, 128, 0)
    root = write_gesture(tmp_path / "g", {
        "user01_led": (events, [(1, 10 ** 12, 10 ** 12 + 10), (1, 0, 2 ** 62),
                                (2, 0, 50_000), (2, 50_000, 100_000)]),
        "user02_led": (events, [(3, 0, 50_000), (4, 50_000, 100_000)])},
        ["user01_led"], ["user02_led"])
    bundle = load_data("dvsgesture", str(root), timesteps=2, cache_dir=tmp_path,
                       val_fraction=0.5)
    assert len(bundle.test) == 2


# --- metrics.json and plots ------------------------------------------------------------------

@pytest.fixture
def metrics_run(trained_run, tmp_path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained_run / "metrics.json", run / "metrics.json")
    return run


def test_deeply_nested_metrics_json_is_refused(metrics_run, capsys):
    (metrics_run / "metrics.json").write_text("[" * 100_000 + "]" * 100_000)
    outcome = run_cli(capsys, "plot", str(metrics_run))
    assert_one_line_error(outcome, 2, "nested more than")
    assert _listing(metrics_run) == ["metrics.json"]


@pytest.mark.parametrize("field, value", [
    ("method", "$\\frac{$"), ("dataset", "$x^$"), ("method", "m" * 1_000_000),
    ("terms", {"$\\sqrt{$": 0.5}), ("layer_firing_rates", {"a$b$c\x00": 0.1})])
def test_names_in_a_metrics_file_are_drawn_as_text(field, value, metrics_run, capsys):
    path = metrics_run / "metrics.json"
    metrics = json.loads(path.read_text())
    if field in ("terms", "layer_firing_rates"):
        metrics["history"][0][field] = value
    else:
        metrics[field] = value
    path.write_text(json.dumps(metrics))
    outcome = run_cli(capsys, "plot", str(metrics_run))
    assert outcome.code == 0, outcome.err
    assert (metrics_run / "training.png").stat().st_size > 0


def test_plot_text_escapes_and_cuts():
    from neurokd.cli.figure import MAX_LABEL, plot_text

    assert plot_text("a$b$") == r"a\$b\$"
    assert plot_text("x\ny\0") == "x y "
    assert len(plot_text("n" * 10 ** 6)) == MAX_LABEL


def test_bounded_json():
    from neurokd.errors import NeuroKDError
    from neurokd.files.json_text import loads_bounded

    assert loads_bounded('{"a": ["[[[[", {"b": 1}]}', "f") == {"a": ["[[[[", {"b": 1}]}
    for text, words in (("[" * 65 + "]" * 65, "nested more than 64"), (b"\xff", "not UTF-8"),
                        ("{", "not JSON")):
        with pytest.raises(NeuroKDError, match=words):
            loads_bounded(text, "f")


# --- the training log (--log-dir) ------------------------------------------------------------

def test_a_non_utf8_log_csv_being_resumed_is_named(tmp_path, capsys, monkeypatch):
    from neurokd.train.training_log import TrainingLog

    (tmp_path / "student.csv").write_bytes(b"epoch,loss\n1,\xff\xfe\n")
    from neurokd.errors import DataError

    with pytest.raises(DataError, match="student.csv is not UTF-8 text"):
        TrainingLog(tmp_path, resume=True)
    (tmp_path / "student.csv").write_text("epoch,loss\n1,2,3\n")
    with pytest.raises(DataError, match="line 2: not a row of this log"):
        TrainingLog(tmp_path, resume=True)


def test_a_read_only_log_dir_is_cannot_write(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: the folder is read-only to the check
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == logs
                            else real(p, mode, **k))
    try:
        outcome = run_cli(capsys, "distill", "--name", "r", "--log-dir", str(logs), "--epochs",
                          "1", "--teacher-epochs", "1", "-q")
    finally:
        logs.chmod(0o755)
    assert_one_line_error(outcome, 1, "cannot write")
    assert str(logs) in outcome.err and _listing(logs) == []


# --- energy: results, profiles, JSON ---------------------------------------------------------

@pytest.mark.parametrize("change, field", [
    (lambda a: a.__setitem__("input_events_1", np.full_like(a["input_events_1"], 1e308)),
     "input_events_1"),
    (lambda a: a.__setitem__("output_spikes_0", np.full_like(a["output_spikes_0"], 1e300)),
     "output_spikes_0"),
    (lambda a: a.__setitem__("samples", np.array(2 ** 62)), "samples"),
], ids=["counts-1e308", "spikes-1e300", "samples-2**62"])
def test_result_counts_that_overflow_are_refused(change, field, result_file, tmp_path, capsys):
    arrays = _arrays(result_file)
    change(arrays)
    path = tmp_path / "h.npz"
    np.savez(path, **arrays)
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(path), "-q", "--json",
                      str(tmp_path / "r.json"))
    assert_refused(outcome, path, field)
    assert _listing(tmp_path) == ["h.npz"]


def _zip_with(path: Path, arrays: dict, name: str, shape: tuple, dtype: str = "<f8",
              claimed: int | None = None) -> None:
    """``arrays`` as an .npz, member ``name`` replaced by a header claiming ``shape`` (and,
    with ``claimed``, a local and central size field saying ``claimed`` bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, value in arrays.items():
            if key == name:
                continue
            data = io.BytesIO()
            npy.write_array(data, value)
            archive.writestr(f"{key}.npy", data.getvalue())
        data = io.BytesIO()
        npy.write_array_header_1_0(data, {"descr": dtype, "fortran_order": False,
                                          "shape": shape})
        info = zipfile.ZipInfo(f"{name}.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, data.getvalue() + b"\0" * 4096)
    raw = bytearray(buffer.getvalue())
    if claimed is not None:  # both size fields of the member: local header and central dir
        marker = f"{name}.npy".encode()
        for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            at = 0
            while (at := raw.find(signature, at)) >= 0:
                length = int.from_bytes(raw[at + offset + 4: at + offset + 6], "little") \
                    if signature == b"PK\x03\x04" else \
                    int.from_bytes(raw[at + 28: at + 30], "little")
                name_at = at + (30 if signature == b"PK\x03\x04" else 46)
                if raw[name_at: name_at + length] == marker:
                    raw[at + offset: at + offset + 4] = claimed.to_bytes(4, "little")
                at += 4
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("claimed, shape", [(2_500_000_000, (312_500_000,)),
                                            (None, (300_000_000,))],
                         ids=["member-size-lies", "forged-shape"])
def test_a_result_member_that_lies_about_its_size_is_refused(claimed, shape, result_file,
                                                              tmp_path):
    """Measured in a subprocess: refused, with peak memory far below the 2.4 GB claimed."""
    path = tmp_path / "h.npz"
    _zip_with(path, _arrays(result_file), "input_events_0", shape, claimed=claimed)
    code, peak = _peak("energy", "report", "--from-sim", str(path), "-q")
    assert code == 2 and peak < 1 << 30, (code, peak)


def test_a_result_member_that_lies_is_named(result_file, tmp_path, capsys):
    path = tmp_path / "h.npz"
    _zip_with(path, _arrays(result_file), "input_events_0", (312_500_000,),
              claimed=2_500_000_000)
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(path), "-q")
    assert_refused(outcome, path, "'input_events_0' claims 2,500,000,000 bytes")


def test_profile_costs_that_overflow_are_refused(result_file, tmp_path, capsys):
    path = tmp_path / "chip.toml"
    path.write_text('name = "chip"\nsource = "datasheet"\nmac_pj = 1e308\nsynop_pj = 1e308\n'
                    "neuron_update_pj = 1e308\n")
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(result_file), "--profile",
                      str(path), "-q", "--json", str(tmp_path / "r.json"))
    assert_refused(outcome, path, "mac_pj")
    assert "inf" not in outcome.out
    assert _listing(tmp_path) == ["chip.toml"]


def test_write_json_refuses_non_finite_numbers(tmp_path):
    from neurokd.errors import NeuroKDError
    from neurokd.files.safe_io import write_json

    with pytest.raises(NeuroKDError, match=r"layers\[1\].energy_pj is not a finite number"):
        write_json(tmp_path / "r.json", {"layers": [{"energy_pj": 1.0},
                                                    {"energy_pj": math.inf}]})
    assert _listing(tmp_path) == []


# --- checkpoints -----------------------------------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda t: t.to_sparse(), "sparse tensor"),
    (lambda t: torch.empty(t.shape, device="meta"), "meta tensor"),
    (lambda t: torch.complex(t, t), "complex"),
], ids=["sparse", "meta", "complex"])
@pytest.mark.parametrize("command", ["export", "energy"])
def test_checkpoint_tensors_that_are_not_dense_are_refused(make, words, command, trained_run,
                                                           tmp_path, capsys):
    stored = torch.load(trained_run / "student.pt", weights_only=True)
    stored["student"] = dict(stored["student"])
    key = "features.1.running_mean" if command == "energy" else "features.0.weight"
    stored["student"][key] = make(stored["student"][key])
    path = tmp_path / "s.pt"
    torch.save(stored, path)
    args = (["export", "--target", "onnx", str(path), "-o", str(tmp_path / "o.onnx")]
            if command == "export" else ["energy", "report", str(path), "--samples", "4"])
    outcome = run_cli(capsys, *args, "-q")
    assert_refused(outcome, path, words)
    assert f"student.{key}" in outcome.err
    assert _listing(tmp_path) == ["s.pt"]


# --- the memory budget -----------------------------------------------------------------------

def test_the_budget_honours_ulimit_v():
    """A child with ``ulimit -v`` of 6 GiB: its budget is what that limit leaves, not 75% of
    the machine's memory."""
    code = ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
            "from neurokd.files.budget import budget, set_budget\nset_budget('1T')\n"
            "print(budget())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert 0 < int(done.stdout) < 6 << 30, done.stderr


def test_the_budget_names_ulimit_v(monkeypatch):
    from neurokd.errors import NeuroKDError
    from neurokd.files import budget

    monkeypatch.setattr(budget, "address_space_left", lambda: 1 << 20)
    with pytest.raises(NeuroKDError, match=r"address-space limit \(ulimit -v\)"):
        budget.check_bytes(2 << 20, "x")


# --- --model and --timesteps -----------------------------------------------------------------

@pytest.mark.parametrize("timesteps, words", [("1000000000", "--timesteps must be in 1..4096"),
                                              ("4096", "one sample's input")])
def test_model_with_enormous_timesteps_is_refused_before_allocating(timesteps, words, tmp_path,
                                                                    capsys, monkeypatch):
    (tmp_path / "usermodels.py").write_text(
        "from spikingjelly.activation_based import layer, neuron\n"
        "from torch import nn\n"
        "def wide():\n"
        "    return nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), neuron.LIFNode(),\n"
        "                         layer.Flatten(), layer.Linear(4 * 512 * 512, 10))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["energy", "report", "--model", "usermodels:wide", "--timesteps", timesteps,
            "--input-shape", "1,512,512", "--random-weights", "--random-inputs", "-q"]
    if timesteps == "4096":
        args = ["--max-memory", "1G", *args]
    outcome = run_cli(capsys, *args)
    assert_one_line_error(outcome, 2, words)


# --- NIR -------------------------------------------------------------------------------------

def _nir_node(handle, kind: str) -> str:
    nodes = handle["node/nodes"]
    return next(f"node/nodes/{n}" for n in nodes if nodes[n]["type"][()].decode() == kind)


def test_complex_nan_nir_weights_are_refused(trained_exports, tmp_path, capsys):
    path = tmp_path / "h.nir"
    shutil.copy(trained_exports / "student.nir", path)
    with h5py.File(path, "r+") as handle:
        key = _nir_node(handle, "Affine") + "/weight"
        weight = handle[key][()]
        del handle[key]
        handle[key] = weight.astype(np.complex128) * complex(math.nan, math.nan)
    outcome = run_cli(capsys, "export", "--target", "onnx", str(path), "-o",
                      str(tmp_path / "o.onnx"), "--check-samples", "4", "-q")
    assert_refused(outcome, path, "complex128")
    assert _listing(tmp_path) == ["h.nir"]


def test_a_nir_shape_fault_is_reported_as_found_not_as_the_batch_retry(tmp_path, capsys):
    """An Input of shape (1, 8) whose Affine takes 9: the fault is the Affine's, not a "2-D
    conv" or whatever reading the leading 1 as a batch axis would run into next."""
    import nir

    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([1, 8])}),
        "flat": nir.Flatten(start_dim=0, end_dim=1, input_type={"input": np.array([1, 8])}),
        "fc": nir.Affine(np.ones((4, 9), np.float32), np.zeros(4, np.float32)),
        "lif": nir.LIF(tau=np.full(4, 5e-4), r=np.ones(4), v_leak=np.zeros(4),
                       v_threshold=np.ones(4), v_reset=np.zeros(4)),
        "output": nir.Output(output_type={"output": np.array([4])})},
        edges=[("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata={"timesteps": 2}, type_check=False)
    path = tmp_path / "g.nir"
    nir.write(path, graph)
    outcome = run_cli(capsys, "export", "--target", "onnx", str(path), "-o",
                      str(tmp_path / "o.onnx"), "--check-samples", "4", "-q")
    assert_refused(outcome, path, "'fc'")
    assert "(1, 8)" in outcome.err or "8" in outcome.err


@pytest.mark.parametrize("command", ["energy", "export"])
def test_a_nir_graph_with_a_huge_input_is_refused_by_the_budget(command, tmp_path, capsys):
    """An Input of 2**18 values over 256 timesteps: 512 MiB for one sample, refused under a
    256 MiB budget before the model is built."""
    import nir

    n = 1 << 18
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([n])}),
        "lif": nir.LIF(tau=np.full(n, 5e-4), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n)),
        "fc": nir.Affine(np.zeros((4, n), np.float32), np.zeros(4, np.float32)),
        "output": nir.Output(output_type={"output": np.array([4])})},
        edges=[("input", "lif"), ("lif", "fc"), ("fc", "output")],
        metadata={"timesteps": 256}, type_check=False)
    path = tmp_path / "big.nir"
    nir.write(path, graph)
    args = (["energy", "report", str(path), "--random-inputs"] if command == "energy" else
            ["export", "--target", "onnx", str(path), "-o", str(tmp_path / "o.onnx")])
    outcome = run_cli(capsys, "--max-memory", "256M", *args, "-q")
    assert_refused(outcome, path, "one sample over its 256 timesteps")
    assert _listing(tmp_path) == ["big.nir"]


# --- ONNX ------------------------------------------------------------------------------------

def _onnx_copy(trained_exports, tmp_path: Path, change) -> Path:
    import onnx

    model = onnx.load(trained_exports / "student-spikes.onnx")
    change(model)
    path = tmp_path / "h.onnx"
    onnx.save(model, path)
    return path


def test_deeply_nested_onnx_metadata_is_refused(trained_exports, tmp_path, capsys):
    def change(model):
        for prop in model.metadata_props:
            if prop.key == "neurokd.data":
                prop.value = "[" * 100_000 + "]" * 100_000

    path = _onnx_copy(trained_exports, tmp_path, change)
    outcome = run_cli(capsys, "simulate", str(path), "--backend", "onnx", "--samples", "4", "-q")
    assert_refused(outcome, path, "neurokd.data")
    assert "nested" in outcome.err


def test_a_future_onnx_opset_is_explained(trained_exports, tmp_path, capsys):
    def change(model):
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = 99

    path = _onnx_copy(trained_exports, tmp_path, change)
    outcome = run_cli(capsys, "simulate", str(path), "--backend", "onnx", "--samples", "4", "-q")
    assert_refused(outcome, path, "opset 99")
    assert "export it again" in outcome.err


# --- the Loihi graph file (the fuzzer's 16th type: tests/test_fuzz.py "graph") -------------

@pytest.fixture(scope="module")
def graph_file(tmp_path_factory) -> Path:
    from test_fuzz import _graph_file

    return _graph_file(tmp_path_factory.mktemp("round2-graph") / "student.net")


def _graph_copy(graph_file: Path, tmp_path: Path, change) -> Path:
    path = tmp_path / "student.net"
    shutil.copy(graph_file, path)
    with h5py.File(path, "r+") as handle:
        change(handle)
    return path


def _swap(key: str, value):
    def change(handle):
        del handle[key]
        if isinstance(value, str):  # "group"
            handle.create_group(key)
        else:
            handle[key] = value
    return change


def _float_neuron(**values):
    def change(handle):
        stored = handle["neurokd/float/group/0"]
        stored.attrs["neuron"] = json.dumps(json.loads(stored.attrs["neuron"]) | values)
    return change


def _group_scale(value):
    def change(handle):
        scales = json.loads(handle.attrs["neurokd.group_scales"])
        handle.attrs["neurokd.group_scales"] = json.dumps([value, *scales[1:]])
    return change


@pytest.mark.parametrize("change, words", [
    (lambda h: h["synapse/6"].create_group(b"\xff\xfeels"),
     "a damaged HDF5 tree (an object named b'synapse/6/\\xff\\xfeels', not UTF-8"),
    (_swap("group/2/neuron/vThMant", np.dtype("<i8")), "(/group/2) neuron vThMant must be one"),
    (_swap("synapse/2/weight", "group"), "(/synapse/2) weight must be an array"),
    (_swap("synapse/3", np.zeros(3)), "/synapse/3 must be a group, not Dataset"),
    (_swap("neurokd/float/group/7/bias", np.full(10, 1e38)),
     "bias holds 1e+38; the float network runs in float32"),
    (_float_neuron(v_reset=-1e308), "neuron v_reset must be a finite number with |value| <="),
    (_float_neuron(tau=10 ** 400), "neuron tau must be a finite number"),
    (_group_scale(1e-320), "neurokd.group_scales must be 8 finite numbers > 0"),
], ids=["name-not-utf8", "datatype-for-a-number", "group-for-a-weight", "dataset-for-a-group",
        "float-bias-1e38", "v-reset-1e308", "tau-10**400", "denormal-scale"])
def test_a_damaged_graph_file_is_named(change, words, graph_file, tmp_path, capsys):
    """The fuzzer's finds: a SystemError, an AttributeError, a float32 overflow in torch, an
    OverflowError in math.isfinite, inf logits (RuntimeWarning) from a denormal scale."""
    path = _graph_copy(graph_file, tmp_path, change)
    outcome = run_cli(capsys, "simulate", str(path), "--samples", "2", "-q")
    assert_refused(outcome, path, words)


def test_a_graph_file_with_a_damaged_btree_is_named(graph_file, tmp_path, capsys):
    """h5py's RuntimeError from the walk (it was caught for netx files, not for graph files)."""
    data = graph_file.read_bytes()
    second = data.index(b"SNOD", data.index(b"SNOD") + 1)  # a symbol table node, not the root's
    path = tmp_path / "student.net"
    path.write_bytes(data[:second] + b"XXXX" + data[second + 4:])
    outcome = run_cli(capsys, "simulate", str(path), "--samples", "2", "-q")
    assert_refused(outcome, path, "cannot read the Loihi graph file (RuntimeError: ")


def test_a_non_utf8_name_in_a_netx_file_is_named(trained_exports, tmp_path, capsys):
    """The same walk (files/hdf5.py) reads netx files."""
    path = tmp_path / "student.net"
    shutil.copy(trained_exports / "student.net", path)
    with h5py.File(path, "r+") as handle:
        handle.create_group(b"layer/\xff")
    outcome = run_cli(capsys, "simulate", str(path), "--samples", "2", "-q")
    assert_refused(outcome, path, "a damaged HDF5 tree (an object named b'layer/\\xff'")


def test_a_whole_number_tau_past_int64_runs_as_a_float(graph_file, tmp_path):
    """JSON's 10**19 is a Python int that torch cannot take (OverflowError in the float run)."""
    from neurokd.data import load_data
    from neurokd.exporters.loihi.graph_file import read_graph
    from neurokd.exporters.loihi.graph_network import run_graph_float

    stored = read_graph(_graph_copy(graph_file, tmp_path, _float_neuron(tau=10 ** 19)))
    assert stored.float_graph.groups[0].neuron.tau == 1e19
    logits, _ = run_graph_float(stored.float_graph, load_data("digits").test.tensors[0][:2],
                                keep_spikes=False)
    assert np.isfinite(logits).all()
