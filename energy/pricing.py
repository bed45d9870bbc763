"""Counts x profile = energy: :class:`Prices`, :func:`price` and the :class:`EnergyReport` it fills.

Every number in a report is per inference (one sample, all timesteps): totals over the run
divided by the samples counted. Which quantities are priced, their JSON keys, the totals, the
energy groups and parts all come from the registry in ``quantities.py``; nothing here names
one. A memory quantity's price per unit depends on the layer (the size of the buffer it
accesses), so :class:`Prices` prices layer by layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .break_even import break_even_rate, rate_line
from .events import EventCounts, LayerEvents
from .memory import BUFFERS, LAYOUTS, MemoryLayout, sram_pj_per_byte
from .profiles import EnergyProfile, load_profile
from .quantities import EnergyModel, Quantity, energy_key, energy_model, price_counts


@dataclass(frozen=True)
class Prices:
    """A profile's prices for one energy model and memory layout, checked when made: a
    profile lacking a cost the model needs is refused (``ConfigError`` naming the keys)."""

    profile: EnergyProfile
    model: EnergyModel
    layout: MemoryLayout
    unit_pj: Mapping[str, float] = field(hash=False)  # quantities with one price everywhere

    @classmethod
    def of(cls, profile: str | EnergyProfile, model: str | EnergyModel = "compute",
           layout: str | None = None) -> Prices:
        profile, model = load_profile(profile), energy_model(model)
        return cls(profile, model, LAYOUTS[layout or profile.memory_layout],
                   model.unit_costs(profile.costs, profile.name, profile.file))

    def buffer_bytes(self, layer: LayerEvents) -> dict[str, float]:
        """Bytes of each buffer the model's memory quantities access in ``layer``."""
        names = dict.fromkeys(q.access.buffer for q in self.model.quantities if q.access)
        return {name: float(sum(words * self.layout.word_bytes[kind]
                                for kind, words in BUFFERS[name](layer).items()))
                for name in names}

    def layer_energy(self, layer: LayerEvents, samples: int
                     ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """``(counts, {group: pJ}, buffer bytes)`` of ``layer`` per inference."""
        quantities = self.model.quantities
        counts = {q.name: q.count(layer) / samples for q in quantities}
        buffers = self.buffer_bytes(layer)
        unit = dict(self.unit_pj)
        for q in quantities:
            if q.access:
                unit[q.name] = self.layout.word_bytes[q.access.word] * sram_pj_per_byte(
                    self.profile.costs, buffers[q.access.buffer])
        return counts, price_counts(counts, unit, self.model), buffers

    def parts(self, groups: Mapping[str, float]) -> dict[str, float]:
        """{part: pJ} (compute, addressing, memory) of a layer's {group: pJ}."""
        return {part: sum(groups[g] for g in names) for part, names in self.model.parts.items()}


@dataclass
class LayerEnergy:
    """One synaptic layer (with the neurons it feeds), per inference."""

    name: str
    kind: str                          # conv | dense | neuron (neurons with no layer before)
    input_event_rate: float | None     # share of input positions x timesteps holding an event
    counts: dict[str, float]           # {quantity name: units}
    output_firing_rate: float | None   # spikes per neuron update of the neurons it feeds
    group_energy_pj: dict[str, float]  # {energy group: pJ}
    part_energy_pj: dict[str, float] = field(default_factory=dict)  # {part: pJ}
    # (pJ at input rate 0, pJ per unit of input rate): a spiking layer's energy as a line in
    # its input event rate, its other counts held (break_even.py); None for analog input
    rate_line_pj: tuple[float, float] | None = None
    buffer_bytes: dict[str, float] = field(default_factory=dict)  # memory model: buffer sizes

    @property
    def energy_pj(self) -> float:
        return sum(self.group_energy_pj.values())

    def to_dict(self) -> dict:
        """The layer's ``--json`` row. ``firing_rate`` is the input event rate: the key is kept
        from the files written before the attribute had its name."""
        row = {"name": self.name, "kind": self.kind, "firing_rate": self.input_event_rate,
               **self.counts, "output_firing_rate": self.output_firing_rate,
               **{energy_key(group): pj for group, pj in self.group_energy_pj.items()},
               **{energy_key(part): pj for part, pj in self.part_energy_pj.items()},
               "energy_pj": self.energy_pj}
        if self.buffer_bytes:
            row["buffer_bytes"] = dict(self.buffer_bytes)
        return row


@dataclass
class AnnLayer:
    """One conv/linear of the ANN reference, per inference (only the quantities it counts)."""

    name: str
    counts: dict[str, float]
    group_energy_pj: dict[str, float]
    part_energy_pj: dict[str, float] = field(default_factory=dict)

    @property
    def energy_pj(self) -> float:
        return sum(self.group_energy_pj.values())

    def to_dict(self) -> dict:
        return {"name": self.name, **self.counts,
                **{energy_key(part): pj for part, pj in self.part_energy_pj.items()},
                "energy_pj": self.energy_pj}


@dataclass
class EnergyReport:
    profile: EnergyProfile
    source: str                       # what was counted (checkpoint stem, model, npz file)
    inputs: str                       # what it ran on
    samples: int
    timesteps: int
    layers: list[LayerEnergy]
    counted_on: str = "pytorch"       # pytorch (float model) | lava | onnx (a deployed run)
    ann: str | None = None            # what the ANN reference is
    ann_layers: list[AnnLayer] = field(default_factory=list)
    note: str = ""
    deployed: EnergyReport | None = None
    energy_model: str = "compute"     # the ENERGY_MODELS entry that priced it
    memory_layout: str = "32bit"      # memory.LAYOUTS entry sizing the SNN's accesses
    ann_profile: str | None = None    # the profile that priced the ANN (None: ``profile``)
    neurobench: dict | None = None    # neurobench.NeuroBenchMetrics.to_dict(), --neurobench
    model: str = ""                   # what the student is, for titles (StudentSource.description)
    # An early exit (estimation.ExitChoice): ``layers`` then price each sample up to its exit
    # step and ``full_layers`` all T steps; ``exit`` holds rule, threshold, origin,
    # mean_timesteps, accuracy (None without labels) and exit_histogram.
    exit: dict | None = None
    full_layers: list[LayerEnergy] | None = None
    accuracy_by_timestep: list[float] | None = None  # prefix accuracy, t = 1..T (labels given)

    @property
    def quantities(self) -> tuple[Quantity, ...]:
        return energy_model(self.energy_model).quantities

    @property
    def snn_energy_pj(self) -> float:
        return sum(layer.energy_pj for layer in self.layers)

    @property
    def snn_energy_full_pj(self) -> float:
        """The SNN's energy at all T timesteps (``snn_energy_pj`` when nothing exits early)."""
        layers = self.layers if self.full_layers is None else self.full_layers
        return sum(layer.energy_pj for layer in layers)

    @property
    def exit_ratio(self) -> float | None:
        """Energy with the exit / energy at full T (None without an exit)."""
        full = self.snn_energy_full_pj
        return None if self.exit is None or not full else self.snn_energy_pj / full

    @property
    def ann_energy_pj(self) -> float | None:
        return sum(layer.energy_pj for layer in self.ann_layers) if self.ann else None

    @property
    def ratio(self) -> float | None:
        """SNN energy / ANN energy (below 1: the SNN spends less)."""
        ann = self.ann_energy_pj
        return None if not ann else self.snn_energy_pj / ann

    def break_even(self, layer: LayerEnergy) -> float | None:
        """The input event rate at which ``layer`` costs as much as the ANN layer of its name
        (below it the spiking layer costs less); None without a spiking input or such a layer."""
        ann = {a.name: a for a in self.ann_layers}.get(layer.name) if self.ann else None
        return None if ann is None else break_even_rate(layer.rate_line_pj, ann.energy_pj)

    def totals(self) -> dict[str, float]:
        """Each quantity, each energy group and each part summed over the layers."""
        model = energy_model(self.energy_model)
        counts = {q.name: sum(layer.counts[q.name] for layer in self.layers)
                  for q in model.quantities}
        energies = {energy_key(name): sum(layer.group_energy_pj[name] for layer in self.layers)
                    for name in model.groups}
        parts = {energy_key(part): sum(layer.part_energy_pj.get(part, 0.0)
                                       for layer in self.layers) for part in model.parts}
        return counts | energies | parts

    def ann_totals(self) -> dict[str, float]:
        """The quantities the ANN reference counts, and its parts, summed over its layers."""
        names = [q.name for q in self.quantities
                 if any(q.name in layer.counts for layer in self.ann_layers)]
        parts = dict.fromkeys(p for layer in self.ann_layers for p in layer.part_energy_pj)
        return {name: sum(layer.counts.get(name, 0.0) for layer in self.ann_layers)
                for name in names} | {
            energy_key(p): sum(layer.part_energy_pj.get(p, 0.0) for layer in self.ann_layers)
            for p in parts}

    def _layer_dict(self, layer: LayerEnergy) -> dict:
        rate = self.break_even(layer)
        below = None if rate is None or layer.input_event_rate is None \
            else layer.input_event_rate < rate
        return layer.to_dict() | {"break_even_rate": rate, "below_break_even": below}

    def to_dict(self) -> dict:
        """Exactly what ``--json`` writes."""
        prices_memory = any(q.access for q in self.quantities)
        layout = LAYOUTS[self.memory_layout]
        return {
            "profile": self.profile.name, "profile_source": self.profile.source,
            "profile_costs_pj": dict(self.profile.costs),
            "profile_cost_sources": {key: self.profile.cost_source(key)
                                     for key in self.profile.costs},
            "energy_model": self.energy_model,
            "memory_layout": ({"name": layout.name, "word_bytes": dict(layout.word_bytes),
                               "source": layout.source} if prices_memory else None),
            "source": self.source, "counted_on": self.counted_on, "inputs": self.inputs,
            "samples": self.samples, "timesteps": self.timesteps,
            "snn_energy_pj": self.snn_energy_pj, "snn_energy_full_pj": self.snn_energy_full_pj,
            "exit": dict(self.exit) if self.exit else None, "exit_energy_ratio": self.exit_ratio,
            "accuracy_by_timestep": self.accuracy_by_timestep,
            "ann_energy_pj": self.ann_energy_pj,
            "ratio": self.ratio, "ann": self.ann,
            "ann_profile": (self.ann_profile or self.profile.name) if self.ann else None,
            "note": self.note, "totals": self.totals(),
            "layers": [self._layer_dict(layer) for layer in self.layers],
            "ann_layers": [layer.to_dict() for layer in self.ann_layers],
            "neurobench": self.neurobench,
            "deployed": self.deployed.to_dict() if self.deployed else None,
        }


def price(counts: EventCounts, profile: EnergyProfile | Prices,
          model: str | EnergyModel = "compute") -> list[LayerEnergy]:
    """Per-inference counts and energy of every layer under ``profile`` (or ready ``Prices``).

    Refused (``ConfigError`` naming the keys) when ``profile`` lacks a cost ``model`` needs."""
    prices = profile if isinstance(profile, Prices) else Prices.of(profile, model)
    rows = []
    for layer in counts.layers:
        per_inference, groups, buffers = prices.layer_energy(layer, counts.samples)
        rows.append(LayerEnergy(
            layer.name, layer.geometry.kind if layer.geometry else "neuron",
            layer.input_event_rate, per_inference, layer.output_firing_rate, groups,
            prices.parts(groups), rate_line(layer, prices, counts.samples),
            _used_buffers(prices, per_inference, buffers)))
    return rows


def _used_buffers(prices: Prices, counts: dict[str, float],
                  buffers: dict[str, float]) -> dict[str, float]:
    """The buffers the layer's counted accesses went to (for the JSON)."""
    used = {q.access.buffer for q in prices.model.quantities if q.access and counts[q.name]}
    return {name: size for name, size in buffers.items() if name in used}


def price_ann(layers: list[LayerEvents], prices: Prices, samples: int = 1) -> list[AnnLayer]:
    """The ANN reference's layers priced; each row keeps the quantities an ANN counts (those
    non-zero in some layer)."""
    priced = [prices.layer_energy(layer, samples) for layer in layers]
    kept = [q.name for q in prices.model.quantities if any(c[q.name] for c, _, _ in priced)]
    return [AnnLayer(layer.name, {name: counts[name] for name in kept}, groups,
                     prices.parts(groups))
            for layer, (counts, groups, _) in zip(layers, priced, strict=True)]
