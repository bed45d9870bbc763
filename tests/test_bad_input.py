"""Bad input across all commands, in one table (bad_input_cases.py): exit 2 (input) or 1
(runtime), one stderr line, no traceback, nothing written."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_input_cases import CASES
from event_writers import write_corrupt_event_sets

from helpers import assert_one_line_error, run_cli


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob("*.tmp")], list(folder.rglob("*.tmp"))


@pytest.fixture
def files(broken_files: Path, trained_run: Path, tmp_path: Path) -> dict[str, Path]:
    """A fresh copy of the broken files for each test (a test that wrongly writes into its
    folder cannot change what the next one reads), the trained checkpoint and its teacher."""
    folder = tmp_path / "files"  # hard links: the names are the test's own, and fast
    shutil.copytree(broken_files, folder, symlinks=True, copy_function=os.link)
    return {"good": trained_run / "student.pt", "teacher": trained_run / "teacher.pt",
            "dir": folder, "canary": broken_files / "PWNED"}


@pytest.fixture(scope="module")
def broken_files(trained_run: Path, tmp_path_factory) -> Path:
    """Every kind of broken file the commands below are given, written once per module. The
    crafted pickles would create ``PWNED`` here if they ran."""
    tmp_path = tmp_path_factory.mktemp("broken-files")
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
    write_corrupt_event_sets(tmp_path)
    for name, text in (("garbage", "{not json"), ("list", "[1, 2]"), ("empty", '{"history": []}'),
                       ("nan", '{"history": [{"epoch": 1, "loss": NaN, "val_accuracy": 0.5}]}'),
                       ("terms", '{"history": [{"epoch": 1, "loss": 1, "val_accuracy": 0.5, '
                                 '"terms": {"ce": "x"}}]}')):
        (tmp_path / f"metrics_{name}").mkdir()
        (tmp_path / f"metrics_{name}" / "metrics.json").write_text(text)
    torch.save({"format": "something.else", "version": 1}, tmp_path / "other.pt")
    (tmp_path / "typo_profile.toml").write_text('name = "x"\nsynop = 1\n')
    (tmp_path / "partial.toml").write_text('name = "x"\nmac_pj = 1\nsource = "a test"\n')
    (tmp_path / "compute_only.toml").write_text(  # prices compute, not memory
        'name = "x"\nmac_pj = 1\nsynop_pj = 1\nneuron_update_pj = 1\nsource = "a test"\n')
    (tmp_path / "bad_layout.toml").write_text(
        'name = "x"\nmac_pj = 1\nsource = "a test"\nmemory_layout = "int4"\n')
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
        "                         layer.MaxPool2d(2), layer.Flatten(), layer.Linear(64, 10))\n"
        "def input_pooled():\n"
        "    return nn.Sequential(layer.MaxPool2d(2), layer.Conv2d(1, 4, 3, padding=1),\n"
        "                         neuron.LIFNode(), layer.Flatten(), layer.Linear(64, 10))\n")
    _nir_files(tmp_path)
    return tmp_path


def _nir_files(folder: Path) -> None:
    """NIR graphs neurokd must refuse, naming the node: written by nir itself, so only the
    one flaw differs from a good file."""
    import nir

    def graph(nodes: dict, edges=None, timesteps=True):
        names = list(nodes)
        return nir.NIRGraph(nodes=nodes, edges=edges or list(zip(names, names[1:], strict=False)),
                            metadata={"timesteps": 2} if timesteps else {}, type_check=False)

    def lif(n: int):
        return nir.LIF(tau=np.full(n, 5e-4), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n))

    def nodes(**extra):
        return {"input": nir.Input(input_type={"input": np.array([8])}),
                "fc": nir.Affine(np.ones((4, 8), np.float32), np.zeros(4, np.float32)),
                "spiking": lif(4), **extra,
                "output": nir.Output(output_type={"output": np.array([4])})}

    (folder / "text.nir").write_text("not a NIR file\n")
    nir.write(folder / "unknown_node.nir", graph(nodes(delay=nir.Delay(np.ones(4)))))
    loop = nodes(back=nir.Linear(np.ones((4, 4), np.float32)))
    nir.write(folder / "recurrent.nir", graph(loop, [("input", "fc"), ("fc", "spiking"),
                                                     ("spiking", "back"), ("back", "spiking"),
                                                     ("spiking", "output")]))
    wrong = nodes()
    wrong["fc"] = nir.Affine(np.ones((4, 9), np.float32), np.zeros(4, np.float32))
    nir.write(folder / "bad_shapes.nir", graph(wrong))
    nir.write(folder / "no_timesteps.nir", graph(nodes(), timesteps=False))
    nir.write(folder / "dangling_edge.nir", graph(nodes(), [("input", "fc"), ("fc", "spiking"),
                                                            ("spiking", "output"),
                                                            ("spiking", "nowhere")]))


@pytest.fixture(scope="module")
def exports(trained_exports, tmp_path_factory) -> Path:
    """A good Loihi export and broken variants of it, and broken ONNX files."""

    import h5py

    folder = tmp_path_factory.mktemp("exports")
    good = folder / "good.net"
    shutil.copy(trained_exports / "student.net", good)
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
    shutil.copy(trained_exports / "student.onnx", folder / "nospikes.onnx")
    return folder


@pytest.mark.parametrize("command, args, code, contains", CASES)
def test_bad_input(command, args, code, contains, files, capsys, monkeypatch, request):
    """Exit ``code``, one stderr line, no traceback, and nothing written anywhere: the folder
    holds exactly the files it held before, and the crafted pickles ran no code."""
    folder = files["dir"]
    monkeypatch.chdir(folder)
    places = {"dir": folder, "good": files["good"], "teacher": files["teacher"]}
    if any("{exports}" in a for a in args):
        places["exports"] = request.getfixturevalue("exports")
    if any("{teacher_onnx}" in a for a in args):
        places["teacher_onnx"] = request.getfixturevalue("trained_exports") / "teacher.onnx"
    args = [a.format(**places) for a in args]
    if command == ["distill"] and "--name" not in args and "--resume" not in args:
        args = ["--name", "bad", *args]
    if command == ["export"] and "-o" not in args:  # never beside the trained checkpoint
        args += ["-o", str(folder / "out.onnx")]
    if command == ["energy", "report"]:
        args = ["--samples", "8", *args]
    before = sorted(folder.rglob("*"))
    quiet = ["--quiet"] if _takes_quiet(command) else []
    outcome = run_cli(capsys, *command, *quiet, *args)
    assert_one_line_error(outcome, code, contains)
    assert sorted(folder.rglob("*")) == before
    assert not (folder / "PWNED").exists() and not files["canary"].exists()


def _takes_quiet(command: list[str]) -> bool:
    import click

    from neurokd.cli import cli

    found = cli
    for name in command:
        found = found.get_command(click.Context(found), name)
    return any(p.name == "quiet" for p in found.params)


def test_cuda_request_without_cuda_is_an_input_error(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(run_cli(capsys, "distill", "--device", "cuda"), 2, "no CUDA device")


def test_disk_full_keeps_the_previous_file_and_leaves_no_temp(files, capsys, monkeypatch):

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
