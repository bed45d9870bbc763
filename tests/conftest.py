import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("PYTHONHASHSEED", "0")
# Two threads in one test process; one per pytest-xdist worker (make test-fast runs a worker
# per core: more threads than cores make every worker wait).
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session")
def frames_cache(tmp_path_factory) -> Path:
    """One event-frames cache for the whole session (digits-dvs is generated once)."""
    return tmp_path_factory.mktemp("frames-cache")


@pytest.fixture(autouse=True)
def _frames_cache_here(frames_cache, monkeypatch) -> None:
    """No test writes a frames cache into the user's ~/.cache."""
    monkeypatch.setenv("NEUROKD_CACHE_DIR", str(frames_cache))


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    """A tiny CIFAR-10 folder in the official python-pickle layout (5 train batches + test)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)

    def batch(name: str, count: int) -> None:
        labels = [i % 10 for i in range(count)]
        data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        entry = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"{i}.png".encode() for i in range(count)]}
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=2)

    for index in range(1, 6):
        batch(f"data_batch_{index}", 20)
    batch("test_batch", 20)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, handle,
                    protocol=2)
    return tmp_path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three classes of small PNGs in ImageFolder layout (root/<class>/*.png)."""
    from PIL import Image

    root = tmp_path / "shapes"
    rng = np.random.default_rng(1)
    for index, cls in enumerate(["circle", "square", "triangle"]):
        (root / cls).mkdir(parents=True)
        for k in range(10):
            pixels = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
            pixels[..., index] = 255
            Image.fromarray(pixels).save(root / cls / f"{k}.png")
    return root


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A real 2-epoch digits run (library call), shared by export and energy tests."""
    from neurokd import RunConfig, distill

    out = tmp_path_factory.mktemp("trained")
    distill(RunConfig(out=str(out), name="run", epochs=2, teacher_epochs=2))
    return out / "run"


class Exports:
    """The trained run's student (and teacher) as each target writes it, exported on first use
    and kept for the session: ``exports / "student.net"``. Tests copy a file before they damage
    it. student.onnx and student-spikes.onnx come from the faster TorchScript exporter (the
    same file format); the teacher needs the dynamo exporter (TorchScript bakes the check
    batch into the teacher's reshapes), so tests that use it are marked slow."""

    def __init__(self, folder: Path, checkpoint: Path):
        from neurokd.exporters import export_loihi, export_nir, export_onnx

        self.folder = folder
        self._makers = {
            "student.net": lambda p: export_loihi(checkpoint, p, max_samples=16, lava_samples=0),
            "student.nir": lambda p: export_nir(checkpoint, p, max_samples=16),
            "student.onnx": lambda p: export_onnx(checkpoint, p, max_samples=16, exporter="torchscript"),
            "student-spikes.onnx": lambda p: export_onnx(checkpoint, p, spike_outputs=True,
                                                         max_samples=16, exporter="torchscript"),
            "teacher.onnx": lambda p: export_onnx(checkpoint, p, teacher=True, max_samples=16),
        }

    def __truediv__(self, name: str) -> Path:
        path = self.folder / name
        if not path.exists():
            self._makers[name](path)
        return path


@pytest.fixture(scope="session")
def trained_exports(trained_run, tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("exports"), trained_run / "student.pt")
