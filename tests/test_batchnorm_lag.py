"""With few steps per epoch BatchNorm's running statistics lag the weights: a student right in
training was silent and at chance in evaluation. They are recomputed from the training split
before each evaluation (``recompute_bn``), and a silent student is named with what to do."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from neurokd.train.evaluation import recalibrate_batchnorm

from helpers import run_cli


class _Student(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = layer.SeqToANNContainer(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.lif = neuron.LIFNode(step_mode="m")
        self.fc = layer.SeqToANNContainer(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x):
        return self.fc(self.lif(self.conv(x.unsqueeze(0).repeat(3, 1, 1, 1, 1))))


def test_recomputed_statistics_are_those_of_the_whole_split():
    """Independently: the BatchNorm's input over every batch of the split, its mean and its
    unbiased variance per channel; the stale statistics and the momentum are gone/restored."""
    torch.manual_seed(0)
    model = _Student()
    bn = model.conv[1]
    bn.running_mean.fill_(5.0)   # stale, as after many lagging updates
    bn.running_var.fill_(9.0)
    data = TensorDataset(torch.rand(50, 1, 6, 6) * 3 + 1, torch.zeros(50, dtype=torch.long))
    loader = DataLoader(data, batch_size=16)
    model.eval()
    assert recalibrate_batchnorm(model, loader, torch.device("cpu")) == 1
    assert not model.training and bn.momentum == 0.1
    with torch.no_grad():  # the conv's output over all 3 x 50 frames, as BatchNorm saw it
        frames = model.conv[0](data.tensors[0].unsqueeze(0).repeat(3, 1, 1, 1, 1).flatten(0, 1))
    # cumulative average of per-batch statistics (momentum None), batches of 3*16 frames
    means, variances, sizes = [], [], []
    for start in range(0, 50, 16):
        chunk = frames.view(3, 50, 4, 6, 6)[:, start:start + 16].flatten(0, 1)
        per_channel = chunk.transpose(0, 1).flatten(1)
        means.append(per_channel.mean(1))
        variances.append(per_channel.var(1, unbiased=True))
        sizes.append(len(chunk))
    expected_mean = torch.stack(means).mean(0)
    expected_var = torch.stack(variances).mean(0)
    torch.testing.assert_close(bn.running_mean, expected_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, expected_var, rtol=1e-5, atol=1e-5)
    functional.reset_net(model)


def test_a_model_without_batchnorm_is_left_alone():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = DataLoader(TensorDataset(torch.rand(4, 1, 6, 6), torch.zeros(4)), batch_size=2)
    assert recalibrate_batchnorm(model, loader, torch.device("cpu")) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.slow  # two short trainings on event data
def test_two_steps_per_epoch_no_longer_leave_the_student_silent(tmp_path, capsys):
    """digits-dvs at a tenth of its training split: 2 steps per epoch. Left as trained, the
    student is at chance on validation and the run says why; recomputed (auto), it learns."""
    common = ["distill", "--dataset", "digits-dvs", "--train-fraction", "0.1", "--epochs", "6",
              "--teacher-epochs", "3", "--method", "ce", "--out", str(tmp_path), "--threads",
              "1"]
    never = run_cli(capsys, *common, "--name", "never", "--recompute-bn", "never")
    assert never.code == 0, never.err
    assert "silent in evaluation" in never.out + never.err
    assert "--recompute-bn always" in never.out + never.err
    auto = run_cli(capsys, *common, "--name", "auto")
    assert auto.code == 0, auto.err
    assert "silent in evaluation" not in auto.out + auto.err
    import json

    chance = 1 / 10
    lagging = json.loads((tmp_path / "never" / "metrics.json").read_text())
    fixed = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert lagging["student_accuracy"] <= 1.5 * chance
    assert fixed["student_accuracy"] >= 3 * chance
