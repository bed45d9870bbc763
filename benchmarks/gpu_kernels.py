"""spikingjelly's LIF kernels against its PyTorch reference, for benchmarks/gpu_check.py.

spikingjelly 2.0 picks a neuron's CUDA implementation once per process, from
SJ_LIF_CUDA_IMPLEMENTATION (auto, cuda, triton, torch) read at import, so each implementation
runs in a fresh process: ``python gpu_kernels.py IMPLEMENTATION DEVICE T,B,C,H,W OUT.pt``
writes its spikes, final membrane potential and input gradient. The reference is
spikingjelly's PyTorch LIF differentiated by autograd, selected by passing the surrogate as a
Python callable (no fused kernel takes one); on the CPU the module itself runs the ``torch``
implementation, spikingjelly's registered CPU operator with its own backward.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

KERNELS = ("torch", "cuda", "triton")  # SJ_LIF_CUDA_IMPLEMENTATION values besides auto
# At most this share of neurons may end with another spike train (a threshold crossing within
# rounding flips); on the others |difference| <= ATOL + RTOL |reference|.
SPIKE_TOLERANCE, ATOL, RTOL = 1e-6, 1e-5, 1e-4


def kernel_outputs(implementation: str, device: str, shape: tuple[int, ...]) -> dict:
    """One LIF layer of the students forward and backward on seeded inputs. ``reference`` runs
    spikingjelly's PyTorch reference (a Python surrogate callable selects it); any other name
    runs the module itself, whose kernel the environment variable picked."""
    from spikingjelly.activation_based import functional

    from neurokd.models.snn import lif_factory

    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) + 0.6).to(device).requires_grad_()
    grad_out = torch.randn(shape, generator=generator).to(device)
    neuron = lif_factory()().to(device)
    if implementation == "reference":
        surrogate = neuron.surrogate_function
        spikes, v, _ = functional.lif_multi_step(
            x, torch.zeros_like(x[0]), neuron.tau, neuron.decay_input, neuron.v_threshold,
            neuron.v_reset, lambda h: surrogate(h), neuron.detach_reset)
    else:
        spikes = neuron(x)
        v = neuron.v
    (spikes * grad_out).sum().backward()
    chosen = functional.neuron_implementation("lif", torch.device(device))
    return {"spikes": spikes.detach().cpu(), "v": v.detach().cpu(), "grad": x.grad.cpu(),
            "implementation": str(chosen["implementation"]),
            "unavailable": json.dumps(chosen.get("unavailable", {}))}


def _kernel_in_subprocess(implementation: str, device: str, shape, folder: Path) -> dict:
    path = folder / f"kernel-{implementation}.pt"
    selector = "auto" if implementation == "reference" else implementation
    env = {**os.environ, "SJ_LIF_CUDA_IMPLEMENTATION": selector}
    done = subprocess.run([sys.executable, __file__, implementation, device,
                           ",".join(map(str, shape)), str(path)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return torch.load(path, weights_only=True)


def compare_kernels(candidate: dict, reference: dict) -> tuple[bool, dict]:
    differing = (candidate["spikes"] != reference["spikes"]).any(0)  # per neuron, any step
    same = ~differing
    share = float(differing.float().mean())
    figures = {"differing_neurons": int(differing.sum()), "differing_share": share}
    ok = share <= SPIKE_TOLERANCE
    for key in ("v", "grad"):
        cand, ref = candidate[key], reference[key]
        if key == "grad":  # [T, ...]: a neuron is compared over its whole train
            cand, ref = cand[:, same], reference[key][:, same]
        else:
            cand, ref = cand[same], ref[same]
        excess = ((cand - ref).abs() - (ATOL + RTOL * ref.abs())).max() if ref.numel() else 0.0
        figures[f"max_abs_diff_{key}"] = float((cand - ref).abs().max()) if ref.numel() else 0.0
        ok = ok and float(excess) <= 0
    return ok, figures


def check_kernels(shape: tuple[int, ...], device: str, folder: Path, make_check) -> list:
    """One check (``make_check(name, needs_cuda)``, gpu_check.Check) per implementation."""
    reference = _kernel_in_subprocess("reference", device, shape, folder)
    checks = []
    for name in KERNELS:
        check = make_check(f"LIF kernel: {name} vs PyTorch reference", needs_cuda=name != "torch")
        checks.append(check)
        if device != "cuda" and name != "torch":
            check.note = f"spikingjelly's {name} kernel runs on CUDA only"
            continue
        if "error" in reference:
            check.status, check.note = "failed", f"reference: {reference['error']}"
            continue
        outputs = _kernel_in_subprocess(name, device, shape, folder)
        if "error" in outputs:
            check.status, check.note = "failed", outputs["error"]
            continue
        ok, check.figures = compare_kernels(outputs, reference)
        check.figures["selected"] = outputs["implementation"]
        check.status = "passed" if ok else "failed"
        if device == "cuda" and outputs["implementation"] != name:
            check.status = "failed"
            check.note = f"asked for {name}, spikingjelly ran {outputs['implementation']}"
    return checks


if __name__ == "__main__":
    implementation, device, shape, out = sys.argv[1:5]
    torch.save(kernel_outputs(implementation, device, tuple(int(d) for d in shape.split(","))),
               out)
