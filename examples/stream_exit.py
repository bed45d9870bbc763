"""Stream test samples through a stepwise ONNX student, one timestep per call, and stop each
sample at its exit step (docs/anytime.md).

    neurokd distill --exit-rule confidence --exit-drop 0.5 --name demo-exit
    neurokd export --target onnx --stepwise runs/demo-exit/student.pt
    python examples/stream_exit.py runs/demo-exit/student.step.onnx

The rule and threshold come from the file's metadata (``neurokd.exit``: the run's calibrated
exit) unless ``--exit-rule R --exit-threshold C`` are given. Each sample runs alone (batch 1),
as a sensor's stream would: the states start at zeros, each call's ``next.*`` outputs are fed
back as ``state.*``, and the sample stops at the first step where the rule fires on the softmax
of the mean of its logits so far (or after T steps). Only onnxruntime runs the network; neurokd
is used to load the test split and score the rule.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import onnxruntime as ort
import torch

from neurokd.anytime import check_threshold, get_rule
from neurokd.data import load_run_data, make_loader


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a stepwise export: neurokd export --target onnx --stepwise")
    parser.add_argument("--samples", type=int, default=200, help="test samples to stream")
    parser.add_argument("--exit-rule", help="default: the file's neurokd.exit")
    parser.add_argument("--exit-threshold", type=float)
    args = parser.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    if props.get("neurokd.stepwise") != "1":
        sys.exit(f"{args.model} is not a stepwise export (neurokd export --target onnx --stepwise)")
    recorded = json.loads(props["neurokd.exit"]) if "neurokd.exit" in props else {}
    rule_name = args.exit_rule or recorded.get("rule")
    threshold = args.exit_threshold if args.exit_threshold is not None else \
        recorded.get("threshold")
    if rule_name is None or threshold is None:
        sys.exit("the file records no exit: give --exit-rule R --exit-threshold C")
    rule = get_rule(rule_name)
    threshold = check_threshold(rule, threshold)
    timesteps = int(props["neurokd.timesteps"])

    settings = json.loads(props["neurokd.data"])  # the run's data settings (data set, T, ...)
    x_all, y_all = next(iter(make_loader(load_run_data(settings).test, args.samples)))
    static = x_all.dim() == len(session.get_inputs()[0].shape)  # else [T, N, C, H, W] spikes
    states = [(i.name, [1, *i.shape[1:]]) for i in session.get_inputs()[1:]]

    correct, steps_used = 0, []
    for b in range(len(y_all)):
        sample = (x_all[b:b + 1] if static else x_all[:, b:b + 1]).numpy()
        feed = {name: np.zeros(shape, np.float32) for name, shape in states}
        total = None
        for t in range(1, timesteps + 1):
            outputs = session.run(None, {"x": sample if static else sample[t - 1], **feed})
            feed = {name: value for (name, _), value in zip(states, outputs[1:], strict=False)}
            total = outputs[0] if total is None else total + outputs[0]
            mean = torch.from_numpy(total / t).double()
            score = rule.score(torch.softmax(mean, -1).unsqueeze(0))[0]  # [1, 1, K] -> [1]
            if bool(rule.fires(score, threshold)[0]) or t == timesteps:
                break
        correct += int(mean.argmax(-1)[0] == y_all[b])
        steps_used.append(t)

    print(f"{len(steps_used)} samples streamed one at a time, exit {rule.name} "
          f"{rule.comparison} {threshold:.4g}: accuracy {100 * correct / len(steps_used):.2f}%, "
          f"mean {np.mean(steps_used):.2f} of T={timesteps} timesteps; exits at t=1..T: "
          f"{np.bincount(np.array(steps_used) - 1, minlength=timesteps).tolist()}")
    if recorded:
        print(f"the run recorded on its whole test split: accuracy "
              f"{100 * recorded['test_accuracy']:.2f}%, mean {recorded['mean_timesteps']:.2f} "
              "timesteps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
