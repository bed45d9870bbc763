"""Bad input across all commands, in one table: exit 2 (input) or 1 (runtime), one stderr line,
no traceback, nothing written."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
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
        "                         layer.MaxPool2d(2), layer.Flatten(), layer.Linear(64, 10))\n")
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


def case(command: str, *args: str, code: int = 2, contains: str, id: str, slow: bool = False):
    """One row: ``neurokd COMMAND ARGS`` must fail with ``code`` and one line containing
    ``contains``. ``{dir}`` is the folder of broken files, ``{good}`` a trained checkpoint,
    ``{teacher}`` its teacher.pt, ``{exports}`` a folder of good and damaged exports,
    ``{teacher_onnx}`` the teacher's ONNX export."""
    return pytest.param(command.split(), list(args), code, contains, id=f"{command}:{id}",
                        marks=[pytest.mark.slow] if slow else [])


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
    case("distill", "--augment", contains="digits has no augmentation", id="augment-digits"),
    case("distill", "--train-fraction", "0", contains="train_fraction", id="train-fraction-zero"),
    case("distill", "--train-fraction", "1.5", contains="train_fraction",
         id="train-fraction-high"),
    case("distill", "--train-fraction", "nan", contains="train_fraction",
         id="train-fraction-nan"),
    case("distill", "--train-fraction", "0.005", contains="cannot draw a stratified share",
         id="train-fraction-too-few"),
    case("distill", "--dataset", "cifar10", contains="data-dir", id="cifar-no-dir"),
    case("distill", "--dataset", "cifar10", "--data-dir", "{dir}/nowhere", contains="nowhere",
         id="cifar-missing-dir"),
    case("distill", "--dataset", "cifar10", "--data-dir", "{dir}/cifar",
         contains="not a CIFAR python batch", id="cifar-garbage"),
    case("distill", "--dataset", "imagefolder", "--data-dir", "{dir}/no_images",
         contains="no images", id="imagefolder-empty"),
    case("distill", "--dataset", "imagefolder", "--data-dir", "{dir}/nowhere",
         contains="class sub-folders", id="imagefolder-missing"),
    # event data sets: folders, layouts, damaged files, options that do not apply
    case("distill", "--dataset", "nmnist", contains="needs --data-dir", id="nmnist-no-dir"),
    case("distill", "--dataset", "nmnist", "--data-dir", "{dir}/nowhere",
         contains="nowhere (expected DIR/Train/<digit>/*.bin", id="nmnist-missing-dir"),
    case("distill", "--dataset", "nmnist", "--data-dir", "{dir}/no_images",
         contains="no_images/Train (expected DIR/Train/<digit>/*.bin", id="nmnist-layout"),
    case("distill", "--dataset", "dvsgesture", "--data-dir", "{dir}/no_images",
         contains="trials_to_train.txt (expected DIR/DvsGesture/", id="gesture-layout"),
    case("distill", "--dataset", "cifar10dvs", "--data-dir", "{dir}/no_images",
         contains="no class folder", id="cifar10dvs-layout"),
    case("distill", "--dataset", "nmnist", "--data-dir", "{dir}/nmnist_corrupt",
         contains="corrupt N-MNIST file", id="nmnist-corrupt"),
    case("distill", "--dataset", "dvsgesture", "--data-dir", "{dir}/gesture_corrupt",
         contains="corrupt AEDAT 3.1 file", id="gesture-corrupt"),
    case("distill", "--dataset", "cifar10dvs", "--data-dir", "{dir}/cifar10dvs_corrupt",
         contains="corrupt AEDAT 2.0 file", id="cifar10dvs-corrupt"),
    case("distill", "--dataset", "digits-dvs", "--encoding", "rate", contains="spikes already",
         id="encoding-on-events"),
    case("distill", "--dataset", "nmnist", "--data-dir", "{dir}/nmnist_corrupt", "--encoding",
         "direct", contains="spikes already", id="encoding-direct-on-events"),
    case("distill", "--encoding", "poisson", contains="encoding", id="encoding-unknown"),
    case("distill", "--event-size", "4", contains="applies to event data sets",
         id="event-size-static"),
    case("distill", "--dataset", "digits-dvs", "--event-size", "7",
         contains="event_size must divide the 20x20 sensor", id="event-size-divide"),
    case("distill", "--dataset", "digits-dvs", "--event-size", "0",
         contains="event_size must divide", id="event-size-zero"),
    case("distill", "--event-frames", "counts", contains="applies to event data sets",
         id="event-frames-static"),
    case("distill", "--dataset", "digits-dvs", "--cache-dir", "{dir}/nowhere",
         contains="is not a folder", id="cache-dir-missing"),
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
    case("distill", "--dataset", "cifar10", "--data-dir", "{dir}/nowhere", "--teacher",
         "{teacher}", contains="but cifar10 has [3, 32, 32] and 10",
         id="teacher-other-data-before-loading"),
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
         "1,8,8", "--timesteps", "4", "--random-weights", contains="cannot import 'nomodule_xyz'",
         id="model-import"),
    case("export", "--target", "onnx", "--model", "torch.nn:Identity", "--random-weights",
         contains="--input-shape", id="model-no-shape"),
    case("export", "--target", "onnx", "--model", "torch.nn:MaxPool2d", "--input-shape",
         "1,8,8", "--timesteps", "2", "--random-weights", contains="MaxPool2d() failed",
         id="model-fails"),
    case("export", "--target", "onnx", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", "--random-weights", contains="--random-inputs", id="model-no-data"),
    case("export", "--target", "onnx", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", "--random-inputs",
         contains="--model usermodels:pooled without --weights would use the random initial "
         "weights its builder makes: give --weights W.pt (a state_dict), or --random-weights",
         id="model-needs-weights"),
    case("export", "--target", "onnx", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", "--weights", "{dir}/plain_state.pt", "--random-weights",
         contains="give --weights W.pt or --random-weights, not both", id="random-and-weights"),
    case("export", "--target", "onnx", "{good}", "--random-weights",
         contains="--random-weights is for --model", id="random-weights-checkpoint"),
    case("export", "--target", "onnx", "--model", "usermodels:pooled", "--input-shape", "3,8,8",
         "--timesteps", "2", "--random-weights", "--random-inputs",
         contains="--input-shape 3,8,8 does not fit usermodels:pooled: its first layer '0' "
         "(Conv2d) takes C,H,W with C = 1 input channels", id="model-input-channels"),
    case("export", "--target", "onnx", "--model", "usermodels:pooled", "--input-shape", "8,8",
         "--timesteps", "2", "--random-weights", "--random-inputs",
         contains="--input-shape 8,8 does not fit usermodels:pooled: its first layer '0' "
         "(Conv2d) takes C,H,W", id="model-input-rank"),
    case("export", "--target", "onnx", "--model", "usermodels:pooled", "--input-shape",
         "1,100000,100000", "--timesteps", "2", "--random-weights", "--random-inputs",
         contains="holds 10,000,000,000 values per sample", id="model-input-huge"),
    case("export", "--target", "onnx", "--model", "usermodels:pooled", "--input-shape", "1,6,6",
         "--timesteps", "2", "--random-weights", "--random-inputs",
         contains="--input-shape 1,6,6 does not fit usermodels:pooled: a sample of that shape "
         "fails in it (mat1 and mat2 shapes cannot be multiplied", id="model-input-size"),
    case("export", "--target", "nir", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", "--random-inputs", "--random-weights", contains="pool",
         id="nir-maxpool"),
    case("export", "--target", "onnx", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", "--weights", "{dir}/plain_state.pt", contains="do not fit",
         id="model-weights"),
    case("export", "--target", "loihi", "--model", "usermodels:pooled", "--input-shape",
         "1,8,8", "--timesteps", "2", "--random-inputs", "--random-weights",
         contains="2 (MaxPool2d: netx has no pooling layer", id="loihi-maxpool"),
    # NIR files as sources: untrusted input, refused naming the node
    case("export", "--target", "onnx", "{dir}/unknown_node.nir", "--random-inputs",
         contains="node 'delay' has type 'Delay', which neurokd does not read",
         id="nir-unknown-node"),
    case("export", "--target", "loihi", "{dir}/recurrent.nir", "--random-inputs",
         contains="recurrent edge", id="nir-recurrent-edge"),
    case("energy report", "{dir}/bad_shapes.nir", "--random-inputs",
         contains="node 'fc' (Affine): weight (4, 9) takes (9,) inputs, gets (8,)",
         id="nir-inconsistent-shapes"),
    case("export", "--target", "onnx", "{dir}/no_timesteps.nir", "--random-inputs",
         contains="no timesteps (snnTorch, Norse and spikingjelly do not write it): give "
         "--timesteps T", id="nir-missing-metadata"),
    case("export", "--target", "onnx", "{dir}/dangling_edge.nir", "--random-inputs",
         contains="Edge ('spiking', 'nowhere') references destination node 'nowhere'",
         id="nir-dangling-edge"),
    case("export", "--target", "onnx", "{dir}/text.nir", "--random-inputs",
         contains="not a NIR file", id="nir-not-hdf5"),
    case("export", "--target", "onnx", "{dir}/no_timesteps.nir", "--timesteps", "2",
         "--nir-dt", "0", contains="--nir-dt", id="nir-dt-zero"),
    case("export", "--target", "nir", "{dir}/no_timesteps.nir", "--timesteps", "2",
         "--random-inputs", "--weights", "{dir}/plain_state.pt",
         contains="--weights is for --model", id="nir-weights"),
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
    case("simulate", "{exports}/t0.net", contains="neurokd.timesteps must be a whole number",
         id="t0"),
    case("simulate", "{exports}/no_range.net", contains="the input range is empty", id="no-range"),
    case("simulate", "{exports}/no_type.net", contains="cannot read the netx file (IndexError",
         id="no-type"),
    case("simulate", "{exports}/good.net", "--dataset", "mnist1d",
         contains="the model takes (1, 8, 8)", id="other-data"),
    case("simulate", "{exports}/good.net", "--dataset", "cifar10", "--data-dir",
         "{dir}/nowhere", contains="cifar10 samples have shape (3, 32, 32), the model takes",
         id="other-data-before-loading"),
    case("simulate", "{exports}/garbage.onnx", contains="not a readable ONNX file",
         id="garbage-onnx"),
    case("simulate", "{teacher_onnx}", contains="not a student", id="teacher-onnx",
         slow=True),  # a dynamo export
    case("simulate", "{exports}/nospikes.onnx", contains="--spikes", id="onnx-no-spikes"),
    # plot: the run's metrics.json is input too
    case("plot", "{dir}/no_config_run", contains="no metrics.json", id="no-metrics"),
    case("plot", "{dir}/metrics_garbage", contains="not JSON", id="garbage"),
    case("plot", "{dir}/metrics_list", contains="no 'history' list", id="list"),
    case("plot", "{dir}/metrics_empty", contains="holds no epochs", id="empty"),
    case("plot", "{dir}/metrics_nan", contains="history[0].loss must be a finite number",
         id="nan"),
    case("plot", "{dir}/metrics_terms", contains="history[0].terms must map names", id="terms"),
    case("plot", "{dir}/metrics_empty", "-o", "{dir}/nowhere/p.png", contains="no folder",
         id="output-folder"),
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
    case("energy report", "{good}", "--energy-model", "lemaire", contains="--energy-model",
         id="energy-model-unknown"),
    case("energy report", "{good}", "--energy-model", "memory", "--profile",
         "{dir}/compute_only.toml", contains="lacks address_add_pj, address_mac_pj, sram_8kib_pj",
         id="profile-lacks-memory-cost"),
    case("energy report", "{good}", "--profile", "{dir}/bad_layout.toml",
         contains="memory_layout must be one of", id="profile-memory-layout"),
    case("energy report", "--from-sim", "{dir}/v2.npz", "--neurobench",
         contains="--neurobench needs the checkpoint", id="neurobench-without-model"),
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
         "--timesteps", "2", "--ann", "teacher", "--random-inputs", "--random-weights",
         contains="no teacher", id="model-no-teacher"),
    case("energy report", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", "--random-weights", contains="--random-inputs",
         id="model-no-data"),
    case("energy report", "--model", "usermodels:pooled", "--input-shape", "1,8,8",
         "--timesteps", "2", "--random-inputs",
         contains="without --weights would use the random initial weights", id="model-weights"),
    case("energy report", "{good}", "--random-weights", contains="--random-weights is for --model",
         id="random-weights-checkpoint"),
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
