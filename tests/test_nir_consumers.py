"""neurokd's NIR files run in the real consumers: snnTorch, Norse, spikingjelly, Sinabs, Rockpool.

Each built-in student kind (CNN and ResNet with LIF, CNN with IF, the 1-D CNN of mnist1d) is
exported and run by every consumer on real test samples at batch 1 and 64. Where a consumer
can represent the graph it must reproduce the student (same argmax everywhere, logits within
1e-4 x max(1, |logit|)); where it cannot, the report must say so with the library's own error
and name the nodes. Nothing is skipped: the consumers are installed by ``make test`` (snnTorch,
Norse, Rockpool in the dev extra; Sinabs in ``.sinabs-site`` by ``make consumers``).
"""

from __future__ import annotations

import nir
import pytest
import torch
from spikingjelly.activation_based import neuron

from neurokd.config import RunConfig
from neurokd.exporters import export_nir
from neurokd.exporters.nir.consumers import CONSUMERS, TOLERANCE, sinabs_site
from neurokd.models import build_student
from neurokd.models.snn import SpikingCNN
from neurokd.student.sources import StudentSource

from helpers import assert_one_line_error, make_student, randomise_batchnorm, run_cli

pytestmark = pytest.mark.slow  # five libraries x four students: about a minute

SAMPLES = 65  # one batch of 1, one of 64


def _if_neuron():
    return neuron.IFNode(v_threshold=1.0, v_reset=0.0, step_mode="m")


def _students() -> dict[str, tuple[StudentSource, str]]:
    digits = {"dataset": "digits"}
    m1d = RunConfig(student="cnn", width=8, timesteps=4, dataset="mnist1d").to_dict()
    m1d |= {"input_shape": [1, 1, 40], "num_classes": 10}
    torch.manual_seed(3)
    return {
        "cnn-lif": StudentSource(make_student("cnn", width=8, timesteps=4)[0], (1, 8, 8), 4,
                                 "cnn-lif", digits),
        "cnn-if": StudentSource(randomise_batchnorm(
            SpikingCNN((1, 8, 8), 10, 4, 8, _if_neuron), seed=1), (1, 8, 8), 4, "cnn-if",
            digits),
        "resnet-lif": StudentSource(make_student("resnet", width=4, timesteps=3, seed=2)[0],
                                    (1, 8, 8), 3, "resnet-lif", digits),
        "mnist1d-lif": StudentSource(randomise_batchnorm(build_student(m1d), seed=3),
                                     (1, 1, 40), 4, "mnist1d-lif", m1d),
    }


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("consumers")
    found = {}
    for name, source in _students().items():
        result = export_nir(source, folder / f"{name}.nir", max_samples=SAMPLES,
                            check_consumers=True)
        found[name] = (result, {r.consumer: r for r in result.consumers})
    return found


# student -> consumer -> None (must agree) or (text of the library's error, node the
# report must name). Measured; docs/nir.md explains every cell.
EXPECTED = {
    "cnn-lif": {"snntorch": None, "norse": None, "spikingjelly": None,
                "sinabs": ("The truth value of an array", "features_2"),
                "rockpool": ("Cannot convert", "features_0")},
    "cnn-if": {"snntorch": ("r != 1 not supported", "features_2"), "norse": None,
               "spikingjelly": None, "sinabs": ("", "IAF"),
               "rockpool": ("Cannot convert", "features_2")},
    "resnet-lif": {"snntorch": None, "spikingjelly": None,
                   "norse": ("gives outputs of shape", "layers_1_act2 (its input "
                             "layers_1_shortcut_0)"),
                   "sinabs": ("The truth value of an array", "layers_1_shortcut_0"),
                   "rockpool": ("Cannot convert", "stem_0")},
    "mnist1d-lif": {"snntorch": None, "spikingjelly": None,
                    "norse": ("features_0", "dropped without an error"),
                    "sinabs": ("has no attribute 'detach'", "features_0"),
                    "rockpool": ("Cannot convert", "features_0")},
}
CELLS = [(s, c) for s, row in EXPECTED.items() for c in row]


def test_every_consumer_is_installed():
    """The check must not quietly test fewer libraries than it claims (CI builds them all)."""
    import importlib.util

    for name, consumer in CONSUMERS.items():
        found = consumer.site() if consumer.site else importlib.util.find_spec(name)
        assert found is not None, f"{name} is not installed: run `make consumers`"
    assert sinabs_site() is not None


def test_the_students_fire_and_the_file_is_batch_agnostic(reports):
    for name, (result, _) in reports.items():
        assert result.agreement.batch_sizes == (1, 64), name
        assert 0.05 < result.agreement.firing_rate < 0.9, (name, result.agreement.firing_rate)
        graph = nir.read(result.path)  # nir's own type check passes (mnist1d: Conv1d)
        flattens = [n for n in graph.nodes.values() if isinstance(n, nir.Flatten)]
        assert flattens and all(int(f.start_dim) < 0 and int(f.end_dim) < 0 for f in flattens)
        assert float(graph.metadata["dt"]) == result.dt and \
            int(graph.metadata["timesteps"]) == result.timesteps


@pytest.mark.parametrize("student, consumer", CELLS)
def test_consumer_matrix(reports, student, consumer):
    result = reports[student][1][consumer]
    expected = EXPECTED[student][consumer]
    assert result.version, result
    if expected is None:
        assert result.runs and result.argmax_agreement == 1.0, result
        assert result.max_logit_difference <= TOLERANCE * max(1.0, result.logit_scale), result
        assert result.agrees
        return
    error, named = expected
    assert not result.agrees, result
    said = result.failure + " | " + " | ".join(result.notes)
    assert error in said and named in said, said


def test_cli_prints_the_report(reports, capsys, tmp_path):
    source = reports["cnn-lif"][0].path
    out = tmp_path / "again.nir"
    outcome = run_cli(capsys, "export", "--target", "nir", str(source), "-o", str(out),
                      "--check-consumers", "--check-samples", "9", "--quiet")
    assert outcome.code == 0, outcome.err
    lines = outcome.out.splitlines()
    row = {line.split()[0]: line for line in lines if line.startswith("    ") and
           line.split()[0] in CONSUMERS}
    assert set(row) == set(CONSUMERS)
    for name in ("snntorch", "norse", "spikingjelly"):
        assert "agrees" in row[name] and "100.00%" in row[name], row[name]
    assert "The truth value of an array" in row["sinabs"]
    assert out.exists()


def test_check_consumers_is_for_nir_only(capsys, tmp_path):
    outcome = run_cli(capsys, "export", "--target", "onnx", "--model", "x:y", "--input-shape",
                      "1,8,8", "--timesteps", "2", "--check-consumers", "-o",
                      str(tmp_path / "x.onnx"))
    assert_one_line_error(outcome, contains="--check-consumers works with --target nir only")
