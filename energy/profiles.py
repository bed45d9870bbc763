"""Hardware cost tables: picojoules per counted operation, each with the source of its numbers.

Built in: ``45nm-fp32`` and ``45nm-int8`` (Horowitz, ISSCC 2014: 32-bit float add 0.9 pJ,
multiply 3.7 pJ; 8-bit integer add 0.03 pJ, multiply 0.2 pJ) and ``loihi`` (Davies et al., IEEE
Micro 2018, Table 1). A user TOML file with the same keys is a profile too::

    name = "my-chip"
    mac_pj = 3.1                    # one multiply-accumulate (analog inputs, the ANN)
    synop_pj = 0.4                  # one synaptic operation: a spike times one fan-out weight
    neuron_update_pj = 1.0          # one neuron, one timestep, no spike
    active_neuron_update_pj = 1.2   # one neuron, one timestep, in which it spiked
    source = "datasheet, rev 2"

On the 45 nm profiles a synaptic operation is one add (AC). A neuron update is priced as one
MAC plus one AC (the LIF leak multiply-accumulate and the threshold compare): that is this
project's assumption, not a number Horowitz gives, and the profile's source says so.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from neurokd.errors import ConfigError

HOROWITZ = "Horowitz, 'Computing's energy problem', ISSCC 2014 (45 nm)"
DAVIES = "Davies et al., 'Loihi: a neuromorphic manycore processor', IEEE Micro 2018, Table 1"
_COST_KEYS = ("mac_pj", "synop_pj", "neuron_update_pj", "active_neuron_update_pj")


@dataclass(frozen=True)
class EnergyProfile:
    """pJ per operation; ``neuron_update_pj`` is a step without a spike, the active one with."""

    name: str
    mac_pj: float
    synop_pj: float
    neuron_update_pj: float
    active_neuron_update_pj: float
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"profile name must be a non-empty string, not {self.name!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError(f"profile {self.name}: source must say where the numbers come from")
        for key in _COST_KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise ConfigError(f"profile {self.name}: {key} must be a number >= 0 (pJ), "
                                  f"not {value!r}")
            object.__setattr__(self, key, float(value))

    def to_dict(self) -> dict:
        return asdict(self)


BUILTIN: dict[str, EnergyProfile] = {
    "45nm-fp32": EnergyProfile(
        "45nm-fp32", 4.6, 0.9, 5.5, 5.5,
        f"{HOROWITZ}: fp32 MAC 4.6 pJ (mult 3.7 + add 0.9), AC 0.9 pJ; neuron update = "
        "1 MAC + 1 AC (neurokd assumption)"),
    "45nm-int8": EnergyProfile(
        "45nm-int8", 0.23, 0.03, 0.26, 0.26,
        f"{HOROWITZ}: int8 MAC 0.23 pJ (mult 0.2 + add 0.03), AC 0.03 pJ; neuron update = "
        "1 MAC + 1 AC (neurokd assumption)"),
    # Davies et al. give no figure for a multiply-accumulate, and an ANN does not run on Loihi:
    # analog work (the encoding layer, the ANN reference) is priced as on a conventional 45 nm
    # fp32 core, the usual reference point, so the ratio reads "SNN on Loihi vs ANN on a CPU".
    "loihi": EnergyProfile(
        "loihi", 4.6, 23.6, 52.0, 81.0,
        f"{DAVIES}: synaptic spike op 23.6 pJ, neuron update 52 pJ inactive / 81 pJ active; "
        "MACs (analog encoding layer, ANN reference) at the 45 nm fp32 4.6 pJ of Horowitz, "
        "ISSCC 2014 (neurokd assumption: Loihi has no MAC figure)"),
}


def profile_keys() -> list[str]:
    return [f.name for f in fields(EnergyProfile)]


def load_profile(spec: str | Path | EnergyProfile) -> EnergyProfile:
    """A built-in profile by name, or a TOML file with every key of :class:`EnergyProfile`."""
    if isinstance(spec, EnergyProfile):
        return spec
    text = str(spec)
    if text in BUILTIN:
        return BUILTIN[text]
    path = Path(text)
    if path.suffix.lower() != ".toml" and not path.is_file():
        near = difflib.get_close_matches(text, list(BUILTIN), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"unknown energy profile {text!r}{hint}; built in: "
                          f"{', '.join(BUILTIN)}, or a TOML file with keys "
                          f"{', '.join(profile_keys())}")
    return _profile_from_toml(path)


def _profile_from_toml(path: Path) -> EnergyProfile:
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"energy profile file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read energy profile {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML in energy profile {path}: {exc}") from None
    keys = profile_keys()
    for key in values:
        if key not in keys:
            near = difflib.get_close_matches(key, keys, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{path}: unknown profile key {key!r}{hint}; keys: {', '.join(keys)}")
    missing = [key for key in keys if key not in values]
    if missing:
        raise ConfigError(f"{path}: profile lacks {', '.join(missing)} "
                          f"(every profile gives {', '.join(keys)})")
    try:
        return EnergyProfile(**values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
