"""Distil a spiking student on digits from Python, then reload it from the checkpoint alone.

After `make demo`, from the repository's root: .venv/bin/python examples/distill_api.py
(runs/api-example; a second run replaces it)."""

import torch

import neurokd
from neurokd.data import load_data, make_loader
from neurokd.train.evaluation import evaluate

config = neurokd.RunConfig(name="api-example", method="tser", epochs=5, teacher_epochs=10,
                           alpha=0.5, tau=1.0, lam=0.05, timesteps=4)
result = neurokd.distill(config, overwrite=True)
print(f"student {result.metrics['student_accuracy']:.3f}, "
      f"teacher {result.metrics['teacher_accuracy']:.3f}, written to {result.checkpoint}")

run = neurokd.load(result.checkpoint)  # student + teacher rebuilt, eval mode
accuracy, firing_rate = evaluate(run.student, make_loader(load_data("digits").test, 128),
                                 torch.device("cpu"))
print(f"reloaded: accuracy {accuracy:.3f}, firing rate {firing_rate:.3f}")
