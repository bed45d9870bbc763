"""Issue 27, the last items of round 2: what is not a regular file inside the frames cache and
the other data folders, ``--from-sim`` or ``simulate`` given a FIFO, and link loops (and links
out) in an ImageFolder tree.

Every case: exit 2, one stderr line naming the file and what is wrong, nothing written. A FIFO
is a real one (``os.mkfifo``), opened for writing after 20 s by ``released`` (so a reader that
wrongly waits on it gets end-of-file and the test fails on its assertions instead of hanging
the run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_untrusted_paths import _distill, _nmnist, released

from neurokd.data import load_data
from neurokd.errors import DataError

from helpers import assert_one_line_error, run_cli

# --- the frames cache ------------------------------------------------------------------------


@pytest.fixture
def own_cache(tmp_path) -> tuple[Path, Path]:
    """digits-dvs built into a cache of its own: (the cache folder, its one key folder). Not
    named frames_cache: that name would override conftest's, which the autouse fixture sets
    for every test of the module (each would build a cache)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    load_data("digits-dvs", timesteps=2, cache_dir=cache)
    return cache, next(cache.iterdir())


def _distill_on(cache: Path, capsys, tmp_path: Path):
    outcome = run_cli(capsys, "distill", "--dataset", "digits-dvs", "--timesteps", "2",
                      "--cache-dir", str(cache), "--epochs", "1", "--teacher-epochs", "1",
                      "--out", str(tmp_path / "runs"), "--name", "r", "-q")
    assert not (tmp_path / "runs").exists(), "something was written"
    return outcome


@pytest.mark.parametrize("name", ["train.frames.npy", "train.labels.npy", "test.frames.npy",
                                  "test.labels.npy"])
def test_a_fifo_in_the_frames_cache_is_refused_not_waited_on(name, own_cache, capsys,
                                                             tmp_path):
    cache, folder = own_cache
    (folder / name).unlink()
    os.mkfifo(folder / name)
    with released(folder / name):
        outcome = _distill_on(cache, capsys, tmp_path)
    assert_one_line_error(outcome, 2, f"frames cache file {folder / name} is a FIFO (named "
                                      f"pipe), not a regular file; delete its folder {folder}")


def test_a_frames_cache_file_linked_to_dev_zero_is_refused(own_cache, capsys, tmp_path):
    cache, folder = own_cache
    (folder / "train.labels.npy").unlink()
    (folder / "train.labels.npy").symlink_to("/dev/zero")
    outcome = _distill_on(cache, capsys, tmp_path)
    assert_one_line_error(outcome, 2, f"{folder / 'train.labels.npy'} (a link to /dev/zero) "
                                      "is a character device")


def test_a_fifo_swapped_in_after_the_cache_was_opened_is_refused(own_cache):
    """The samples are read by offset from a descriptor opened on first use (and again in each
    forked loader worker): that open checks too."""
    from neurokd.data.frames import CachedFrames

    _, folder = own_cache
    frames = CachedFrames(folder, "test", binary=True)
    path = folder / "test.frames.npy"
    path.unlink()
    os.mkfifo(path)
    with released(path), pytest.raises(DataError, match=f"{path} is a FIFO"):
        frames[0]


def test_a_fifo_cifar_batch_is_refused_not_waited_on(cifar10_dir, capsys, tmp_path):
    batch = cifar10_dir / "cifar-10-batches-py" / "data_batch_3"
    batch.unlink()
    os.mkfifo(batch)
    with released(batch):
        outcome = run_cli(capsys, "distill", "--dataset", "cifar10", "--data-dir",
                          str(cifar10_dir), "--epochs", "1", "--teacher-epochs", "1", "-q",
                          "--out", str(tmp_path / "runs"), "--name", "x")
    assert_one_line_error(outcome, 2, f"CIFAR batch {batch} is a FIFO (named pipe), not a "
                                      "regular file")
    assert not (tmp_path / "runs").exists()


# --- energy report --from-sim ----------------------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (os.mkfifo, "is a FIFO (named pipe), not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "(a link to /dev/zero) is a character device"),
], ids=["fifo", "dev-zero"])
def test_from_sim_refuses_what_is_not_a_regular_file(make, words, tmp_path, capsys):
    path = tmp_path / "r.npz"
    make(path)
    with released(path):
        outcome = run_cli(capsys, "energy", "report", "--from-sim", str(path), "-q", "--json",
                          str(tmp_path / "e.json"))
    assert_one_line_error(outcome, 2, f"result file {path} {words}")
    assert not (tmp_path / "e.json").exists()


# --- simulate FILE.net (a netx chain or a graph file: both are opened by HDF5) ---------------

@pytest.mark.parametrize("make, words", [
    (os.mkfifo, "is a FIFO (named pipe), not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "(a link to /dev/zero) is a character device"),
], ids=["fifo", "dev-zero"])
def test_simulate_refuses_an_export_that_is_not_a_regular_file(make, words, tmp_path, capsys):
    path = tmp_path / "student.net"
    make(path)
    with released(path):
        outcome = run_cli(capsys, "simulate", str(path), "--samples", "2", "-q")
    assert_one_line_error(outcome, 2, f"export file {path} {words}")


# --- ImageFolder: links ----------------------------------------------------------------------

def _distill_images(root: Path, capsys, tmp_path: Path):
    outcome = run_cli(capsys, "distill", "--dataset", "imagefolder", "--data-dir", str(root),
                      "--image-size", "12", "--epochs", "1", "--teacher-epochs", "1", "-q",
                      "--out", str(tmp_path / "runs"), "--name", "x")
    assert not (tmp_path / "runs").exists(), "something was written"
    return outcome


def test_a_folder_linked_to_its_parent_is_a_loop(image_folder, capsys, tmp_path):
    """torchvision walks with followlinks=True: it went round until ELOOP, training on every
    image 40 times over."""
    loop = image_folder / "circle" / "again"
    loop.symlink_to("..", target_is_directory=True)
    outcome = _distill_images(image_folder, capsys, tmp_path)
    assert_one_line_error(outcome, 2, f"imagefolder: {loop} is a link to "
                                      f"{image_folder.resolve()}, a folder it lies in: a link "
                                      "loop")


def test_two_folders_linked_to_each_other_are_a_loop(image_folder):
    """No link points at a folder above itself, yet following them never ends."""
    (image_folder / "circle" / "to-square").symlink_to(image_folder / "square")
    (image_folder / "square" / "to-circle").symlink_to(image_folder / "circle")
    with pytest.raises(DataError, match="a folder it lies in: a link loop"):
        load_data("imagefolder", str(image_folder), augment=False, image_size=12)


@pytest.mark.parametrize("what", ["image", "class folder"])
def test_a_link_out_of_the_image_folder_is_refused(what, image_folder, capsys, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(image_folder / "square", outside)
    link = image_folder / "circle" / "x.png" if what == "image" else image_folder / "elsewhere"
    link.symlink_to(outside / "0.png" if what == "image" else outside)
    outcome = _distill_images(image_folder, capsys, tmp_path)
    assert_one_line_error(outcome, 2, f"imagefolder: {link} is a link to "
                                      f"{(outside / '0.png' if what == 'image' else outside)}"
                                      f", outside {image_folder}; a link in a data folder must "
                                      "stay inside it")


def test_links_that_stay_inside_the_image_folder_are_read(image_folder, tmp_path):
    """The rule refuses loops and links out, not every link: a release could use them. A link
    out to a file the reader never opens (not an image) is not followed, so not refused."""
    (image_folder / "circle" / "again.png").symlink_to(image_folder / "circle" / "0.png")
    (image_folder / "square" / "more").symlink_to(image_folder / "triangle")
    (image_folder / "README").symlink_to(tmp_path)  # a folder, but outside: refused below
    with pytest.raises(DataError, match="README is a link to"):
        load_data("imagefolder", str(image_folder), augment=False, image_size=12)
    (image_folder / "README").unlink()
    (image_folder / "LICENSE.txt").symlink_to("/etc/hostname")
    bundle = load_data("imagefolder", str(image_folder), augment=False, image_size=12)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 30 + 1 + 10


# --- issue 27, round 3: the files a user names ------------------------------------------------
# A checkpoint, an export, a NIR file, a TOML, metrics.json, a training log: a FIFO, a link to
# /dev/zero, a socket or a folder under the name is refused by name (files/paths.py), never
# waited on and never called missing; a path that does not exist keeps its "no such" message.

def _socket(path: Path) -> None:
    """A Unix socket at ``path``, bound from its folder (a socket path has at most 107 bytes)."""
    import socket

    here = os.getcwd()
    os.chdir(path.parent)
    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(path.name)
    finally:
        os.chdir(here)


_MAKERS = {
    "fifo": (os.mkfifo, "is a FIFO (named pipe), not a regular file"),
    "dev-zero": (lambda p: p.symlink_to("/dev/zero"),
                 "(a link to /dev/zero) is a character device, not a regular file"),
    "socket": (_socket, "is a socket, not a regular file"),
    "folder": (lambda p: p.mkdir(), "is a folder, not a regular file"),
}


def _resumable_run(tmp_path: Path) -> Path:
    """A run folder that ``distill --resume`` accepts, logging into ``tmp_path/logs``."""
    from neurokd.config import RunConfig, to_toml

    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    config = RunConfig(out=str(run.parent), name="r", epochs=1, teacher_epochs=1,
                       log_dir=str(tmp_path / "logs"))
    (run / "config.toml").write_text(to_toml(config.to_dict()))
    return run


# reader: (the file's name in tmp_path, the command ({file}: its path; {tmp}: tmp_path), what
# the message calls it, the message when the path does not exist)
_READERS = {
    "checkpoint-energy": ("student.pt", ["energy", "report", "{file}", "-q"],
                          "checkpoint file", "no such checkpoint file: {file}"),
    "checkpoint-export": ("student.pt", ["export", "--target", "onnx", "{file}", "-o",
                                         "{tmp}/s.onnx", "-q"],
                          "checkpoint file", "no such checkpoint file: {file}"),
    "onnx": ("student.onnx", ["simulate", "{file}", "--backend", "onnx", "--samples", "2", "-q"],
             "export file", "no such export file: {file}"),
    "nir": ("student.nir", ["export", "--target", "onnx", "{file}", "--random-inputs", "-o",
                            "{tmp}/s.onnx", "-q"], "NIR file", "no such NIR file: {file}"),
    "config": ("c.toml", ["distill", "--config", "{file}", "--out", "{tmp}/runs", "-q"],
               "config file", "config file not found: {file}"),
    "resume-config": ("runs/r/config.toml", ["distill", "--resume", "{tmp}/runs/r", "-q"],
                      "config file", "nothing to resume in {tmp}/runs/r (no config.toml)"),
    "profile": ("chip.toml", ["energy", "report", "--from-sim", "{tmp}/r.npz", "--profile",
                              "{file}", "-q"], "energy profile", "energy profile not found: "
                                                                 "{file}"),
    "sweep": ("s.toml", ["sweep", "{file}", "--out", "{tmp}/sweep"], "sweep spec",
              "sweep spec not found: {file}"),
    "metrics": ("run/metrics.json", ["plot", "{tmp}/run", "-o", "{tmp}/p.png"], "metrics file",
                "no metrics.json at {file}"),
    "training-log": ("logs/student.csv", ["distill", "--resume", "{tmp}/runs/r", "-q"],
                     "training log", None),
}


def _prepare(reader: str, tmp_path: Path) -> tuple[Path, list[str], str, str | None]:
    name, argv, what, missing = _READERS[reader]
    if reader in ("resume-config", "training-log"):
        _resumable_run(tmp_path)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fill = {"file": str(path), "tmp": str(tmp_path)}
    return path, [a.format(**fill) for a in argv], what, missing and missing.format(**fill)


def _nothing_written(tmp_path: Path, reader: str) -> None:
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.name != "config.toml")
    assert left == [], f"{reader} wrote {left}"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("reader", list(_READERS))
def test_a_named_file_that_is_not_a_regular_file_is_refused(reader, kind, tmp_path, capsys):
    path, argv, what, _ = _prepare(reader, tmp_path)
    make, words = _MAKERS[kind]
    make(path)
    with released(path):
        outcome = run_cli(capsys, *argv)
    assert_one_line_error(outcome, 2, f"{what} {path} {words}")
    _nothing_written(tmp_path, reader)


@pytest.mark.parametrize("reader, kind", [
    *((reader, "socket") for reader in ("checkpoint-energy", "onnx", "nir", "config", "profile",
                                        "sweep", "training-log")),
    ("profile", "folder"), ("training-log", "folder"), ("metrics", "folder"),
])  # a folder given as an argument is refused by click first ("... is a directory")
def test_a_socket_or_a_folder_is_named_not_called_missing(reader, kind, tmp_path, capsys):
    path, argv, what, _ = _prepare(reader, tmp_path)
    make, words = _MAKERS[kind]
    make(path)
    outcome = run_cli(capsys, *argv)
    assert_one_line_error(outcome, 2, f"{what} {path} {words}")


@pytest.mark.parametrize("reader", [r for r, spec in _READERS.items() if spec[3]])
def test_a_named_file_that_does_not_exist_keeps_its_message(reader, tmp_path, capsys):
    path, argv, _, missing = _prepare(reader, tmp_path)
    if reader != "resume-config":  # (its config.toml is gone) a link to nowhere is missing too
        path.symlink_to(tmp_path / "nowhere")
    outcome = run_cli(capsys, *argv)
    assert_one_line_error(outcome, 2, missing)


def test_a_settings_file_swapped_for_a_fifo_after_the_check_is_refused(tmp_path, monkeypatch):
    """read_small_text checks the descriptor it opened (O_NONBLOCK), not only the path: a
    FIFO swapped in between the check (the first stat of the path) and the open is refused,
    not waited on. Called directly: the CLI's own argument check would take the first stat."""
    from neurokd.errors import NeuroKDError
    from neurokd.files.safe_io import read_small_text

    spec = tmp_path / "s.toml"
    spec.write_text("[sweep]\n")
    real_stat, swapped = os.stat, []

    def stat_then_swap(path, *args, **kwargs):
        result = real_stat(path, *args, **kwargs)
        if not swapped and os.fspath(path) == str(spec):
            swapped.append(True)
            spec.unlink()
            os.mkfifo(spec)
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)
    with released(spec), pytest.raises(NeuroKDError) as refused:
        read_small_text(spec, "sweep spec")
    assert swapped and str(refused.value) == f"sweep spec {spec} is a FIFO (named pipe), not " \
                                              "a regular file"


# --- N-MNIST and CIFAR10-DVS: links out of the data folder -------------------------------------

def _event_set(dataset: str, tmp_path: Path) -> Path:
    from neurokd.data.event_sets import CIFAR10_CLASSES
    from neurokd.data.event_writers import random_events, write_cifar10dvs

    if dataset == "nmnist":
        return _nmnist(tmp_path)
    return write_cifar10dvs(tmp_path / "cifar10dvs", {
        name: [random_events(20, 128, 128, 10 * c + k) for k in range(2)]
        for c, name in enumerate(CIFAR10_CLASSES)})


_LINKS = {  # dataset, what links out: (the link in the data folder, what it points at)
    ("nmnist", "file"): ("Train/3/00009.bin", "Train/3/00000.bin"),
    ("nmnist", "class folder"): ("Test/7", "Test/7"),
    ("nmnist", "split folder"): ("Train", "Train"),
    ("cifar10dvs", "file"): ("cat/cifar10_cat_9.aedat", "cat/cifar10_cat_0.aedat"),
    ("cifar10dvs", "class folder"): ("dog", "dog"),
}


@pytest.mark.parametrize("dataset, what", list(_LINKS), ids=[f"{d}-{w}" for d, w in _LINKS])
def test_a_link_out_of_an_event_data_folder_is_refused(dataset, what, tmp_path, capsys):
    """The readers list their folders themselves (glob): a link out of the data folder, to a
    recording or to a folder of them, was followed and trained on."""
    root = _event_set(dataset, tmp_path)
    inner, source = _LINKS[dataset, what]
    outside = tmp_path / "outside" / source
    outside.parent.mkdir(parents=True)
    shutil.copytree(root / source, outside) if (root / source).is_dir() else \
        shutil.copy(root / source, outside)
    link = root / inner
    if link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(outside)
    outcome = _distill(capsys, tmp_path, dataset, root)
    assert_one_line_error(outcome, 2, f"{dataset}: {link} is a link to {outside}, outside "
                                      f"{root}; a link in a data folder must stay inside it")


@pytest.mark.parametrize("dataset", ["nmnist", "cifar10dvs"])
def test_links_inside_an_event_data_folder_are_read(dataset, tmp_path):
    from neurokd.data.event_sets import EVENT_SETS

    root = _event_set(dataset, tmp_path)
    inner, source = _LINKS[dataset, "file"]
    (root / inner).symlink_to(root / source)
    event_set = EVENT_SETS[dataset]
    assert root / inner in [r.path for r in event_set.split(root, "train")]
    linked = event_set.read(root / inner, event_set.sensor)
    assert (linked["t"] == event_set.read(root / source, event_set.sensor)["t"]).all()
