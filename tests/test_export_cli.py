"""`neurokd export` through the CLI: files written, read back by their consumers, bad input."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from helpers import run_cli


@pytest.mark.slow
def test_export_onnx_and_nir_from_a_checkpoint(trained_run, tmp_path, capsys):
    import neurokd
    from neurokd.data import load_data

    outcome = run_cli(capsys, "export", "--target", "onnx", str(trained_run / "student.pt"),
                      "-o", str(tmp_path / "s.onnx"), "--check-samples", "64")
    assert outcome.code == 0, outcome.err
    assert "spikes identical" in outcome.out
    model = onnx.load(tmp_path / "s.onnx")
    onnx.checker.check_model(model, full_check=True)
    x = load_data("digits").test.tensors[0][:16]
    session = ort.InferenceSession(str(tmp_path / "s.onnx"))
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    run = neurokd.load(trained_run / "student.pt")
    from spikingjelly.activation_based import functional

    functional.reset_net(run.student)
    with torch.no_grad():
        expected = run.student(x).numpy()
    assert logits.shape == expected.shape == (4, 16, 10)
    np.testing.assert_allclose(logits, expected, atol=1e-5)

    outcome = run_cli(capsys, "export", "--target", "nir", str(trained_run / "student.pt"),
                      "-o", str(tmp_path / "s.nir"), "--check-samples", "64")
    assert outcome.code == 0, outcome.err
    import nir

    graph = nir.read(tmp_path / "s.nir")
    assert any(type(node).__name__ == "LIF" for node in graph.nodes.values())


@pytest.mark.slow  # ONNX export / generation: seconds each, make test runs it
def test_default_output_goes_beside_the_checkpoint(trained_run, capsys):
    outcome = run_cli(capsys, "export", "--target", "onnx", "--teacher",
                      str(trained_run / "student.pt"), "--check-samples", "32")
    assert outcome.code == 0, outcome.err
    assert (trained_run / "teacher.onnx").is_file()


