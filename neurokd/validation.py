"""One check for a setting's type and size, wherever the value comes from: the command line, a
TOML file, a checkpoint's stored config. Values read from files are input like any other.

Types come from RunConfig's annotations: a bool is a bool (``detect_anomaly = "no"`` is not
true), an int is a whole number (``seed = 1.5``, ``timesteps = True`` and ``"4"`` are
refused), a float is a finite number, a string holds no NUL byte. Sizes that decide how much
memory a run allocates (widths, image size, timesteps, batch size, the input shape) are
bounded here, so a file cannot make neurokd build a 100,000-channel network.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from typing import Any

from .errors import ConfigError

INT64_MAX = 2 ** 63 - 1
# Upper bounds of the settings that size tensors (memory), with the reason in the message.
SIZE_LIMITS = {"width": 4096, "teacher_width": 4096, "image_size": 1024, "timesteps": 4096,
               "batch_size": 1 << 16, "epochs": 1_000_000, "teacher_epochs": 1_000_000,
               "num_classes": 1_000_000, "threads": 4096, "event_size": 4096}
MAX_INPUT_ELEMENTS = 1 << 24   # C*H*W of one sample (16 M values)
MAX_TEXT = 4096


def check_field_types(config: Any) -> None:
    """Every field of a dataclass ``config`` against its annotation (raises ConfigError)."""
    check_values(type(config), {f.name: getattr(config, f.name) for f in fields(config)})


def check_values(kind: type, values: dict[str, Any]) -> None:
    """The ``values`` given for fields of the dataclass ``kind`` (a TOML file's keys, before
    the command line overrides some: a broken file is refused even where an option wins)."""
    hints = typing.get_type_hints(kind)
    for name, value in values.items():
        if name not in hints:
            continue  # unknown keys are the caller's to name (with a did-you-mean)
        expected, optional = _unpack(hints[name])
        if value is None and optional:
            continue
        _check_value(name, value, expected)
        limit = SIZE_LIMITS.get(name)
        if limit is not None and isinstance(value, int) and value > limit:
            raise ConfigError(f"{name} = {value:,} is larger than neurokd allows "
                              f"({limit:,}): a run that size would not fit in memory")


def _unpack(hint: Any) -> tuple[Any, bool]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _check_value(name: str, value: Any, expected: Any) -> None:
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
    elif expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be a whole number, not {value!r}")
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise ConfigError(f"{name} = {value} does not fit a 64-bit integer")
    elif expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, not {value!r}")
    elif expected is str:
        if not isinstance(value, str) or "\x00" in value or len(value) > MAX_TEXT:
            raise ConfigError(f"{name} must be text (no NUL byte, at most {MAX_TEXT} "
                              f"characters), not {_short(value)}")
    elif typing.get_origin(expected) is list:
        check_shape(name, value)


def check_shape(name: str, value: Any) -> tuple[int, ...]:
    """A per-sample input shape: 1 to 4 whole numbers >= 1, at most MAX_INPUT_ELEMENTS."""
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= 4 or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value):
        raise ConfigError(f"{name} must be a list of 1 to 4 whole numbers >= 1 (e.g. [1, 8, 8]), "
                          f"not {_short(value)}")
    if math.prod(value) > MAX_INPUT_ELEMENTS:
        raise ConfigError(f"{name} {list(value)} holds {math.prod(value):,} values per sample; "
                          f"neurokd allows {MAX_INPUT_ELEMENTS:,}")
    return tuple(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
