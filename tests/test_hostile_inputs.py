"""Result ``.npz`` files, energy profile TOMLs and data folders are input too: each damaged
field by field. Each case: exit 2, one stderr line naming the file and the field, no
traceback, nothing written."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy
from test_hostile_exports import assert_refused, sampled

from neurokd.energy.quantities import COST_KEYS

from helpers import run_cli


@pytest.fixture(scope="module")
def result_file(trained_run, tmp_path_factory) -> Path:
    import neurokd
    from neurokd.data import load_data
    from neurokd.energy import count_events, write_spike_counts

    run = neurokd.load(trained_run / "student.pt")
    x = load_data("digits").test.tensors[0][:16]
    folder = tmp_path_factory.mktemp("hostile-results")
    return write_spike_counts(folder / "r.npz", count_events(run.student, x, (1, 8, 8)),
                              "lava", "digits")


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _save(path: Path, arrays: dict, raw: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            npy.write_array(buffer, np.asanyarray(value), allow_pickle=True)
            archive.writestr(f"{key}.npy", buffer.getvalue())
        for key, data in (raw or {}).items():
            archive.writestr(f"{key}.npy", data)


def _claiming(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\0" * 64


HEADER = ("format", "version", "backend", "samples", "timesteps", "layer_names", "layer_types")
WRONG = {"version": [np.array(2.5), np.array("1"), np.array([1, 1])],
         "samples": [np.array(0), np.array(-4), np.array(2.5), np.array("16")],
         "timesteps": [np.array(0), np.array(-1), np.array(1.5)],
         "backend": [np.array(5), np.array(["a", "b"]).reshape(1, 2)],
         "layer_names": [np.array(5), np.array([], dtype=str)],
         "layer_types": [np.array(["conv", "pool", "conv", "dense"]), np.array([1, 2, 3, 4])],
         "geometry_0": [np.array([1, 2]), np.array([0] * 11), np.array([-16] + [1] * 10)],
         "input_events_0": [np.full((1, 8, 8), np.nan), np.full((1, 8, 8), -1.0),
                            np.zeros((2, 2))],
         "output_spikes_0": [np.full((16, 8, 8), np.inf), np.zeros(3)],
         "has_neurons_0": [np.array(2), np.array(0.5)],
         "input_spikes": [np.array(3)]}
NPZ_CASES = (
    [pytest.param(lambda a, k=k: a.pop(k), {}, k, id=f"{k}-missing") for k in HEADER]
    + [pytest.param(lambda a, k=k, v=v: a.__setitem__(k, v), {}, k, id=f"{k}={v.tolist()!r:.20}")
       for k, values in WRONG.items() for v in values]
    + [pytest.param(lambda a: a.pop("input_events_0"), {"input_events_0": _claiming((10 ** 11,))},
                    "GiB", id="header-claims-1e11"),
       pytest.param(lambda a: a.pop("input_events_0"), {"input_events_0": _claiming((64,))},
                    "truncated", id="member-truncated"),
       pytest.param(lambda a: a.__setitem__("input_events_0", np.array([1, "a"], dtype=object)),
                    {}, "object dtype", id="object-dtype"),
       pytest.param(lambda a: None, {"junk": b"not an npy"}, "junk", id="member-not-npy")])


@pytest.mark.parametrize("change, raw, field", sampled(NPZ_CASES, 5))
def test_result_npz_field(change, raw, field, result_file, tmp_path, capsys):
    arrays = _arrays(result_file)
    change(arrays)
    path = tmp_path / "h.npz"
    _save(path, arrays, raw)
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(path), "-q",
                      "--json", str(tmp_path / "r.json"))
    assert_refused(outcome, path, field)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.npz"]


def test_result_npz_that_is_not_a_zip(tmp_path, capsys):
    path = tmp_path / "h.npz"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    assert_refused(run_cli(capsys, "energy", "report", "--from-sim", str(path), "-q"), path,
                   "not a readable .npz")


@pytest.mark.parametrize("change, field", [
    (lambda a: a.__setitem__("dataset", np.array("mnist1d")), "data set mnist1d"),
    (lambda a: a.__setitem__("timesteps", np.array(8)), "T=8"),
    (lambda a: a.__setitem__("layer_names", np.array(["a.0", "a.1", "a.2", "a.3"])),
     "layer a.0 where the student has features.0"),
], ids=["other-dataset", "other-timesteps", "other-names"])
def test_result_of_another_model_is_refused(change, field, result_file, trained_run,
                                            tmp_path, capsys):
    arrays = _arrays(result_file)
    change(arrays)
    path = tmp_path / "h.npz"
    _save(path, arrays)
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"),
                      "--from-sim", str(path), "-q", "--samples", "8")
    assert_refused(outcome, path, field)
    assert "is not a run of student" in outcome.err


# --- energy profile TOML ---------------------------------------------------------------------

GOOD_PROFILE = {"name": '"chip"', "source": '"datasheet"',
                **{key: "1.0" for key in COST_KEYS}}
PROFILE_WRONG = {**{key: ["-1.0", "nan", "inf", '"x"', "true", "[1.0]"] for key in COST_KEYS},
                 "name": ["5", '""', '"a\\u0000b"', "[1]"], "source": ["5", '""', "true"],
                 "memory_layout": ['"bogus"', "5"], "ann_profile": ['"bogus"', "5"]}
PROFILE_CASES = (
    [pytest.param(k, v, id=f"{k}={v}") for k, values in PROFILE_WRONG.items() for v in values]
    + [pytest.param(k, None, id=f"{k}-missing") for k in ("name", "source")])


@pytest.mark.parametrize("field, text", sampled(PROFILE_CASES, 5))
def test_profile_toml_field(field, text, result_file, tmp_path, capsys):
    values = dict(GOOD_PROFILE)
    values.pop(field, None)
    if text is not None:
        values[field] = text
    path = tmp_path / "chip.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(result_file), "--profile",
                      str(path), "-q", "--json", str(tmp_path / "r.json"))
    assert_refused(outcome, path, "profile" if field == "name" else field)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chip.toml"]


@pytest.mark.parametrize("content", ["/dev/zero", "deep", "binary"])
def test_profile_file_that_is_not_a_settings_file(content, result_file, tmp_path, capsys):
    path = tmp_path / "chip.toml"
    if content == "/dev/zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(b"x = " + b"[" * 100_000 if content == "deep" else b"\xff\xfe\0\0")
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(result_file), "--profile",
                      str(path), "-q")
    assert_refused(outcome, path, "energy profile")


# --- data folders ----------------------------------------------------------------------------

def _png(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (its one IDAT row holds almost nothing)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "bomb", "empty"])
def test_imagefolder_bad_image(damage, image_folder, tmp_path, capsys):
    victim = image_folder / "square" / "3.png"
    data = victim.read_bytes()
    victim.write_bytes({"corrupt": data[:20] + b"\x00" * 40 + data[60:],
                        "truncated": data[: len(data) // 2], "bomb": _png(100_000, 100_000),
                        "empty": b""}[damage])
    out = tmp_path / "runs"
    out.mkdir()
    outcome = run_cli(capsys, "distill", "--dataset", "imagefolder", "--data-dir",
                      str(image_folder), "--epochs", "1", "--teacher-epochs", "1", "-q",
                      "--out", str(out), "--name", "x", "--image-size", "8")
    assert_refused(outcome, victim, "decompression bomb" if damage == "bomb" else "image")
    assert list(out.iterdir()) == []


def _batch(folder: Path, name: str, **entry) -> None:
    base = {b"labels": [i % 10 for i in range(20)],
            b"data": np.zeros((20, 3072), dtype=np.uint8)}
    base.update({k.encode(): v for k, v in entry.items()})
    with open(folder / name, "wb") as handle:
        pickle.dump(base, handle, protocol=2)


@pytest.mark.parametrize("damage, field", [
    ({"data": np.zeros((20, 3072), dtype=object)}, "'data'"),
    ({"data": np.zeros((20, 3072), dtype=np.float32)}, "'data'"),
    ({"data": np.zeros((20, 100), dtype=np.uint8)}, "'data'"),
    ({"data": "abc"}, "'data'"),
    ({"labels": ["cat"] * 20}, "'labels'"),
    ({"labels": [1.5] * 20}, "'labels'"),
    ({"labels": [1] * 7}, "labels for 20 images"),
    ({"labels": [99] * 20}, "labels outside"),
    ("dev-zero", "not a regular file"),
], ids=["object", "float", "width", "text", "text-labels", "float-labels", "label-count",
        "label-range", "dev-zero"])
def test_cifar_bad_batch(damage, field, cifar10_dir, tmp_path, capsys):
    batch = cifar10_dir / "cifar-10-batches-py" / "data_batch_2"
    if damage == "dev-zero":
        batch.unlink()
        batch.symlink_to("/dev/zero")
    else:
        _batch(batch.parent, batch.name, **damage)
    out = tmp_path / "runs"
    out.mkdir()
    outcome = run_cli(capsys, "distill", "--dataset", "cifar10", "--data-dir",
                      str(cifar10_dir), "--epochs", "1", "--teacher-epochs", "1", "-q",
                      "--out", str(out), "--name", "x")
    assert_refused(outcome, batch.parent if field == "labels outside" else batch, field)
    assert list(out.iterdir()) == []


