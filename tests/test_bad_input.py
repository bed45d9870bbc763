"""Bad input across all commands, in one table: exit 2 (input) or 1 (runtime), one stderr line,
no traceback, nothing written."""

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
    torch.save({"format": "something.else", "version": 1}, tmp_path / "other.pt")
    (tmp_path / "typo_profile.toml").write_text('name = "x"\nsynop = 1\n')
    (tmp_path / "partial.toml").write_text('name = "x"\nmac_pj = 1\nsource = "a test"\n')
    (tmp_path / "not.npz").write_text("not a zip")
    np.savez(tmp_path / "wrong.npz", format=np.array("other"), version=np.array(1))
    header = dict(backend="lava", samples=1, timesteps=1, layer_names=["a"],
                  layer_types=["dense"])
    np.savez(tmp_path / "v2.npz", **{k: np.array(v) for k, v in dict(
        format="neurokd.spike-counts", version=2, **header).items()})
    np.savez(tmp_path / "nolayer.npz", **{k: np.array(v) for k, v in dict(
        format="neurokd.lava-result", version=1, **header).items()})
    (tmp_path / "usermodels.py").write_text(
        "from spikingjelly.activation_based import layer, neuron\n"
        "from torch import nn\n"
        "def pooled():\n"
        "    return nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), neuron.LIFNode(),\n"
        "                         layer.MaxPool2d(2), layer.Flatten(), layer.Linear(64, 10))\n")
    return {"good": good, "teacher": trained_run / "teacher.pt", "dir": tmp_path}


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
    export_onnx(trained_run / "student.pt", folder / "nospikes.onnx", max_samples=16,
                dynamo=False)
    return folder


def case(command: str, *args: str, code: int = 2, contains: str, id: str):
    """One row: ``neurokd COMMAND ARGS`` must fail with ``code`` and one line containing
    ``contains``. ``{dir}`` is the folder of broken files, ``{good}`` a trained checkpoint,
    ``{teacher}`` its teacher.pt, ``{exports}`` a folder of good and damaged exports."""
    return pytest.param(command.split(), list(args), code, contains, id=f"{command}:{id}")


CASES = [
    # distill: options, TOML files, data folders, teacher files
    case("distill", "--method", "bogus", contains="method", id="method"),
    case("distill", "--dataset", "mnist", contains="dataset", id="dataset"),
    case("distill", "--epochs", "-1", contains="epochs", id="epochs-negative"),
    case("distill", "--epochs", "0", contains="epochs", id="epochs-zero"),
    case("distill", "--epochs", "ten", contains="epochs", id="epochs-text"),
    case("distill", "--timesteps", "0", contains="timesteps", id="timesteps"),
    case("distill", "--alpha", "1.5", contains="alpha", id="alpha-high"),
    case("distill", "--alpha", "-0.1", contains="alpha", id="alpha-negative"),
    case("distill", "--tau", "0", contains="tau", id="tau-zero"),
    case("distill", "--tau", "-2", contains="tau", id="tau-negative"),
    case("distill", "--lam", "-0.1", contains="lam", id="lam"),
    case("distill", "--batch-size", "0", contains="batch_size", id="batch-size"),
    case("distill", "--lr", "0", contains="lr", id="lr"),
    case("distill", "--neuron-tau", "1.0", contains="neuron_tau", id="neuron-tau"),
    case("distill", "--name", "a/b", contains="name", id="name"),
    case("distill", "--dataset", "cifar10", contains="data-dir", id="cifar-no-dir"),
    case("distill", "--dataset", "cifar10", "--data-dir", "{dir}/nowhere", contains="nowhere",
         id="cifar-missing-dir"),
    case("distill", "--dataset", "cifar10", "--data-dir", "{dir}/cifar",
         contains="not a CIFAR python batch", id="cifar-garbage"),
    case("distill", "--dataset", "imagefolder", "--data-dir", "{dir}/no_images",
         contains="no images", id="imagefolder-empty"),
    case("distill", "--dataset", "imagefolder", "--data-dir", "{dir}/nowhere",
         contains="class sub-folders", id="imagefolder-missing"),
    case("distill", "--config", "{dir}/bad.toml", contains="malformed TOML", id="toml-syntax"),
    case("distill", "--config", "{dir}/typo.toml", contains="unknown key 'lerning_rate'",
         id="toml-unknown-key"),
    case("distill", "--config", "{dir}/near.toml", contains="did you mean 'timesteps'",
         id="toml-near-miss"),
    case("distill", "--config", "{dir}/type.toml", contains="epochs", id="toml-type"),
    case("distill", "--config", "{dir}/none.toml", contains="not found", id="toml-missing"),
    case("distill", "--teacher", "{dir}/missing.pt", contains="no such checkpoint",
         id="teacher-missing"),
    case("distill", "--teacher", "{dir}/empty.pt", contains="empty", id="teacher-empty"),
    case("distill", "--teacher", "{dir}/truncated.pt", contains="not a readable PyTorch file",
         id="teacher-truncated"),
    case("distill", "--teacher", "{dir}/text.pt", contains="not a readable PyTorch file",
         id="teacher-text"),
    case("distill", "--teacher", "{dir}/plain_state.pt", contains="not a neurokd checkpoint",
         id="teacher-state-dict"),
    case("distill", "--teacher", "{dir}/v99.pt", contains="version 99", id="teacher-v99"),
    case("distill", "--teacher", "{dir}/evil.pt", contains="refused", id="teacher-evil-pt"),
    case("distill", "--teacher", "{dir}/evil.pkl", contains="refused", id="teacher-evil-pkl"),
    case("distill", "--dataset", "mnist1d", "--teacher", "{teacher}",
         contains="teacher was trained on input", id="teacher-other-data"),
    case("distill", "--resume", "{dir}/no_config_run", contains="nothing to resume",
         id="resume-nothing"),
    case("distill", "--resume", "{dir}/no_config_run", "--epochs", "3", contains="drop --epochs",
         id="resume-changed"),
    case("distill", "--preset", "cifar10-resnet91", contains="did you mean 'cifar10-resnet19'",
         id="preset"),
    # export: checkpoints, targets, options, user models, unwritable outputs
    case("export", "--target", "onnx", "{dir}/missing.pt", contains="no such checkpoint",
         id="missing"),
    case("export", "--target", "onnx", "{dir}/empty.pt", contains="empty", id="empty"),
    case("export", "--target", "nir", "{dir}/truncated.pt", contains="not a readable PyTorch",
         id="truncated"),
    case("export", "--target", "onnx", "{dir}/plain_state.pt",
         contains="not a neurokd checkpoint", id="state-dict"),
    case("export", "--target", "onnx", "{teacher}", contains="not a neurokd checkpoint",
         id="teacher-file"),
    case("export", "--target", "onnx", "{dir}/evil.pt", contains="refused", id="evil"),
    case("export", "--target", "tflite", "{good}", contains="target", id="target"),
    case("export", "--target", "onnx", contains="checkpoint", id="no-source"),
    case("export", "--target", "onnx", "{good}", "-o", "{dir}/a_file/sub/x.onnx", code=1,
         contains="cannot write", id="unwritable-onnx"),
    case("export", "--target", "loihi", "{good}", "-o", "{dir}/a_file/sub/x.net", code=1,
         contains="cannot write", id="unwritable-netx"),
    case("export", "--target", "onnx", "{good}", "-o", "{dir}/no/such/folder/x.onnx",
         contains="there is no folder", id="missing-output-folder"),
    case("export", "--target", "onnx", "{good}", "-o", "{dir}", contains="is a directory",
         id="output-is-folder"),
    case("export", "--target", "onnx", "{good}", "--check-samples", "0",
         contains="check-samples", id="check-samples"),
    case("export", "--target", "nir", "--teacher", "{good}", contains="--teacher",
         id="teacher-flag-nir"),
    case("export", "--target", "onnx", "{good}", "--lava-samples", "4",
         contains="--lava-samples works with --target loihi only", id="lava-samples-onnx"),
    case("export", "--target", "nir", "{good}", "--lava-samples", "0",
         contains="--lava-samples works with --target loihi only", id="lava-samples-nir"),
    case("export", "--target", "onnx", "--model", "nomodule_xyz:build", "--input-shape",
         "1,8,8", "--timesteps", "4", contains="nomodule_xyz", id="model-import"),
    case("export", "--target", "onnx", "--model", "torch.nn:Identity",
         contains="--input-shape", id="model-no-shape"),
    case("export", "--target", "onnx", "--model", "torch.nn:MaxPool2d", "--input-shape",
         "1,8,8", "--timesteps", "2", contains="MaxPool2d() failed", id="model-fails"),
    case("export", "--target", "onnx", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", contains="--random-inputs", id="model-no-data"),
    case("export", "--target", "nir", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", "--random-inputs", contains="pool", id="nir-maxpool"),
    case("export", "--target", "onnx", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", "--weights", "{dir}/plain_state.pt", contains="do not fit",
         id="model-weights"),
    case("export", "--target", "loihi", "--model", "usermodels:pooled", "--input-shape",
         "1,8,8", "--timesteps", "2", "--random-inputs",
         contains="2 (MaxPool2d: netx has no pooling layer", id="loihi-maxpool"),
    # simulate: missing, foreign and damaged exports
    case("simulate", "{dir}/missing.net", contains="no such export file", id="missing"),
    case("simulate", "{dir}/text.pt", "--backend", "lava", contains="cannot read the netx file",
         id="not-hdf5"),
    case("simulate", "{dir}/text.pt", contains="cannot tell the backend", id="unknown-suffix"),
    case("simulate", "{good}", "--backend", "lava", contains="cannot read the netx file",
         id="checkpoint"),
    case("simulate", "{dir}/missing.net", "--samples", "0", contains="samples", id="samples"),
    case("simulate", "{dir}/missing.net", "--backend", "tflite", contains="backend",
         id="backend"),
    case("simulate", "{exports}/reshaped.net",
         contains="layer features.3: conv input shape (16, 8, 8) does not fit 8 channels",
         id="reshaped"),
    case("simulate", "{exports}/v99.net", contains="version 99 is not supported", id="v99"),
    case("simulate", "{exports}/foreign.net", contains="no neurokd metadata", id="foreign"),
    case("simulate", "{exports}/short_names.net", contains="4 layers but 1 layer names",
         id="short-names"),
    case("simulate", "{exports}/t0.net", contains="timesteps must be >= 1", id="t0"),
    case("simulate", "{exports}/no_range.net", contains="input range 300..", id="no-range"),
    case("simulate", "{exports}/no_type.net", contains="cannot read the netx file (IndexError",
         id="no-type"),
    case("simulate", "{exports}/good.net", "--dataset", "mnist1d",
         contains="the model takes (1, 8, 8)", id="other-data"),
    case("simulate", "{exports}/garbage.onnx", contains="not a readable ONNX file",
         id="garbage-onnx"),
    case("simulate", "{exports}/teacher.onnx", contains="not a student", id="teacher-onnx"),
    case("simulate", "{exports}/nospikes.onnx", contains="--spikes", id="onnx-no-spikes"),
    # energy report
    case("energy report", "{dir}/empty.pt", contains="empty", id="empty"),
    case("energy report", "{dir}/truncated.pt", contains="not a readable PyTorch file",
         id="truncated"),
    case("energy report", "{dir}/evil.pt", contains="refused", id="evil"),
    case("energy report", "{teacher}", contains="not a neurokd checkpoint", id="teacher-file"),
    case("energy report", "{good}", "--profile", "loihi2", contains="unknown energy profile",
         id="profile-name"),
    case("energy report", "{good}", "--profile", "{dir}/bad.toml", contains="malformed TOML",
         id="profile-syntax"),
    case("energy report", "{good}", "--profile", "{dir}/near.toml",
         contains="unknown profile key 'timestep'", id="profile-key"),
    case("energy report", "{good}", "--from-sim", "{dir}/text.pt",
         contains="not a readable .npz", id="counts-not-npz"),
    case("energy report", "{good}", "--samples", "0", contains="samples", id="samples"),
    case("energy report", "{good}", "--profile", "45nm-fp23", contains="did you mean '45nm-fp32'",
         id="profile-near-miss"),
    case("energy report", "{good}", "--profile", "{dir}/typo_profile.toml",
         contains="unknown profile key 'synop'", id="profile-unknown-key"),
    case("energy report", "{good}", "--profile", "{dir}/missing.toml", contains="not found",
         id="profile-missing"),
    case("energy report", "{good}", "--profile", "{dir}/partial.toml", contains="lacks synop_pj",
         id="profile-partial"),
    case("energy report", "--from-sim", "{dir}/v2.npz", "--profile", "{dir}/partial.toml",
         contains="lacks synop_pj", id="profile-partial-before-file"),
    case("energy report", "{dir}/other.pt", contains="not a neurokd checkpoint",
         id="other-format"),
    case("energy report", "{dir}/missing.pt", contains="missing.pt", id="missing"),
    case("energy report", "{good}", "--from-lava", "{dir}/not.npz",
         contains="not a readable .npz", id="counts-not-zip"),
    case("energy report", "--from-sim", "{dir}/wrong.npz",
         contains="not a neurokd spike-count file", id="counts-other-format"),
    case("energy report", "--from-lava", "{dir}/v2.npz", contains="version 2",
         id="counts-version"),
    case("energy report", "--from-lava", "{dir}/nolayer.npz", contains="lacks geometry_0",
         id="counts-no-layer"),
    case("energy report", "--from-lava", "{dir}/none.npz", contains="no such result file",
         id="counts-missing"),
    case("energy report", "{good}", "--ann", "resnet", contains="--ann", id="ann"),
    case("energy report", "{good}", "--dataset", "mnist2", contains="unknown data set",
         id="dataset"),
    case("energy report", "{good}", "--dataset", "mnist1d", contains="shape",
         id="dataset-shape"),
    case("energy report", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", "--ann", "teacher", "--random-inputs", contains="no teacher",
         id="model-no-teacher"),
    case("energy report", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", contains="--random-inputs", id="model-no-data"),
    case("energy report", contains="give either a checkpoint", id="no-source"),
    case("energy report", "{good}", "--json", "{dir}/a_file/sub/x.json", code=1,
         contains="cannot write", id="unwritable-json"),
    case("energy report", "{good}", "--plot", "{dir}/nowhere/e.png",
         contains="there is no folder", id="plot-missing-folder"),
    case("simulate", "{exports}/good.net", "--json", "{dir}/nowhere/s.json",
         contains="there is no folder", id="json-missing-folder"),
]


@pytest.mark.parametrize("command, args, code, contains", CASES)
def test_bad_input(command, args, code, contains, files, capsys, monkeypatch, request):
    """Exit ``code``, one stderr line, no traceback, and nothing written anywhere: the folder
    holds exactly the files it held before, and the crafted pickles ran no code."""
    folder = files["dir"]
    monkeypatch.chdir(folder)
    places = {"dir": folder, "good": files["good"], "teacher": files["teacher"]}
    if any("{exports}" in a for a in args):
        places["exports"] = request.getfixturevalue("exports")
    args = [a.format(**places) for a in args]
    if command == ["distill"] and "--name" not in args and "--resume" not in args:
        args = ["--name", "bad", *args]
    if command == ["export"] and "-o" not in args:  # never beside the trained checkpoint
        args += ["-o", str(folder / "out.onnx")]
    if command == ["energy", "report"]:
        args = ["--samples", "8", *args]
    before = sorted(folder.rglob("*"))
    outcome = run_cli(capsys, *command, "--quiet", *args)
    assert_one_line_error(outcome, code, contains)
    assert sorted(folder.rglob("*")) == before
    assert not (folder / "PWNED").exists()


def test_cuda_request_without_cuda_is_an_input_error(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(run_cli(capsys, "distill", "--device", "cuda"), 2, "no CUDA device")


def test_disk_full_keeps_the_previous_file_and_leaves_no_temp(files, capsys, monkeypatch):
    import os

    folder = files["dir"]
    target = folder / "student.nir"
    target.write_bytes(b"previous export")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    outcome = run_cli(capsys, "export", "--target", "nir", str(files["good"]), "-o",
                      str(target), "--check-samples", "16")
    assert_one_line_error(outcome, 1, "No space left on device")
    assert target.read_bytes() == b"previous export"
    _no_temp_files(folder)


def test_debug_shows_the_traceback(files, capsys):
    from neurokd.errors import CheckpointError

    with pytest.raises(CheckpointError):
        run_cli(capsys, "--debug", "export", "--target", "onnx", str(files["dir"] / "empty.pt"))
