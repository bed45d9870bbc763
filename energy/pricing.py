"""Counts x profile = energy: :func:`price` and the :class:`EnergyReport` it fills.

Every number in a report is per inference (one sample, all timesteps): totals over the run
divided by the samples counted. Which quantities are priced, their JSON keys, the totals and
the energy groups all come from the registry in ``quantities.py``; nothing here names one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .count import EventCounts
from .profiles import EnergyProfile
from .quantities import EnergyModel, Quantity, energy_key, energy_model, price_counts


@dataclass
class LayerEnergy:
    """One synaptic layer (with the neurons it feeds), per inference."""

    name: str
    kind: str                          # conv | dense | neuron (neurons with no layer before)
    input_event_rate: float | None     # share of input positions x timesteps holding an event
    counts: dict[str, float]           # {quantity name: units}
    output_firing_rate: float | None   # spikes per neuron update of the neurons it feeds
    group_energy_pj: dict[str, float]  # {energy group: pJ}

    @property
    def energy_pj(self) -> float:
        return sum(self.group_energy_pj.values())

    def to_dict(self) -> dict:
        """The layer's ``--json`` row. ``firing_rate`` is the input event rate: the key is kept
        from the files written before the attribute had its name."""
        return {"name": self.name, "kind": self.kind, "firing_rate": self.input_event_rate,
                **self.counts, "output_firing_rate": self.output_firing_rate,
                **{energy_key(group): pj for group, pj in self.group_energy_pj.items()},
                "energy_pj": self.energy_pj}


@dataclass
class AnnLayer:
    """One conv/linear of the ANN reference, per inference (only the quantities it counts)."""

    name: str
    counts: dict[str, float]
    group_energy_pj: dict[str, float]

    @property
    def energy_pj(self) -> float:
        return sum(self.group_energy_pj.values())

    def to_dict(self) -> dict:
        return {"name": self.name, **self.counts, "energy_pj": self.energy_pj}


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

    @property
    def quantities(self) -> tuple[Quantity, ...]:
        return energy_model(self.energy_model).quantities

    @property
    def snn_energy_pj(self) -> float:
        return sum(layer.energy_pj for layer in self.layers)

    @property
    def ann_energy_pj(self) -> float | None:
        return sum(layer.energy_pj for layer in self.ann_layers) if self.ann else None

    @property
    def ratio(self) -> float | None:
        """SNN energy / ANN energy (below 1: the SNN spends less)."""
        ann = self.ann_energy_pj
        return None if not ann else self.snn_energy_pj / ann

    def totals(self) -> dict[str, float]:
        """Each quantity and each energy group summed over the layers."""
        model = energy_model(self.energy_model)
        counts = {q.name: sum(layer.counts[q.name] for layer in self.layers)
                  for q in model.quantities}
        energies = {energy_key(group): sum(layer.group_energy_pj[group] for layer in self.layers)
                    for group in model.groups}
        return counts | energies

    def ann_totals(self) -> dict[str, float]:
        """The quantities the ANN reference counts, summed over its layers."""
        names = [q.name for q in self.quantities
                 if any(q.name in layer.counts for layer in self.ann_layers)]
        return {name: sum(layer.counts.get(name, 0.0) for layer in self.ann_layers)
                for name in names}

    def to_dict(self) -> dict:
        """Exactly what ``--json`` writes."""
        return {
            "profile": self.profile.name, "profile_source": self.profile.source,
            "profile_costs_pj": dict(self.profile.costs),
            "source": self.source, "counted_on": self.counted_on, "inputs": self.inputs,
            "samples": self.samples, "timesteps": self.timesteps,
            "snn_energy_pj": self.snn_energy_pj, "ann_energy_pj": self.ann_energy_pj,
            "ratio": self.ratio, "ann": self.ann, "note": self.note, "totals": self.totals(),
            "layers": [layer.to_dict() for layer in self.layers],
            "ann_layers": [layer.to_dict() for layer in self.ann_layers],
            "deployed": self.deployed.to_dict() if self.deployed else None,
        }


def price(counts: EventCounts, profile: EnergyProfile,
          model: str | EnergyModel = "compute") -> list[LayerEnergy]:
    """Per-inference counts and energy of every layer under ``profile``.

    Refused (``ConfigError`` naming the keys) when ``profile`` lacks a cost ``model`` needs."""
    model = energy_model(model)
    unit_costs = model.unit_costs(profile)
    rows = []
    for layer in counts.layers:
        per_inference = {q.name: q.count(layer) / counts.samples for q in model.quantities}
        rows.append(LayerEnergy(
            layer.name, layer.geometry.kind if layer.geometry else "neuron",
            layer.input_event_rate, per_inference, layer.output_firing_rate,
            price_counts(per_inference, unit_costs, model)))
    return rows


def price_ann(layer_counts: list[tuple[str, dict[str, float]]], profile: EnergyProfile,
              model: str | EnergyModel = "compute") -> list[AnnLayer]:
    """The ANN reference's layers (``(name, {quantity: units per inference})``) priced."""
    model = energy_model(model)
    unit_costs = model.unit_costs(profile)
    return [AnnLayer(name, counts, price_counts(counts, unit_costs, model))
            for name, counts in layer_counts]
