"""benchmarks/gpu_check.py: its tiny CPU run, and the pieces it judges the GPU path with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402
import gpu_kernels  # noqa: E402


def test_synthetic_cifar_is_read_by_neurokds_own_loader(tmp_path):
    from neurokd.data import load_data

    for dataset, classes in (("cifar10", 10), ("cifar100", 100)):
        root = gpu_check.write_synthetic_cifar(tmp_path / dataset, dataset, 200)
        bundle = load_data(dataset, data_dir=str(root), val_fraction=0.5)
        assert bundle.num_classes == classes and len(bundle.test) == 200
        assert len(bundle.train) + len(bundle.val) == 200 and bundle.augmented
        assert bundle.train[0][0].shape == (3, 32, 32)


def test_step_timer_counts_student_steps_after_warmup(monkeypatch):
    clock = iter([0.0, 1.0, 3.0, 5.0, 7.0, 100.0])
    monkeypatch.setattr(gpu_check.time, "perf_counter", lambda: next(clock))
    timer = gpu_check.StepTimer(cuda=False)
    task = timer.start("teacher epoch 1/1", 3)
    timer.advance(task)  # teacher steps are not timed
    task = timer.start("student epoch 1/1", 4)  # 0.0
    timer.advance(task, 0)  # the loop's "already done" call on a fresh run: no step
    for _ in range(4):
        timer.advance(task)  # 1, 3, 5, 7
    timer.finish(task)
    assert timer.stamps == [0.0, 1.0, 3.0, 5.0, 7.0]
    assert timer.samples_per_s(batch=8, warmup=1) == pytest.approx(8 * 3 / 6.0)
    assert timer.samples_per_s(batch=8, warmup=4) is None  # nothing left to time


def test_kernel_comparison_flags_a_flipped_spike_and_a_gradient_off_tolerance():
    shape = (4, 3, 1000)
    generator = torch.Generator().manual_seed(0)
    spikes = (torch.rand(shape, generator=generator) > 0.8).float()
    reference = {"spikes": spikes, "v": torch.rand(shape[1:], generator=generator),
                 "grad": torch.randn(shape, generator=generator)}
    same = {k: v.clone() for k, v in reference.items()}
    ok, figures = gpu_kernels.compare_kernels(same, reference)
    assert ok and figures["differing_neurons"] == 0 and figures["max_abs_diff_grad"] == 0
    flipped = {k: v.clone() for k, v in reference.items()}
    flipped["spikes"][2, 1, 7] = 1 - flipped["spikes"][2, 1, 7]
    flipped["grad"][:, 1, 7] += 1.0  # only the flipped neuron moves: it is left out
    ok, figures = gpu_kernels.compare_kernels(flipped, reference)
    assert figures["differing_neurons"] == 1 and figures["max_abs_diff_grad"] == 0
    assert not ok  # 1 of 3000 neurons is above the 1e-6 share
    off = {k: v.clone() for k, v in reference.items()}
    off["grad"][0, 0, 0] += 1e-3 + 1e-3 * reference["grad"][0, 0, 0].abs()
    assert not gpu_kernels.compare_kernels(off, reference)[0]
    close = {k: v.clone() for k, v in reference.items()}
    close["v"] += 5e-6
    assert gpu_kernels.compare_kernels(close, reference)[0]


@pytest.mark.slow
def test_tiny_cpu_run_checks_what_it_can_and_says_what_needs_cuda(tmp_path):
    out = tmp_path / "gpu.md"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu",
                           "--tiny", "--out", str(out)], capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    status = {c["name"]: c for c in report["checks"]}
    assert status["training, float32"]["status"] == "passed"
    figures = status["training, float32"]["figures"]
    assert figures["samples_per_s"] > 0 and figures["timed_steps"] >= 1
    assert figures["student_parameters"] > 12_000_000  # the recipe's ResNet-19, 10 classes
    torch_kernel = status["LIF kernel: torch vs PyTorch reference"]
    assert torch_kernel["status"] == "passed"
    assert torch_kernel["figures"]["selected"] == "torch-reference"
    assert status["torchrun -m neurokd distill, 1 process"]["status"] == "passed"
    group = status["torchrun worker in a gloo group, DDP TSER steps"]
    assert group["status"] == "passed" and group["figures"]["backend"] == "gloo"
    cuda_only = {"training, --amp", "LIF kernel: cuda vs PyTorch reference",
                 "LIF kernel: triton vs PyTorch reference",
                 "torchrun worker in a nccl group, DDP TSER steps"}
    assert {c["name"] for c in report["checks"] if c["needs_cuda"]} == cuda_only
    assert all(status[name]["status"] == "not run" for name in cuda_only)
    text = out.read_text()
    assert "No CUDA device was available" in text
    assert all(name in text.split("Not run here")[1] for name in cuda_only)
    assert "not run  training, --amp" in done.stdout
