"""Bad input across all commands: exit 2 (input) or 1 (runtime), one stderr line, no traceback,
nothing half-written."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import assert_one_line_error, run_cli


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob("*.tmp")], list(folder.rglob("*.tmp"))


@pytest.fixture
def files(tmp_path: Path, trained_run: Path) -> dict[str, Path]:
    """Every kind of broken file the commands below are given."""
    good = trained_run / "student.pt"
    raw = good.read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "text.pt").write_text("this is not a checkpoint\n")
    torch.save({"weight": torch.ones(2)}, tmp_path / "plain_state.pt")
    wrong_version = torch.load(good, weights_only=True)
    wrong_version["version"] = 99
    torch.save(wrong_version, tmp_path / "v99.pt")

    class Payload:  # what a malicious checkpoint carries
        def __reduce__(self):
            return (Path.touch, (tmp_path / "PWNED",))

    torch.save({"format": "neurokd.checkpoint", "version": 1, "x": Payload()},
               tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump(Payload(), handle)
    (tmp_path / "bad.toml").write_text("epochs = [1,\n")
    (tmp_path / "typo.toml").write_text("lerning_rate = 0.1\nlr = 0.1\n")
    (tmp_path / "near.toml").write_text("timestep = 4\n")
    (tmp_path / "type.toml").write_text('epochs = "ten"\n')
    (tmp_path / "a_file").write_text("x")
    cifar = tmp_path / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    (cifar / "data_batch_1").write_bytes(b"garbage")
    (tmp_path / "no_images").mkdir()
    (tmp_path / "no_images" / "cat").mkdir()
    (tmp_path / "no_images" / "cat" / "notes.txt").write_text("no pictures here")
    (tmp_path / "no_config_run").mkdir()
    (tmp_path / "usermodels.py").write_text(
        "from spikingjelly.activation_based import layer, neuron\n"
        "from torch import nn\n"
        "def pooled():\n"
        "    return nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), neuron.LIFNode(),\n"
        "                         layer.MaxPool2d(2), layer.Flatten(), layer.Linear(64, 10))\n")
    return {"good": good, "teacher": trained_run / "teacher.pt", "dir": tmp_path}


DISTILL_CASES = [
    (["--method", "bogus"], "method"),
    (["--dataset", "mnist"], "dataset"),
    (["--epochs", "-1"], "epochs"),
    (["--epochs", "0"], "epochs"),
    (["--timesteps", "0"], "timesteps"),
    (["--alpha", "1.5"], "alpha"),
    (["--alpha", "-0.1"], "alpha"),
    (["--tau", "0"], "tau"),
    (["--tau", "-2"], "tau"),
    (["--lam", "-0.1"], "lam"),
    (["--batch-size", "0"], "batch_size"),
    (["--lr", "0"], "lr"),
    (["--neuron-tau", "1.0"], "neuron_tau"),
    (["--epochs", "ten"], "epochs"),
    (["--dataset", "cifar10"], "data-dir"),
    (["--dataset", "cifar10", "--data-dir", "{dir}/nowhere"], "nowhere"),
    (["--dataset", "cifar10", "--data-dir", "{dir}/cifar"], "not a CIFAR python batch"),
    (["--dataset", "imagefolder", "--data-dir", "{dir}/no_images"], "no images"),
    (["--config", "{dir}/bad.toml"], "malformed TOML"),
    (["--config", "{dir}/typo.toml"], "unknown key 'lerning_rate'"),
    (["--config", "{dir}/near.toml"], "did you mean 'timesteps'"),
    (["--config", "{dir}/type.toml"], "epochs"),
    (["--config", "{dir}/none.toml"], "not found"),
    (["--teacher", "{dir}/missing.pt"], "no such checkpoint"),
    (["--teacher", "{dir}/empty.pt"], "empty"),
    (["--teacher", "{dir}/truncated.pt"], "not a readable PyTorch file"),
    (["--teacher", "{dir}/text.pt"], "not a readable PyTorch file"),
    (["--teacher", "{dir}/plain_state.pt"], "not a neurokd checkpoint"),
    (["--teacher", "{dir}/v99.pt"], "version 99"),
    (["--teacher", "{dir}/evil.pt"], "refused"),
    (["--teacher", "{dir}/evil.pkl"], "refused"),
    (["--dataset", "mnist1d", "--teacher", "{teacher}"], "teacher was trained on input"),
    (["--resume", "{dir}/no_config_run"], "nothing to resume"),
    (["--resume", "{dir}/no_config_run", "--epochs", "3"], "drop --epochs"),
    (["--preset", "cifar10-resnet91"], "did you mean 'cifar10-resnet19'"),
    (["--name", "a/b"], "name"),
]


@pytest.mark.parametrize("args, contains", DISTILL_CASES)
def test_distill_bad_input(args, contains, files, capsys, monkeypatch):
    folder = files["dir"]
    monkeypatch.chdir(folder)
    args = [a.format(dir=folder, teacher=files["teacher"]) for a in args]
    named = "--name" in args or "--resume" in args
    outcome = run_cli(capsys, "distill", *args) if named else \
        run_cli(capsys, "distill", "--name", "bad", *args)
    assert_one_line_error(outcome, 2, contains)
    assert not (folder / "runs" / "bad").exists()
    assert not (folder / "PWNED").exists()  # the crafted pickles ran no code


def test_cuda_request_without_cuda_is_an_input_error(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(run_cli(capsys, "distill", "--device", "cuda"), 2, "no CUDA device")


EXPORT_CASES = [
    (["--target", "onnx", "{dir}/missing.pt"], 2, "no such checkpoint"),
    (["--target", "onnx", "{dir}/empty.pt"], 2, "empty"),
    (["--target", "nir", "{dir}/truncated.pt"], 2, "not a readable PyTorch file"),
    (["--target", "onnx", "{dir}/plain_state.pt"], 2, "not a neurokd checkpoint"),
    (["--target", "onnx", "{teacher}"], 2, "not a neurokd checkpoint"),
    (["--target", "onnx", "{dir}/evil.pt"], 2, "refused"),
    (["--target", "tflite", "{good}"], 2, "target"),
    (["--target", "onnx", "{good}", "-o", "{dir}/a_file/sub/x.onnx"], 1, "cannot write"),
    (["--target", "onnx", "{good}", "--check-samples", "0"], 2, "check-samples"),
    (["--target", "onnx", "--model", "torch.nn:MaxPool2d", "--input-shape", "1,8,8",
      "--timesteps", "2"], 2, "MaxPool2d() failed"),
    (["--target", "nir", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
      "--timesteps", "2"], 2, "pool"),
    (["--target", "onnx", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
      "--timesteps", "2", "--weights", "{dir}/plain_state.pt"], 2, "do not fit"),
    (["--target", "loihi", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
      "--timesteps", "2"], 2, "2 (MaxPool2d: netx has no pooling layer"),
    (["--target", "loihi", "{good}", "-o", "{dir}/a_file/sub/x.net"], 1, "cannot write"),
    (["--target", "onnx", "{good}", "--lava-samples", "4"], 2,
     "--lava-samples works with --target loihi only"),
    (["--target", "nir", "{good}", "--lava-samples", "0"], 2,
     "--lava-samples works with --target loihi only"),
]


@pytest.mark.parametrize("args, code, contains", EXPORT_CASES)
def test_export_bad_input(args, code, contains, files, capsys, monkeypatch):
    folder = files["dir"]
    monkeypatch.chdir(folder)
    args = [a.format(dir=folder, good=files["good"], teacher=files["teacher"]) for a in args]
    if "-o" not in args:
        args += ["-o", str(folder / "out.onnx")]
    outcome = run_cli(capsys, "export", *args)
    assert_one_line_error(outcome, code, contains)
    assert not (folder / "out.onnx").exists()
    assert not (folder / "PWNED").exists()
    _no_temp_files(folder)


@pytest.fixture(scope="module")
def exports(trained_run, tmp_path_factory) -> Path:
    """A good Loihi export and broken variants of it, and broken ONNX files."""
    import shutil

    import h5py

    from neurokd.exporters import export_loihi, export_onnx

    folder = tmp_path_factory.mktemp("exports")
    good = folder / "good.net"
    export_loihi(trained_run / "student.pt", good, max_samples=32, lava_samples=0)
    for name in ("reshaped.net", "v99.net", "foreign.net", "short_names.net", "t0.net",
                 "no_type.net", "no_range.net"):
        shutil.copy(good, folder / name)
    with h5py.File(folder / "reshaped.net", "r+") as handle:  # a damaged weight array
        weight = handle["layer/2/weight"][()]
        del handle["layer/2/weight"]
        handle["layer/2/weight"] = weight[:, :8]
    with h5py.File(folder / "v99.net", "r+") as handle:
        handle.attrs["neurokd.version"] = "99"
    with h5py.File(folder / "short_names.net", "r+") as handle:
        handle.attrs["neurokd.layer_names"] = '["features.0"]'
    with h5py.File(folder / "t0.net", "r+") as handle:
        handle.attrs["neurokd.timesteps"] = "0"
    with h5py.File(folder / "no_range.net", "r+") as handle:
        handle.attrs["neurokd.input_min"] = "300"
    with h5py.File(folder / "no_type.net", "r+") as handle:
        del handle["layer/2/type"]
        handle["layer/2/type"] = np.array([], dtype="S10")
    with h5py.File(folder / "foreign.net", "r+") as handle:  # a netx file from elsewhere
        for key in list(handle.attrs):
            del handle.attrs[key]
    (folder / "garbage.onnx").write_bytes(b"\x08\x07garbage that is not protobuf")
    export_onnx(trained_run / "student.pt", folder / "teacher.onnx", teacher=True,
                max_samples=16)
    return folder


SIMULATE_CASES = [
    (["{dir}/missing.net"], 2, "no such export file"),
    (["{dir}/text.pt"], 2, "cannot read the netx file"),
    (["{good}"], 2, "cannot read the netx file"),
    (["{dir}/missing.net", "--samples", "0"], 2, "samples"),
    (["{dir}/missing.net", "--backend", "tflite"], 2, "backend"),
    (["{exports}/reshaped.net"], 2, "layer features.3: weight shape (32, 8, 3, 3)"),
    (["{exports}/v99.net"], 2, "version 99 is not supported"),
    (["{exports}/foreign.net"], 2, "no neurokd metadata"),
    (["{exports}/short_names.net"], 2, "4 layers but 1 layer names"),
    (["{exports}/t0.net"], 2, "timesteps must be >= 1"),
    (["{exports}/no_range.net"], 2, "input range 300.."),
    (["{exports}/no_type.net"], 2, "cannot read the netx file (IndexError"),
    (["{exports}/good.net", "--dataset", "mnist1d"], 2, "the export expects (1, 8, 8)"),
    (["{exports}/garbage.onnx", "--backend", "onnx"], 2, "not a readable ONNX file"),
    (["{exports}/teacher.onnx", "--backend", "onnx"], 2, "not a student"),
]


@pytest.mark.parametrize("args, code, contains", SIMULATE_CASES)
def test_simulate_bad_input(args, code, contains, files, exports, capsys, monkeypatch):
    folder = files["dir"]
    monkeypatch.chdir(folder)
    args = [a.format(dir=folder, good=files["good"], exports=exports) for a in args]
    outcome = run_cli(capsys, "simulate", "--quiet", *args, "--save", str(folder / "r.npz"))
    assert_one_line_error(outcome, code, contains)
    assert not (folder / "r.npz").exists()
    _no_temp_files(folder)


ENERGY_CASES = [
    (["{dir}/empty.pt"], 2, "empty"),
    (["{dir}/truncated.pt"], 2, "not a readable PyTorch file"),
    (["{dir}/evil.pt"], 2, "refused"),
    (["{teacher}"], 2, "not a neurokd checkpoint"),
    (["{good}", "--profile", "loihi2"], 2, "unknown energy profile"),
    (["{good}", "--profile", "{dir}/bad.toml"], 2, "malformed TOML"),
    (["{good}", "--profile", "{dir}/near.toml"], 2, "unknown profile key 'timestep'"),
    (["{good}", "--from-lava", "{dir}/text.pt"], 2, "not a readable .npz"),
    (["{good}", "--samples", "0"], 2, "samples"),
    (["{good}", "--json", "{dir}/a_file/sub/x.json"], 1, "cannot write"),
]


@pytest.mark.parametrize("args, code, contains", ENERGY_CASES)
def test_energy_bad_input(args, code, contains, files, capsys, monkeypatch):
    folder = files["dir"]
    monkeypatch.chdir(folder)
    args = [a.format(dir=folder, good=files["good"], teacher=files["teacher"]) for a in args]
    outcome = run_cli(capsys, "energy", "report", "--quiet", "--samples", "8", *args)
    assert_one_line_error(outcome, code, contains)
    assert not (folder / "PWNED").exists()
    _no_temp_files(folder)


def test_disk_full_keeps_the_previous_file_and_leaves_no_temp(files, capsys, monkeypatch):
    import os

    folder = files["dir"]
    target = folder / "student.onnx"
    target.write_bytes(b"previous export")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    outcome = run_cli(capsys, "export", "--target", "onnx", str(files["good"]), "-o",
                      str(target), "--check-samples", "16")
    assert_one_line_error(outcome, 1, "No space left on device")
    assert target.read_bytes() == b"previous export"
    _no_temp_files(folder)


def test_debug_shows_the_traceback(files, capsys):
    from neurokd.errors import CheckpointError

    with pytest.raises(CheckpointError):
        run_cli(capsys, "--debug", "export", "--target", "onnx", str(files["dir"] / "empty.pt"))
