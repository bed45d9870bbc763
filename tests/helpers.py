"""Run the CLI in-process (fast) or as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_cli(capsys, *args: str) -> Outcome:
    from neurokd.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def run_subprocess(*args: str, cwd=None, timeout=600) -> Outcome:
    proc = subprocess.run([sys.executable, "-m", "neurokd", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(outcome: Outcome, code: int = 2, contains: str = "") -> None:
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert outcome.code == code, (outcome.code, outcome.err)
    assert len(lines) == 1, outcome.err
    assert "Traceback" not in outcome.err
    assert contains.lower() in lines[0].lower(), lines[0]


def lava_present() -> bool:
    from neurokd.errors import NeuroKDError
    from neurokd.exporters.loihi.lava_host import lava_python

    try:
        lava_python()
        return True
    except NeuroKDError:
        return False


def requires_lava(test):
    """Runs Lava (slow). In CI it always runs (make test builds .venv-lava); locally it needs
    `make lava`, else it is skipped saying so."""
    missing = pytest.mark.skipif(not os.environ.get("CI") and not lava_present(),
                                 reason=".venv-lava missing: run `make lava`")
    return pytest.mark.slow(missing(test))


def covering_outputs(size: int, kernel: int, stride: int, pad: int, dilation: int) -> list[int]:
    """For each input index of a conv axis: how many output indices read it (explicit loops,
    the independent count the SOP tests hold the energy module to)."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    reach = [0] * size
    for o in range(out):
        for k in range(kernel):
            i = o * stride - pad + k * dilation
            if 0 <= i < size:
                reach[i] += 1
    return reach


SHAPE = (1, 8, 8)


def make_student(arch: str = "cnn", reset: str = "hard", width: int = 8, timesteps: int = 3,
                 seed: int = 0) -> tuple:
    """A fresh student whose BatchNorms hold random statistics, so neurons fire at varied
    rates and folding/fusing BatchNorm is really exercised."""
    import torch

    from neurokd.config import RunConfig
    from neurokd.models import build_student

    config = RunConfig(student=arch, reset=reset, width=width, timesteps=timesteps).to_dict()
    config |= {"input_shape": list(SHAPE), "num_classes": 10}
    torch.manual_seed(seed)
    model = build_student(config)
    return randomise_batchnorm(model, seed), config


def randomise_batchnorm(model, seed: int = 0):
    """Random BatchNorm statistics (in place, model returned in eval mode): neurons of an
    untrained model then fire at varied rates instead of staying silent."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
            bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            bn.weight.copy_(torch.rand(c, generator=gen) * 2 + 0.5)
            bn.bias.copy_(torch.randn(c, generator=gen) * 0.3 + 0.6)
    return model.eval()
