"""Hardware cost tables: picojoules per counted unit, each table with the source of its numbers.

Built in: ``45nm-fp32`` and ``45nm-int8`` (Horowitz, ISSCC 2014: 32-bit float add 0.9 pJ,
multiply 3.7 pJ; 8-bit integer add 0.03 pJ, multiply 0.2 pJ) and ``loihi`` (Davies et al., IEEE
Micro 2018, Table 1). A user TOML file is a profile too::

    name = "my-chip"
    mac_pj = 3.1                    # one multiply-accumulate (analog inputs, the ANN)
    synop_pj = 0.4                  # one synaptic operation: a spike times one fan-out weight
    neuron_update_pj = 1.0          # one neuron, one timestep, no spike
    active_neuron_update_pj = 1.2   # one neuron, one timestep, in which it spiked
    source = "datasheet, rev 2"

``name`` and ``source`` are required; the cost keys are those of ``quantities.COSTS``, and a
profile may leave any of them out: a missing key means "not priced on this hardware". The
energy model an estimate uses then refuses the profile, naming the key, if it needs that cost
(``quantities.EnergyModel.unit_costs``), unless the cost has a fallback (a missing
``active_neuron_update_pj`` prices spiking updates at ``neuron_update_pj``). So a profile
written before a quantity was added keeps loading, and keeps pricing the models it can.

On the 45 nm profiles a synaptic operation is one add (AC). A neuron update is priced as one
MAC plus one AC (the LIF leak multiply-accumulate and the threshold compare): that is this
project's assumption, not a number Horowitz gives, and the profile's source says so.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from neurokd.errors import ConfigError

from .quantities import COST_KEYS

HOROWITZ = "Horowitz, 'Computing's energy problem', ISSCC 2014 (45 nm)"
DAVIES = "Davies et al., 'Loihi: a neuromorphic manycore processor', IEEE Micro 2018, Table 1"


@dataclass(frozen=True)
class EnergyProfile:
    """``costs``: pJ per unit, keyed by the cost keys of ``quantities.COSTS``; a key that is not
    there is not priced on this hardware (see the module docstring)."""

    name: str
    costs: Mapping[str, float] = field(hash=False)
    source: str
    file: str | None = field(default=None, compare=False)  # the TOML it came from, for errors

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"profile name must be a non-empty string, not {self.name!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError(f"profile {self.name}: source must say where the numbers come from")
        if not isinstance(self.costs, Mapping):
            raise ConfigError(f"profile {self.name}: costs must be a mapping of cost keys to pJ")
        for key, value in self.costs.items():
            if key not in COST_KEYS:
                raise ConfigError(f"profile {self.name}: unknown cost key {key!r}{_near(key)}; "
                                  f"cost keys: {', '.join(COST_KEYS)}")
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise ConfigError(f"profile {self.name}: {key} must be a number >= 0 (pJ), "
                                  f"not {value!r}")
        # In COSTS order whatever order they were given in, so tables and JSON read alike;
        # read-only, so a built-in profile cannot be changed by accident.
        ordered = {key: float(self.costs[key]) for key in COST_KEYS if key in self.costs}
        object.__setattr__(self, "costs", MappingProxyType(ordered))

    def to_dict(self) -> dict:
        """The profile in its TOML shape: name, the cost keys it gives, source."""
        return {"name": self.name, **self.costs, "source": self.source}

    @classmethod
    def from_dict(cls, values: Mapping, file: str | None = None) -> EnergyProfile:
        """A profile from its TOML shape (``name``, ``source`` and cost keys)."""
        keys = profile_keys()
        for key in values:
            if key not in keys:
                raise ConfigError(f"unknown profile key {key!r}{_near(key, keys)}; keys: "
                                  f"{', '.join(keys)}")
        missing = [key for key in ("name", "source") if key not in values]
        if missing:
            raise ConfigError(f"profile lacks {', '.join(missing)} (every profile names itself "
                              "and says where its numbers come from)")
        costs = {key: value for key, value in values.items() if key in COST_KEYS}
        return cls(values["name"], costs, values["source"], file)


def _near(key: str, keys=COST_KEYS) -> str:
    near = difflib.get_close_matches(key, list(keys), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


BUILTIN: dict[str, EnergyProfile] = {
    "45nm-fp32": EnergyProfile(
        "45nm-fp32", {"mac_pj": 4.6, "synop_pj": 0.9, "neuron_update_pj": 5.5,
                      "active_neuron_update_pj": 5.5},
        f"{HOROWITZ}: fp32 MAC 4.6 pJ (mult 3.7 + add 0.9), AC 0.9 pJ; neuron update = "
        "1 MAC + 1 AC (neurokd assumption)"),
    "45nm-int8": EnergyProfile(
        "45nm-int8", {"mac_pj": 0.23, "synop_pj": 0.03, "neuron_update_pj": 0.26,
                      "active_neuron_update_pj": 0.26},
        f"{HOROWITZ}: int8 MAC 0.23 pJ (mult 0.2 + add 0.03), AC 0.03 pJ; neuron update = "
        "1 MAC + 1 AC (neurokd assumption)"),
    # Davies et al. give no figure for a multiply-accumulate, and an ANN does not run on Loihi:
    # analog work (the encoding layer, the ANN reference) is priced as on a conventional 45 nm
    # fp32 core, the usual reference point, so the ratio reads "SNN on Loihi vs ANN on a CPU".
    "loihi": EnergyProfile(
        "loihi", {"mac_pj": 4.6, "synop_pj": 23.6, "neuron_update_pj": 52.0,
                  "active_neuron_update_pj": 81.0},
        f"{DAVIES}: synaptic spike op 23.6 pJ, neuron update 52 pJ inactive / 81 pJ active; "
        "MACs (analog encoding layer, ANN reference) at the 45 nm fp32 4.6 pJ of Horowitz, "
        "ISSCC 2014 (neurokd assumption: Loihi has no MAC figure)"),
}


def profile_keys() -> list[str]:
    """Every key a profile's TOML file may give."""
    return ["name", *COST_KEYS, "source"]


def load_profile(spec: str | Path | EnergyProfile) -> EnergyProfile:
    """A built-in profile by name, or a TOML file (``name``, ``source`` and cost keys)."""
    if isinstance(spec, EnergyProfile):
        return spec
    text = str(spec)
    if text in BUILTIN:
        return BUILTIN[text]
    path = Path(text)
    if path.suffix.lower() != ".toml" and not path.is_file():
        raise ConfigError(f"unknown energy profile {text!r}{_near(text, BUILTIN)}; built in: "
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
    try:
        return EnergyProfile.from_dict(values, str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
