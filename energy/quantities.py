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
  A model that ``extends`` another prices the other's quantities too, except those it
  ``replaces`` with its own count of the same thing.
* A quantity with an :class:`Access` is a memory access: it counts words of one kind, priced
  per byte (the layout's bytes per word, ``memory.LAYOUTS``) at the SRAM cost of the buffer it
  goes to, which depends on that buffer's size (``memory.BUFFERS``, ``memory.SRAM_POINTS``).
* Each quantity's energy adds to its ``group`` and its group to a ``part``: compute,
  addressing or memory (:data:`PARTS`), the split the report prints per layer.

Adding a quantity: its counter and a :class:`Quantity` line here (a :class:`Cost` line as well
when no existing cost prices it), and the cost in the profiles of ``profiles.BUILTIN``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from neurokd.errors import ConfigError

from . import memory
from .events import LayerEvents, synops
from .memory import SRAM_POINTS


@dataclass(frozen=True)
class Cost:
    """A profile key: picojoules per unit of the quantities it prices."""

    key: str                    # TOML key of a profile and key of the JSON's profile_costs_pj
    header: str                 # column of `neurokd energy profiles`
    unit: str                   # what one unit is, for the docs
    fallback: str | None = None  # a profile lacking ``key`` prices with this cost instead


@dataclass(frozen=True)
class Access:
    """What one unit of a memory quantity is: a word of ``word`` (a ``memory.WORDS`` kind) read
    or written in the buffer ``buffer`` (a ``memory.BUFFERS`` name)."""

    word: str
    buffer: str


@dataclass(frozen=True)
class Quantity:
    """One counted quantity of a synaptic layer (with the neurons it feeds)."""

    name: str                   # key in a layer's counts, in its JSON row and in the totals
    header: str | None          # column of the report table; None: no column of its own
    cost: str                   # the Cost.key that prices one unit ("sram": the SRAM curve)
    group: str                  # energy group: its energy adds to the row's "<group>_energy_pj"
    count: Callable[[LayerEvents], float]  # the layer's total over the run
    meaning: str                # for the docs
    subset_of: str | None = None  # these units are counted in that quantity too
    model: str = "compute"      # the energy model that introduces it
    part: str = "compute"       # compute | addressing | memory (PARTS)
    access: Access | None = None  # a memory access (cost "sram"), priced per byte

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


def _size(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"


SRAM = "sram"  # the cost of memory quantities: the curve through the SRAM_POINTS keys
PARTS = ("compute", "addressing", "memory")

COSTS: tuple[Cost, ...] = (
    Cost("mac_pj", "MAC", "one multiply-accumulate (analog inputs, the ANN reference)"),
    Cost("synop_pj", "synaptic op", "one synaptic operation: a spike times one fan-out weight"),
    Cost("neuron_update_pj", "neuron update", "one neuron, one timestep, without a spike"),
    Cost("active_neuron_update_pj", "active update", "one neuron, one timestep, in which it "
         "spiked", fallback="neuron_update_pj"),
    Cost("bias_add_pj", "bias add", "one bias added to one output in one timestep",
         fallback="synop_pj"),
    Cost("address_add_pj", "address add", "one integer add computing a memory address"),
    Cost("address_mac_pj", "address MAC", "one integer multiply-add computing a memory address"),
    *(Cost(key, f"SRAM {_size(size)}", f"one byte read or written in an SRAM of "
           f"{_size(size)} (the cost of a buffer of another size is interpolated linearly, "
           "0 at 0 bytes, flat above 1 MiB)") for size, key in SRAM_POINTS),
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
    # --- memory: Lemaire et al. 2022 (see memory.py for the conventions) ---
    Quantity("fanout_synops", "fan-out SOPs", "synop_pj", "synop", memory.fanout_synops,
             "input spikes x C_out/groups x prod(ceil(k/s)) (dense: out_features): Lemaire's "
             "fan-out, borders included (replaces the border-exact `synops`)", model="memory"),
    Quantity("bias_adds", None, "bias_add_pj", "bias", memory.bias_adds,
             "outputs x timesteps of a layer with a bias (or a BatchNorm after it)",
             model="memory"),
    Quantity("address_adds", None, "address_add_pj", "address", memory.address_adds,
             "address adds: one per weight a spike touches; inputs + outputs (+ the kernel's "
             "C_out x kH x kW) per timestep for analog input", model="memory",
             part="addressing"),
    Quantity("address_macs", None, "address_mac_pj", "address", memory.address_macs,
             "two per input spike of a conv (to locate its first output)", model="memory",
             part="addressing"),
    *(Quantity(name, None, SRAM, group, counter, meaning, model="memory", part="memory",
               access=Access(word, buffer))
      for name, group, counter, word, buffer, meaning in (
          ("event_reads", "io", memory.event_reads, "event", "spike_fifo",
           "input spikes read from the spike FIFO"),
          ("activation_reads", "io", memory.activation_reads, "activation", "input_frame",
           "analog inputs read: one per MAC for a conv, each input once for a dense layer"),
          ("event_writes", "io", memory.event_writes, "event", "spike_fifo",
           "output spikes written to the spike FIFO"),
          ("activation_writes", "io", memory.activation_writes, "activation", "output_frame",
           "outputs written to memory (an ANN's layers; an SNN's neurons hold theirs)"),
          ("weight_reads", "weights", memory.weight_reads, "weight", "parameters",
           "weights read: those each input spike touches, all of them per timestep for "
           "analog input"),
          ("bias_reads", "weights", memory.bias_adds, "bias", "parameters",
           "one bias read per bias add"),
          ("synapse_potential_accesses", "potentials", memory.synapse_potential_accesses,
           "potential", "output_potentials",
           "membrane potentials read and written by input spikes: 2 per weight read"),
          ("neuron_potential_accesses", "potentials", memory.neuron_potential_accesses,
           "potential", "neuron_potentials",
           "membrane potentials read and written by the neuron updates: 2 per neuron and "
           "timestep"),
      )),
    # --- memory-exact: the memory model with the border- and stride-exact fan-out ---
    Quantity("exact_address_adds", None, "address_add_pj", "address",
             memory.exact(memory.address_adds), "address adds, one per output a spike reaches",
             model="memory-exact", part="addressing"),
    Quantity("exact_weight_reads", None, SRAM, "weights", memory.exact(memory.weight_reads),
             "weights read, one per output a spike reaches", model="memory-exact",
             part="memory", access=Access("weight", "parameters")),
    Quantity("exact_synapse_potential_accesses", None, SRAM, "potentials",
             memory.exact(memory.synapse_potential_accesses, per_synop=2),
             "membrane potentials read and written, 2 per output a spike reaches",
             model="memory-exact", part="memory", access=Access("potential", "output_potentials")),
)


@dataclass(frozen=True)
class EnergyModel:
    """Which quantities an estimate prices."""

    name: str
    description: str
    extends: str | None = None
    # (quantity of the extended model, this model's own count of it), e.g. Lemaire's fan-out
    # for the border-exact SOPs: the replacement takes the replaced quantity's place.
    replaces: tuple[tuple[str, str], ...] = ()

    def lineage(self) -> tuple[str, ...]:
        return (self.name, *(ENERGY_MODELS[self.extends].lineage() if self.extends else ()))

    @property
    def quantities(self) -> tuple[Quantity, ...]:
        """The ancestors' quantities first (a replacement in the place of what it replaces),
        then this model's own."""
        by_name = {q.name: q for q in QUANTITIES}
        if self.extends is None:
            names = [q.name for q in QUANTITIES if q.model == self.name]
        else:
            swaps = dict(self.replaces)
            names = [swaps.get(q.name, q.name) for q in ENERGY_MODELS[self.extends].quantities]
            names += [q.name for q in QUANTITIES
                      if q.model == self.name and q.name not in names]
        return tuple(by_name[name] for name in names)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(q.group for q in self.quantities))

    @property
    def parts(self) -> dict[str, tuple[str, ...]]:
        """{part: its energy groups}, for the parts this model prices (in PARTS order)."""
        parts = {part: tuple(dict.fromkeys(q.group for q in self.quantities if q.part == part))
                 for part in PARTS}
        return {part: groups for part, groups in parts.items() if groups}

    def unit_costs(self, costs: Mapping[str, float], profile: str,
                   file: str | None = None) -> dict[str, float]:
        """pJ per unit of each of this model's quantities that has one cost, from the
        ``costs`` (cost key -> pJ) of the profile named ``profile`` (read from ``file``, if it
        came from one); memory accesses are priced per layer, at their buffer's SRAM cost.

        Refused (``ConfigError`` naming the keys) when the profile lacks a cost the model
        needs; a cost with a fallback is priced at the fallback's cost when it is missing."""
        priced, missing = {}, []
        for quantity in self.quantities:
            if quantity.cost == SRAM:
                missing += [key for _, key in SRAM_POINTS if key not in costs]
                continue
            chain = _fallback_chain(quantity.cost)
            given = next((key for key in chain if key in costs), None)
            if given is None:
                missing.append(chain[-1])  # giving the last key of the chain is enough
            else:
                priced[quantity.name] = costs[given]
        if missing:
            where = f"{file}: " if file else ""  # the TOML to fix
            raise ConfigError(
                f"{where}energy profile {profile!r} lacks {', '.join(dict.fromkeys(missing))}"
                f": the {self.name} energy model needs them (pJ per unit; see `neurokd energy "
                "profiles`)")
        return priced

    def needs(self, key: str) -> bool:
        """Whether a profile must give the cost ``key`` (or a fallback of it) for this model."""
        return any(key in (_fallback_chain(q.cost) if q.cost != SRAM
                           else [k for _, k in SRAM_POINTS]) for q in self.quantities)


ENERGY_MODELS: dict[str, EnergyModel] = {
    "compute": EnergyModel("compute", "operations only: synaptic ops, MACs, neuron updates"),
    "memory": EnergyModel(
        "memory", "Lemaire et al. 2022: operations + addressing + input/output, weight and "
        "membrane-potential memory traffic, per-access cost by buffer size",
        extends="compute", replaces=(("synops", "fanout_synops"),)),
    "memory-exact": EnergyModel(
        "memory-exact", "memory with the exact fan-out: one synaptic op, weight read, "
        "potential read and write and address add per output a spike reaches (borders and "
        "strides exact, as the compute model's SOPs)", extends="memory",
        replaces=(("fanout_synops", "synops"), ("address_adds", "exact_address_adds"),
                  ("weight_reads", "exact_weight_reads"),
                  ("synapse_potential_accesses", "exact_synapse_potential_accesses"))),
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
    quantities = model.quantities
    energies = dict.fromkeys(dict.fromkeys(q.group for q in quantities), 0.0)
    for quantity in quantities:
        if quantity.name not in counts:
            continue
        units = counts[quantity.name] - sum(
            counts.get(part.name, 0.0) for part in quantities
            if part.subset_of == quantity.name)
        energies[quantity.group] += units * unit_costs[quantity.name]
    return energies
