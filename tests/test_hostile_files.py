"""Files are input too: every field of a checkpoint's config and of a config TOML set to a
missing, wrong-typed, empty, zero, negative, non-finite, huge or inconsistent value. Each case
must end as the command line's bad input does: exit 2, one stderr line naming the file and
the field, no traceback, nothing written."""

from __future__ import annotations

import copy
import math
import typing
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from test_hostile_exports import sampled

from neurokd.config import RunConfig

from helpers import run_cli

HINTS = typing.get_type_hints(RunConfig)
FIELDS = [f for f in fields(RunConfig)]


def _kind(name: str) -> type:
    hint = HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _wrong_values(name: str) -> list:
    """Values no field of that type may take: the generator of the cases below."""
    kind = _kind(name)
    if kind is bool:
        return ["no", 1, None]
    if kind is int:
        return [True, 2.5, "4", -(10 ** 30), 10 ** 30, [1]]
    if kind is float:
        return [math.nan, math.inf, "x", True, [0.5]]
    if kind is str:
        return [5, "a\x00b", "x" * 5000, ["a"]]
    return ["abc", [8, 8, 0], [], [True, 8, 8], [10 ** 6, 10 ** 6, 10 ** 6]]


def _nullable(name: str) -> bool:
    return type(None) in typing.get_args(HINTS[name])


CHECKPOINT_CASES = [pytest.param(f.name, value, id=f"{f.name}={value!r:.20}")
                    for f in FIELDS for value in _wrong_values(f.name)
                    if not (value is None and _nullable(f.name))]


@pytest.fixture(scope="module")
def stored(trained_run) -> dict:
    return torch.load(trained_run / "student.pt", weights_only=True)


def _assert_refused(outcome, path: Path, field: str) -> None:
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert outcome.code == 2, outcome.err
    assert len(lines) == 1 and "Traceback" not in outcome.err, outcome.err
    assert "internal error" not in lines[0], lines[0]
    assert str(path) in lines[0], lines[0]
    assert field in lines[0], lines[0]


def _damaged(stored: dict, change, tmp_path: Path) -> Path:
    """``stored`` changed by ``change`` (in a deep copy), saved as tmp_path/student.pt."""
    damaged = copy.deepcopy(stored)
    change(damaged)
    path = tmp_path / "student.pt"
    torch.save(damaged, path)
    return path


@pytest.mark.parametrize("field, value", sampled(CHECKPOINT_CASES))
def test_checkpoint_config_field(field, value, stored, tmp_path, capsys):
    path = _damaged(stored, lambda c: c["config"].__setitem__(field, value), tmp_path)
    outcome = run_cli(capsys, "export", "--target", "onnx", str(path), "-o",
                      str(tmp_path / "out.onnx"), "--check-samples", "4")
    _assert_refused(outcome, path, field)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.pt"]


@pytest.mark.parametrize("field", ["input_shape", "num_classes", "student", "timesteps"])
def test_checkpoint_config_field_missing(field, stored, tmp_path, capsys):
    path = _damaged(stored, lambda c: c["config"].pop(field), tmp_path)
    outcome = run_cli(capsys, "energy", "report", str(path), "-q", "--samples", "4")
    if field in ("input_shape", "num_classes"):
        _assert_refused(outcome, path, field)
    else:  # a missing setting takes its default, like an option not given, and still fits
        assert outcome.code == 0, outcome.err


@pytest.mark.parametrize("change, field", [
    (lambda s: s["student"].pop("features.0.weight"), "features.0.weight"),
    (lambda s: s["student"].__setitem__("extra.weight", torch.ones(2)), "extra.weight"),
    (lambda s: s["student"].__setitem__("features.0.weight", torch.ones(3, 3)),
     "features.0.weight"),
    (lambda s: s["student"].__setitem__("features.0.weight",
                                        s["student"]["features.0.weight"].double()),
     "features.0.weight"),
    (lambda s: s["student"]["classifier.1.bias"].fill_(math.inf), "classifier.1.bias"),
    (lambda s: s["teacher"]["features.0.weight"].fill_(math.nan), "features.0.weight"),
    (lambda s: s.__setitem__("class_names", ["a"] * 3), "class_names"),
    (lambda s: s.__setitem__("class_names", 7), "class_names"),
    (lambda s: s.__setitem__("student", [1, 2]), "student"),
    (lambda s: (s["config"].__setitem__("num_classes", 11), s.__setitem__("class_names", [])),
     "classifier.1"),
], ids=["missing-weight", "extra-weight", "weight-shape", "weight-dtype", "inf-bias",
        "nan-teacher", "class-count", "class-type", "state-type", "classes-vs-weights"])
def test_checkpoint_weights_and_names(change, field, stored, tmp_path, capsys):
    path = _damaged(stored, change, tmp_path)
    outcome = run_cli(capsys, "export", "--target", "nir", str(path), "-o",
                      str(tmp_path / "out.nir"), "--check-samples", "4")
    _assert_refused(outcome, path, field)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.pt"]


def _toml_value(value) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else "inf" if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 2 ** 63 else None  # TOML holds 64-bit integers only
    if isinstance(value, str):
        return '"' + value.replace("\x00", "\\u0000") + '"'
    if isinstance(value, list):
        parts = [_toml_value(v) for v in value]
        return None if None in parts else "[" + ", ".join(parts) + "]"
    return None


TOML_CASES = [pytest.param(f.name, text, id=f"{f.name}={text:.20}")
              for f in FIELDS if not f.metadata.get("internal")
              for text in (_toml_value(v) for v in _wrong_values(f.name)) if text is not None]


@pytest.mark.parametrize("field, text", sampled(TOML_CASES, 4))
def test_config_toml_field(field, text, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "run.toml"
    path.write_text(f"{field} = {text}\n")
    outcome = run_cli(capsys, "distill", "--config", str(path), "-q", "--name", "x")
    _assert_refused(outcome, path, field)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]
