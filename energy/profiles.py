"""Hardware cost tables: picojoules per counted unit, each cost with the source of its number.

Built in: ``45nm-fp32`` and ``45nm-int8`` (Horowitz, ISSCC 2014: 32-bit float add 0.9 pJ,
multiply 3.7 pJ; 8-bit integer add 0.03 pJ, multiply 0.2 pJ), ``lemaire-2022`` (the 45 nm
32-bit integer costs of Lemaire et al. 2022, spikingjelly 2.0's defaults) and ``loihi``
(Davies et al., IEEE Micro 2018, Table 1). A user TOML file is a profile too::

    name = "my-chip"
    mac_pj = 3.1                    # one multiply-accumulate (analog inputs, the ANN)
    synop_pj = 0.4                  # one synaptic operation: a spike times one fan-out weight
    neuron_update_pj = 1.0          # one neuron, one timestep, no spike
    active_neuron_update_pj = 1.2   # one neuron, one timestep, in which it spiked
    source = "datasheet, rev 2"
    memory_layout = "int8"          # bytes per word (energy.memory.LAYOUTS); default 32bit
    [sources]                       # optional: where each cost comes from
    mac_pj = "datasheet table 3"

``name`` and ``source`` are required; the cost keys are those of ``quantities.COSTS``, and a
profile may leave any of them out: a missing key means "not priced on this hardware". The
energy model an estimate uses then refuses the profile, naming the key, if it needs that cost
(``quantities.EnergyModel.unit_costs``), unless the cost has a fallback (a missing
``active_neuron_update_pj`` prices spiking updates at ``neuron_update_pj``). So a profile
written before a quantity was added keeps loading, and keeps pricing the models it can: a
compute-only profile works for ``--energy-model compute`` and is refused for ``memory``.

``ann_profile`` names the built-in profile that prices the ANN reference when this hardware
does not run ANNs (``loihi``: the ANN runs on a conventional 45 nm core).

On the 45 nm profiles a synaptic operation is one add (AC). A neuron update is priced as one
MAC plus one AC (the LIF leak multiply-accumulate and the threshold compare): that is this
project's assumption, not a number Horowitz gives, and the cost's source says so.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from neurokd.errors import ConfigError, NeuroKDError
from neurokd.files.safe_io import read_small_text
from neurokd.validation import MAX_TEXT

from .memory import LAYOUTS
from .quantities import COST_KEYS

# The most one operation or byte may cost (1 J): a cost of 1e308 pJ times any count overflows
# to inf, which would print as "inf mJ" and could not be written as JSON.
MAX_COST_PJ = 1e12

HOROWITZ = "Horowitz, 'Computing's energy problem', ISSCC 2014 (45 nm)"
DAVIES = "Davies et al., 'Loihi: a neuromorphic manycore processor', IEEE Micro 2018, Table 1"
LEMAIRE = "Lemaire et al., ICONIP 2022 (arXiv 2210.13107)"
# Keys of a profile's TOML besides the costs, in the order files and tables show them.
OPTIONAL_KEYS = ("sources", "memory_layout", "ann_profile")


@dataclass(frozen=True)
class EnergyProfile:
    """``costs``: pJ per unit, keyed by the cost keys of ``quantities.COSTS``; a key that is not
    there is not priced on this hardware (see the module docstring). ``cost_sources`` says
    where each cost comes from (``source`` covers the profile as a whole)."""

    name: str
    costs: Mapping[str, float] = field(hash=False)
    source: str
    file: str | None = field(default=None, compare=False)  # the TOML it came from, for errors
    cost_sources: Mapping[str, str] = field(default_factory=dict, hash=False)
    memory_layout: str = "32bit"        # energy.memory.LAYOUTS: bytes per word
    ann_profile: str | None = None      # the built-in profile that prices the ANN reference

    def __post_init__(self) -> None:
        if not _is_text(self.name):
            raise ConfigError(f"profile name must be a non-empty string, not {self.name!r:.60}")
        if not _is_text(self.source):
            raise ConfigError(f"profile {self.name}: source must say where the numbers come from")
        if not isinstance(self.costs, Mapping):
            raise ConfigError(f"profile {self.name}: costs must be a mapping of cost keys to pJ")
        for key, value in self.costs.items():
            if key not in COST_KEYS:
                raise ConfigError(f"profile {self.name}: unknown cost key {key!r}{_near(key)}; "
                                  f"cost keys: {', '.join(COST_KEYS)}")
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or not 0 <= value <= MAX_COST_PJ:
                raise ConfigError(f"profile {self.name}: {key} must be a number from 0 to "
                                  f"{MAX_COST_PJ:g} pJ, not {value!r:.40}")
        self._check_extras()
        # In COSTS order whatever order they were given in, so tables and JSON read alike;
        # read-only, so a built-in profile cannot be changed by accident.
        ordered = {key: float(self.costs[key]) for key in COST_KEYS if key in self.costs}
        object.__setattr__(self, "costs", MappingProxyType(ordered))
        object.__setattr__(self, "cost_sources", MappingProxyType(
            {key: self.cost_sources[key] for key in COST_KEYS if key in self.cost_sources}))

    def _check_extras(self) -> None:
        if not isinstance(self.cost_sources, Mapping) or any(
                not isinstance(v, str) or not v.strip() for v in self.cost_sources.values()):
            raise ConfigError(f"profile {self.name}: sources must map cost keys to strings")
        for key in self.cost_sources:
            if key not in self.costs:
                raise ConfigError(f"profile {self.name}: sources names {key!r}, a cost the "
                                  f"profile does not give{_near(key, list(self.costs))}")
        if not isinstance(self.memory_layout, str) or self.memory_layout not in LAYOUTS:
            raise ConfigError(f"profile {self.name}: memory_layout must be one of "
                              f"{', '.join(LAYOUTS)}, not {self.memory_layout!r}")
        if self.ann_profile is not None and not isinstance(self.ann_profile, str):
            raise ConfigError(f"profile {self.name}: ann_profile must name a built-in profile")

    def cost_source(self, key: str) -> str:
        """Where the cost ``key`` comes from: its own source, else the profile's."""
        return self.cost_sources.get(key, self.source)

    def to_dict(self) -> dict:
        """The profile in its TOML shape: name, the cost keys it gives, source, the rest."""
        extras = {"sources": dict(self.cost_sources), "memory_layout": self.memory_layout,
                  "ann_profile": self.ann_profile}
        return {"name": self.name, **self.costs, "source": self.source,
                **{k: v for k, v in extras.items() if v}}

    @classmethod
    def from_dict(cls, values: Mapping, file: str | None = None) -> EnergyProfile:
        """A profile from its TOML shape (``name``, ``source``, cost keys, optional keys)."""
        keys = profile_keys()
        for key in values:
            if key not in keys:
                raise ConfigError(f"unknown profile key {key!r}{_near(key, keys)}; keys: "
                                  f"{', '.join(keys)}")
        missing = [key for key in ("name", "source") if key not in values]
        if missing:
            raise ConfigError(f"profile lacks {', '.join(missing)} (every profile names itself "
                              "and says where its numbers come from)")
        ann = values.get("ann_profile")
        if ann is not None and (not isinstance(ann, str) or ann not in BUILTIN):
            raise ConfigError(f"ann_profile {ann!r} is not a built-in profile{_near(str(ann), BUILTIN)}"
                              f"; built in: {', '.join(BUILTIN)}")
        costs = {key: value for key, value in values.items() if key in COST_KEYS}
        return cls(values["name"], costs, values["source"], file, values.get("sources", {}),
                   values.get("memory_layout", "32bit"), ann)


def _is_text(value) -> bool:
    """A name or source a table can print: non-empty, no NUL or other control character."""
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_TEXT and \
        value.isprintable()


def _near(key: str, keys=COST_KEYS) -> str:
    near = difflib.get_close_matches(key, list(keys), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


_FP32_MAC = f"{HOROWITZ}: fp32 multiply 3.7 + add 0.9 pJ"
_NEURON = "neurokd assumption: 1 MAC + 1 AC (the leak and the threshold compare)"
# The memory model's costs that the 45 nm profiles share: addresses are 32-bit integers
# whatever the data type, and an SRAM access costs per byte whatever it holds.
_SRAM_45NM = (f"{LEMAIRE} after {HOROWITZ}: 10 / 20 / 100 pJ per 32-bit access of an 8 KiB / "
              "32 KiB / 1 MiB SRAM, i.e. 2.5 / 5 / 25 pJ per byte (spikingjelly 2.0's "
              "LemaireEnergyCostConfig)")
_MEMORY_45NM = {"address_add_pj": 0.1, "address_mac_pj": 3.2, "sram_8kib_pj": 2.5,
                "sram_32kib_pj": 5.0, "sram_1mib_pj": 25.0}
_MEMORY_45NM_SOURCES = {"address_add_pj": f"{HOROWITZ}: 32-bit integer add 0.1 pJ",
                        "address_mac_pj": f"{HOROWITZ}: 32-bit integer multiply 3.1 + add 0.1 pJ",
                        **dict.fromkeys(("sram_8kib_pj", "sram_32kib_pj", "sram_1mib_pj"),
                                        _SRAM_45NM)}
_INCLUDED = (f"{DAVIES}: 0, the measured energies per synaptic op and per neuron update include "
             "the core's own SRAM reads and writes, address computation and bias add")

BUILTIN: dict[str, EnergyProfile] = {
    "45nm-fp32": EnergyProfile(
        "45nm-fp32", {"mac_pj": 4.6, "synop_pj": 0.9, "neuron_update_pj": 5.5,
                      "active_neuron_update_pj": 5.5, "bias_add_pj": 0.9, **_MEMORY_45NM},
        f"{HOROWITZ}: fp32 MAC 4.6 pJ (mult 3.7 + add 0.9), AC 0.9 pJ; neuron update = "
        "1 MAC + 1 AC (neurokd assumption); memory as Lemaire et al. 2022",
        cost_sources={"mac_pj": _FP32_MAC, "synop_pj": f"{HOROWITZ}: fp32 add 0.9 pJ",
                      "neuron_update_pj": _NEURON, "active_neuron_update_pj": _NEURON,
                      "bias_add_pj": f"{HOROWITZ}: fp32 add 0.9 pJ", **_MEMORY_45NM_SOURCES}),
    "45nm-int8": EnergyProfile(
        "45nm-int8", {"mac_pj": 0.23, "synop_pj": 0.03, "neuron_update_pj": 0.26,
                      "active_neuron_update_pj": 0.26, "bias_add_pj": 0.1, **_MEMORY_45NM},
        f"{HOROWITZ}: int8 MAC 0.23 pJ (mult 0.2 + add 0.03), AC 0.03 pJ; neuron update = "
        "1 MAC + 1 AC (neurokd assumption); memory as Lemaire et al. 2022 with 8-bit weights",
        cost_sources={"mac_pj": f"{HOROWITZ}: int8 multiply 0.2 + add 0.03 pJ",
                      "synop_pj": f"{HOROWITZ}: int8 add 0.03 pJ",
                      "neuron_update_pj": _NEURON, "active_neuron_update_pj": _NEURON,
                      "bias_add_pj": f"{HOROWITZ}: 32-bit integer add 0.1 pJ (int32 biases)",
                      **_MEMORY_45NM_SOURCES},
        memory_layout="int8"),
    "lemaire-2022": EnergyProfile(
        "lemaire-2022", {"mac_pj": 3.2, "synop_pj": 0.1, "neuron_update_pj": 3.2,
                         "active_neuron_update_pj": 3.3, "bias_add_pj": 0.1, **_MEMORY_45NM},
        f"{LEMAIRE}: 45 nm 32-bit integer add 0.1 pJ, multiply 3.1 pJ ({HOROWITZ}); a LIF "
        "update is its leak multiply-add, a spike one add more: with --energy-model memory, "
        "spikingjelly 2.0's estimate_lemaire_energy",
        cost_sources={"mac_pj": f"{LEMAIRE}: multiply 3.1 + add 0.1 pJ",
                      "synop_pj": f"{LEMAIRE}: one add, 0.1 pJ",
                      "neuron_update_pj": f"{LEMAIRE}: the LIF leak, one multiply-add",
                      "active_neuron_update_pj": f"{LEMAIRE}: the leak plus one add per spike",
                      "bias_add_pj": f"{LEMAIRE}: one add", **_MEMORY_45NM_SOURCES}),
    # Davies et al. give no figure for a multiply-accumulate, and an ANN does not run on Loihi:
    # analog work in the SNN (the encoding layer) is priced as on a conventional 45 nm fp32
    # core, and the ANN reference by the 45nm-fp32 profile (ann_profile), so the ratio reads
    # "SNN on Loihi vs ANN on a 45 nm core".
    "loihi": EnergyProfile(
        "loihi", {"mac_pj": 4.6, "synop_pj": 23.6, "neuron_update_pj": 52.0,
                  "active_neuron_update_pj": 81.0, "bias_add_pj": 0.0, "address_add_pj": 0.0,
                  "address_mac_pj": 0.0, "sram_8kib_pj": 0.0, "sram_32kib_pj": 0.0,
                  "sram_1mib_pj": 0.0},
        f"{DAVIES}: synaptic spike op 23.6 pJ, neuron update 52 pJ inactive / 81 pJ active, "
        "memory traffic included in them; MACs (analog encoding layer) at the 45 nm fp32 4.6 pJ "
        "of Horowitz, ISSCC 2014 (neurokd assumption: Loihi has no MAC figure)",
        cost_sources={"mac_pj": f"{_FP32_MAC} (neurokd assumption: Loihi has no MAC figure)",
                      "synop_pj": f"{DAVIES}: synaptic spike op (min) 23.6 pJ",
                      "neuron_update_pj": f"{DAVIES}: neuron update, inactive, 52 pJ",
                      "active_neuron_update_pj": f"{DAVIES}: neuron update, active, 81 pJ",
                      **dict.fromkeys(("bias_add_pj", "address_add_pj", "address_mac_pj",
                                       "sram_8kib_pj", "sram_32kib_pj", "sram_1mib_pj"),
                                      _INCLUDED)},
        memory_layout="loihi", ann_profile="45nm-fp32"),
}


def profile_keys() -> list[str]:
    """Every key a profile's TOML file may give."""
    return ["name", *COST_KEYS, "source", *OPTIONAL_KEYS]


def ann_pricing_profile(profile: EnergyProfile) -> EnergyProfile:
    """The profile that prices ``profile``'s ANN reference (itself unless it names another)."""
    return BUILTIN[profile.ann_profile] if profile.ann_profile else profile


def load_profile(spec: str | Path | EnergyProfile) -> EnergyProfile:
    """A built-in profile by name, or a TOML file (``name``, ``source`` and cost keys)."""
    if isinstance(spec, EnergyProfile):
        return spec
    text = str(spec)
    if text in BUILTIN:
        return BUILTIN[text]
    path = Path(text)
    # a FIFO or a folder under the name is a file given (refused by name below), not a typo
    if path.suffix.lower() != ".toml" and not path.exists():
        raise ConfigError(f"unknown energy profile {text!r}{_near(text, BUILTIN)}; built in: "
                          f"{', '.join(BUILTIN)}, or a TOML file with keys "
                          f"{', '.join(profile_keys())}")
    return _profile_from_toml(path)


def _profile_from_toml(path: Path) -> EnergyProfile:
    try:  # a regular file of at most 1 MB (not /dev/zero), UTF-8
        text = read_small_text(path, "energy profile")
    except NeuroKDError as exc:
        raise ConfigError(str(exc)) from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML in energy profile {path}: {exc}") from None
    except RecursionError:  # arrays nested thousands deep
        raise ConfigError(f"malformed TOML in energy profile {path}: nested too deeply") from None
    except ValueError as exc:  # an integer of 100,000 digits (Python's int-to-str limit)
        raise ConfigError(f"malformed TOML in energy profile {path}: {str(exc).splitlines()[0][:160]}") \
            from None
    try:
        return EnergyProfile.from_dict(values, str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
