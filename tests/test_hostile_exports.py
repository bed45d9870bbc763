"""Export files are input too: a Loihi ``.net``, an ONNX file given to ``simulate``, a ``.nir``
given as a source, each damaged field by field (missing, wrong type, zero, negative, NaN/inf,
huge, pointing outside the file). Each case ends as bad input does: exit 2, one stderr line
naming the file and the field, no traceback, nothing written."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import run_cli

NAN, INF, HUGE = math.nan, math.inf, 10 ** 30


def sampled(params: list, every: int = 10) -> list:
    """Every ``every``-th case runs in ``make test-fast``; the rest are marked slow (``make
    test`` runs them all): the generated matrices take minutes, test-fast has one."""
    return [case if index % every == 0 else pytest.param(
        *case.values, id=case.id, marks=[*case.marks, pytest.mark.slow])
        for index, case in enumerate(params)]


def assert_refused(outcome, path: Path, field: str) -> None:
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert outcome.code == 2, outcome.err
    assert len(lines) == 1 and "Traceback" not in outcome.err, outcome.err
    assert "internal error" not in lines[0], lines[0]
    assert str(path) in lines[0] and field in lines[0], lines[0]


# --- netx (.net) -------------------------------------------------------------------------

def _replace(key: str, value):
    def change(handle):
        del handle[key]
        handle[key] = value
    return change


def _huge(key: str):
    def change(handle):  # a 10**6 x 10**6 int64 weight in chunks of nothing: 7.3 TiB claimed
        del handle[key]
        handle.create_dataset(key, shape=(10 ** 6, 10 ** 6), dtype="i8", chunks=(1, 1024),
                              compression="gzip")
    return change


def _external(key: str):
    def change(handle):
        shape, dtype = handle[key].shape, handle[key].dtype
        del handle[key]
        handle.create_dataset(key, shape=shape, dtype=dtype, external=[
            ("/dev/urandom", 0, int(np.prod(shape)) * dtype.itemsize)])
    return change


def _soft(key: str, target: str):
    def change(handle):
        del handle[key]
        handle[key] = h5py.SoftLink(target)
    return change


def _meta(key: str, value, delete: bool = False):
    def change(handle):
        if delete:
            del handle.attrs[f"neurokd.{key}"]
        else:
            handle.attrs[f"neurokd.{key}"] = json.dumps(value)
    return change


def _float_neuron(key: str, value):
    def change(handle):
        spec = json.loads(handle["neurokd/float/0"].attrs["layer"])
        spec["neuron"][key] = value
        handle["neurokd/float/0"].attrs["layer"] = json.dumps(spec)
    return change


def _float_value(key: str, value):
    def change(handle):
        data = handle[key][()]
        data.flat[0] = value
        handle[key][...] = data
    return change


NEURON = "layer/1/neuron"
NEURON_CASES = {  # every CUBA value: wrong type, below and above its range, NaN
    "iDecay": [2.5, -1, 4097, NAN, "x"], "vDecay": [2.5, -1, 4097, NAN, "x"],
    "vThMant": [2.5, 0, -1, 1 << 17, NAN, "x"],
}
META_CASES = {
    "timesteps": [None, 0, -3, 10 ** 9, 2.5, True, "4", []],
    "input_shape": [None, [], [0, 8, 8], [8, -8], [10 ** 6, 10 ** 6], "abc", [True, 8, 8]],
    "input_scale": [None, 0, -1.0, NAN, INF, "x", True],
    "input_min": [None, 2.5, HUGE, "x", 300], "input_max": [None, 2.5, -HUGE, "x", -300],
    "layer_names": [None, 5, [1, 2, 3, 4], ["", "a", "b", "c"]],
    "layer_scales": [None, [0, 1, 1, 1], [NAN, 1, 1, 1], [-1, 1, 1, 1], "x"],
    "layer_input_shapes": [None, 5, [[0], [1], [1], [1]], [[10 ** 9, 10 ** 9]] * 4],
    "readout_has_neurons": [None, "no", 1],
}
NETX_CASES = (
    [pytest.param(_replace(f"{NEURON}/{k}", v), k, id=f"{k}={v!r}")
     for k, values in NEURON_CASES.items() for v in values]
    + [pytest.param(lambda h, k=k: h.__delitem__(f"{NEURON}/{k}"), k, id=f"{k}-missing")
       for k in NEURON_CASES]
    + [pytest.param(_meta(k, v, delete=v is None), f"neurokd.{k}", id=f"meta-{k}={v!r:.24}")
       for k, values in META_CASES.items() for v in values]
    + [pytest.param(_replace("layer/1/weight", np.zeros((16, 1, 3, 3))), "weight",
                    id="weight-float"),
       pytest.param(_replace("layer/1/weight", np.full((16, 1, 3, 3), 1000)), "weight",
                    id="weight-range"),
       pytest.param(_replace("layer/1/bias", np.full(16, -(10 ** 6))), "bias", id="bias-range"),
       pytest.param(_replace("layer/1/bias", np.zeros(16, "S4")), "bias", id="bias-text"),
       pytest.param(_huge("layer/1/weight"), "GiB", id="weight-huge"),
       pytest.param(_huge("neurokd/float/0/weight"), "GiB", id="float-weight-huge"),
       pytest.param(_external("layer/1/bias"), "/layer/1/bias", id="bias-external"),
       pytest.param(_external("neurokd/float/0/weight"), "/dev/urandom", id="float-external"),
       pytest.param(_soft("layer/1/bias", "/layer/2/bias"), "soft link", id="bias-soft-link"),
       pytest.param(lambda h: h["layer"].__setitem__("9", h5py.ExternalLink("/etc/passwd", "/")),
                    "external link", id="external-link"),
       pytest.param(_float_value("neurokd/float/0/weight", NAN), "weight", id="float-nan"),
       pytest.param(_float_value("neurokd/float/1/bias", INF), "bias", id="float-inf"),
       pytest.param(_replace("neurokd/float/0/weight", np.zeros((16, 1, 3, 3), "i8")), "weight",
                    id="float-weight-int"),
       pytest.param(_float_neuron("v_threshold", 0), "v_threshold", id="float-vth-0"),
       pytest.param(_float_neuron("v_threshold", NAN), "v_threshold", id="float-vth-nan"),
       pytest.param(_float_neuron("tau", INF), "tau", id="float-tau-inf"),
       pytest.param(lambda h: h.attrs.__setitem__("neurokd.layer_names", "[" * 100000),
                    "nested", id="meta-deep-json")])


@pytest.mark.parametrize("change, field", sampled(NETX_CASES))
def test_netx_field(change, field, trained_exports, tmp_path, capsys):
    path = tmp_path / "h.net"
    shutil.copy(trained_exports / "student.net", path)
    with h5py.File(path, "r+") as handle:
        change(handle)
    outcome = run_cli(capsys, "simulate", str(path), "--backend", "lava", "--samples", "4",
                      "-q", "--save", str(tmp_path / "r.npz"))
    assert_refused(outcome, path, field)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.net"]


# --- ONNX given to simulate -----------------------------------------------------------------

def _onnx_external(model):
    from onnx import TensorProto

    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    return tensor.name


def _onnx_meta(key: str, value: str):
    def change(model):
        for prop in model.metadata_props:
            if prop.key == key:
                prop.value = value
        return key
    return change


def _onnx_raw_size(model):
    tensor = next(t for t in model.graph.initializer if t.HasField("raw_data"))
    tensor.raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]
    return tensor.name


def _onnx_dims(model):
    tensor = next(t for t in model.graph.initializer if t.HasField("raw_data"))
    del tensor.dims[:]
    tensor.dims.extend([10 ** 6, 10 ** 6])
    return tensor.name


def _onnx_undefined_input(model):
    node = next(n for n in model.graph.node if n.op_type == "Conv")
    node.input[0] = "no_such_value"
    return "onnx.checker"


ONNX_CASES = [
    pytest.param(_onnx_external, id="external-data"),
    pytest.param(_onnx_raw_size, id="raw-data-short"),
    pytest.param(_onnx_dims, id="dims-huge"),
    pytest.param(_onnx_undefined_input, id="checker-undefined-input"),
    *[pytest.param(_onnx_meta("neurokd.timesteps", v), id=f"timesteps={v}")
      for v in ("0", "-4", "1000000000", "x")],
    *[pytest.param(_onnx_meta("neurokd.input_shape", v), id=f"input_shape={v}")
      for v in ("(1000000, 1000000)", "(0, 8, 8)", "()", "abc", "(1, 2, 3, 4, 5)")],
]


@pytest.mark.parametrize("change", sampled(ONNX_CASES, 4))
def test_onnx_field(change, trained_exports, tmp_path, capsys):
    import onnx

    model = onnx.load(trained_exports / "student-spikes.onnx")
    field = change(model)
    path = tmp_path / "h.onnx"
    path.write_bytes(model.SerializeToString())
    outcome = run_cli(capsys, "simulate", str(path), "--backend", "onnx", "--samples", "4", "-q",
                      "--save", str(tmp_path / "r.npz"))
    assert_refused(outcome, path, field.split(".")[-1] if "neurokd." in field else field)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.onnx"]


# --- NIR given as a source -------------------------------------------------------------------

def _nir_nodes(handle) -> dict[str, str]:
    nodes = handle["node/nodes"]
    return {name: nodes[name]["type"][()].decode() for name in nodes}


def _nir_first(kind: str, key: str, action):
    def change(handle):
        name = next(n for n, t in _nir_nodes(handle).items() if t == kind)
        return action(handle, f"node/nodes/{name}/{key}", name)
    return change


def _set_all(value):
    def action(handle, key, name):
        data = handle[key][()]
        data[...] = value
        handle[key][...] = data
        return name
    return action


def _nir_external(handle, key, name):
    _external(key)(handle)
    return "external storage"


def _nir_huge(handle, key, name):
    del handle[key]
    handle.create_dataset(key, shape=(10 ** 6, 10 ** 6), dtype="f4", chunks=(1, 1024),
                          compression="gzip")
    return "GiB"


def _nir_soft(handle, key, name):
    del handle[key]
    handle[key] = h5py.SoftLink("/node/nodes")
    return "soft link"


NIR_CASES = [
    pytest.param(_nir_first("Conv2d", "weight", _set_all(NAN)), id="conv-weight-nan"),
    pytest.param(_nir_first("Affine", "bias", _set_all(INF)), id="affine-bias-inf"),
    pytest.param(_nir_first("LIF", "v_threshold", _set_all(0.0)), id="lif-threshold-0"),
    pytest.param(_nir_first("LIF", "v_threshold", _set_all(-1.0)), id="lif-threshold-negative"),
    pytest.param(_nir_first("LIF", "tau", _set_all(NAN)), id="lif-tau-nan"),
    pytest.param(_nir_first("Conv2d", "weight", _nir_external), id="conv-weight-external"),
    pytest.param(_nir_first("Affine", "weight", _nir_huge), id="affine-weight-huge"),
    pytest.param(_nir_first("Affine", "weight", _nir_soft), id="affine-weight-soft-link"),
]


@pytest.mark.parametrize("change", sampled(NIR_CASES, 4))
def test_nir_field(change, trained_exports, tmp_path, capsys):
    path = tmp_path / "h.nir"
    shutil.copy(trained_exports / "student.nir", path)
    with h5py.File(path, "r+") as handle:
        field = change(handle)
    outcome = run_cli(capsys, "export", "--target", "onnx", str(path), "-o",
                      str(tmp_path / "out.onnx"), "--check-samples", "4", "-q")
    assert_refused(outcome, path, field)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.nir"]
