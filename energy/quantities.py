"""The energy quantities: what is counted per layer, which profile cost prices it, and where its
energy adds up. One registry; the report table's columns, the ``--json`` keys, the totals, the
profile keys and the tables of docs/energy.md are all generated from it.

* :data:`COSTS` lists the profile keys (pJ per unit) a profile may give. A profile that lacks a
  key does not price that quantity on its hardware; a cost with a ``fallback`` is priced at the
  fallback's cost instead (a chip that does not price spiking neuron updates apart).
* :data:`QUANTITIES` lists what is counted. ``count`` turns one layer's run totals
  (:class:`~neurokd.energy.count.LayerEvents`) into a number; the pricing divides it by the
  samples, so every figure in a report is per inference. A quantity that is ``subset_of``
  another (active neuron updates are some of all neuron updates) is priced at its own cost and
  taken out of the other's count, so no unit is priced twice and the pricing code needs no case
  of its own for it.
* :data:`ENERGY_MODELS` says which quantities an estimate prices. A model needs the costs of
  all its quantities (fallbacks allowed) and refuses, naming the keys, a profile without them.
  A model that ``extends`` another prices the other's quantities too.

Adding a quantity: its counter and a :class:`Quantity` line here (a :class:`Cost` line as well
when no existing cost prices it), and the cost in the profiles of ``profiles.BUILTIN``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from neurokd.errors import ConfigError

from .count import LayerEvents, synops

if TYPE_CHECKING:  # profiles.py imports this module for its keys
    from .profiles import EnergyProfile


@dataclass(frozen=True)
class Cost:
    """A profile key: picojoules per unit of the quantities it prices."""

    key: str                    # TOML key of a profile and key of the JSON's profile_costs_pj
    header: str                 # column of `neurokd energy profiles`
    unit: str                   # what one unit is, for the docs
    fallback: str | None = None  # a profile lacking ``key`` prices with this cost instead


@dataclass(frozen=True)
class Quantity:
    """One counted quantity of a synaptic layer (with the neurons it feeds)."""

    name: str                   # key in a layer's counts, in its JSON row and in the totals
    header: str | None          # column of the report table; None: no column of its own
    cost: str                   # the Cost.key that prices one unit
    group: str                  # energy group: its energy adds to the row's "<group>_energy_pj"
    count: Callable[[LayerEvents], float]  # the layer's total over the run
    meaning: str                # for the docs
    subset_of: str | None = None  # these units are counted in that quantity too
    model: str = "compute"      # the energy model that introduces it

    @property
    def energy_key(self) -> str:
        return energy_key(self.group)


def energy_key(group: str) -> str:
    """JSON key of an energy group's picojoules in a layer row and in the totals."""
    return f"{group}_energy_pj"


# --- counters: one layer's run totals -> one number (see count.py for what is recorded) ----

def _synaptic_ops(layer: LayerEvents) -> float:
    if layer.geometry is None or not layer.spiking_input:
        return 0.0
    return synops(layer.input_events, layer.geometry)


def _macs(layer: LayerEvents) -> float:
    # Analog input is multiplied in full, whatever its values: fan-in x outputs per frame.
    if layer.geometry is None or layer.spiking_input:
        return 0.0
    return layer.frames * layer.geometry.macs_per_frame


def _neuron_updates(layer: LayerEvents) -> float:
    return layer.neuron_updates


def _active_neuron_updates(layer: LayerEvents) -> float:
    return layer.active_neuron_updates


COSTS: tuple[Cost, ...] = (
    Cost("mac_pj", "MAC", "one multiply-accumulate (analog inputs, the ANN reference)"),
    Cost("synop_pj", "synaptic op", "one synaptic operation: a spike times one fan-out weight"),
    Cost("neuron_update_pj", "neuron update", "one neuron, one timestep, without a spike"),
    Cost("active_neuron_update_pj", "active update", "one neuron, one timestep, in which it "
         "spiked", fallback="neuron_update_pj"),
)

QUANTITIES: tuple[Quantity, ...] = (
    Quantity("synops", "SOPs", "synop_pj", "synop", _synaptic_ops,
             "input spikes x fan-out, for a layer whose input held only 0/1 values"),
    Quantity("macs", "MACs", "mac_pj", "mac", _macs,
             "fan-in x outputs per timestep, for a layer whose input is analog (the encoding "
             "layer); the ANN reference's MACs"),
    Quantity("neuron_updates", "neuron updates", "neuron_update_pj", "neuron", _neuron_updates,
             "neurons x timesteps of the neuron layer(s) the layer feeds"),
    Quantity("active_neuron_updates", None, "active_neuron_update_pj", "neuron",
             _active_neuron_updates, "the neuron updates in which the neuron spiked",
             subset_of="neuron_updates"),
)


@dataclass(frozen=True)
class EnergyModel:
    """Which quantities an estimate prices."""

    name: str
    description: str
    extends: str | None = None

    def lineage(self) -> tuple[str, ...]:
        return (self.name, *(ENERGY_MODELS[self.extends].lineage() if self.extends else ()))

    @property
    def quantities(self) -> tuple[Quantity, ...]:
        models = self.lineage()
        return tuple(q for q in QUANTITIES if q.model in models)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(q.group for q in self.quantities))

    def unit_costs(self, profile: EnergyProfile) -> dict[str, float]:
        """pJ per unit of each of this model's quantities under ``profile``.

        Refused (``ConfigError`` naming the keys) when the profile lacks a cost the model
        needs; a cost with a fallback is priced at the fallback's cost when it is missing."""
        priced, missing = {}, []
        for quantity in self.quantities:
            chain = _fallback_chain(quantity.cost)
            given = next((key for key in chain if key in profile.costs), None)
            if given is None:
                missing.append(chain[-1])  # giving the last key of the chain is enough
            else:
                priced[quantity.name] = profile.costs[given]
        if missing:
            where = f"{profile.file}: " if profile.file else ""  # the TOML to fix
            raise ConfigError(
                f"{where}energy profile {profile.name!r} lacks {', '.join(dict.fromkeys(missing))}"
                f": the {self.name} energy model needs them (pJ per unit; see `neurokd energy "
                "profiles`)")
        return priced


ENERGY_MODELS: dict[str, EnergyModel] = {
    "compute": EnergyModel("compute", "operations only: synaptic ops, MACs, neuron updates"),
}

COST_KEYS = tuple(cost.key for cost in COSTS)


def _fallback_chain(key: str) -> list[str]:
    by_key = {cost.key: cost for cost in COSTS}
    chain = [key]
    while by_key[chain[-1]].fallback is not None:
        chain.append(by_key[chain[-1]].fallback)
    return chain


def energy_model(name: str | EnergyModel) -> EnergyModel:
    """The registered model of that name (an :class:`EnergyModel` is returned as it is)."""
    if isinstance(name, EnergyModel):
        return name
    if name not in ENERGY_MODELS:
        raise ConfigError(f"unknown energy model {name!r}; choices: {', '.join(ENERGY_MODELS)}")
    return ENERGY_MODELS[name]


def price_counts(counts: dict[str, float], unit_costs: dict[str, float],
                 model: EnergyModel) -> dict[str, float]:
    """pJ per energy group of one layer's ``counts`` (quantities not in ``counts`` are 0).

    A quantity's units that are also counted in a subset quantity are priced at the subset's
    cost, so each unit is priced once, at the cost that fits it."""
    energies = dict.fromkeys(model.groups, 0.0)
    for quantity in model.quantities:
        if quantity.name not in counts:
            continue
        units = counts[quantity.name] - sum(
            counts.get(part.name, 0.0) for part in model.quantities
            if part.subset_of == quantity.name)
        energies[quantity.group] += units * unit_costs[quantity.name]
    return energies
