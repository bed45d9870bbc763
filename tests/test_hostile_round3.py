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
from test_untrusted_paths import released

from neurokd.data import load_data
from neurokd.errors import DataError

from helpers import assert_one_line_error, run_cli

# --- the frames cache ------------------------------------------------------------------------


@pytest.fixture
def frames_cache(tmp_path) -> tuple[Path, Path]:
    """digits-dvs built into a cache of its own: (the cache folder, its one key folder)."""
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
def test_a_fifo_in_the_frames_cache_is_refused_not_waited_on(name, frames_cache, capsys,
                                                             tmp_path):
    cache, folder = frames_cache
    (folder / name).unlink()
    os.mkfifo(folder / name)
    with released(folder / name):
        outcome = _distill_on(cache, capsys, tmp_path)
    assert_one_line_error(outcome, 2, f"frames cache file {folder / name} is a FIFO (named "
                                      f"pipe), not a regular file; delete its folder {folder}")


def test_a_frames_cache_file_linked_to_dev_zero_is_refused(frames_cache, capsys, tmp_path):
    cache, folder = frames_cache
    (folder / "train.labels.npy").unlink()
    (folder / "train.labels.npy").symlink_to("/dev/zero")
    outcome = _distill_on(cache, capsys, tmp_path)
    assert_one_line_error(outcome, 2, f"{folder / 'train.labels.npy'} (a link to /dev/zero) "
                                      "is a character device")


def test_a_fifo_swapped_in_after_the_cache_was_opened_is_refused(frames_cache):
    """The samples are read by offset from a descriptor opened on first use (and again in each
    forked loader worker): that open checks too."""
    from neurokd.data.frames import CachedFrames

    _, folder = frames_cache
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
