"""Energy estimates of spiking students from counted operations and spike rates.

``estimate(model, inputs, profile="45nm-fp32", ann=None) -> EnergyReport`` counts a student on
real inputs (the quantities of ``QUANTITIES`` per layer: SOPs, MACs, neuron updates) and prices
the counts with a hardware profile (``PROFILES``, or a TOML file); ``price_spike_counts`` prices
the spike-count file of a deployed run; ``estimate_from_options`` is ``neurokd energy report``
as one call. docs/energy.md explains the counting, the quantities, the profiles and the JSON.

Submodules: ``count`` (hooks and event records), ``quantities`` (the registry), ``profiles``,
``pricing``, ``ann`` (the ANN reference), ``estimation`` (the calls above), ``spike_counts``
(the file format), ``render`` (table, JSON, plot), ``doc_tables`` (docs/energy.md's tables).
"""

from .count import EventCounts, LayerEvents, LayerGeometry, count_events, synops
from .estimation import estimate, estimate_from_options, price_spike_counts
from .pricing import AnnLayer, EnergyReport, LayerEnergy, price, price_ann
from .profiles import BUILTIN as PROFILES
from .profiles import EnergyProfile, load_profile
from .quantities import COSTS, ENERGY_MODELS, QUANTITIES, Cost, EnergyModel, Quantity
from .spike_counts import layer_chain, read_spike_counts, write_spike_counts

__all__ = ["estimate", "estimate_from_options", "price_spike_counts", "EnergyReport",
           "LayerEnergy", "AnnLayer", "price", "price_ann", "EnergyProfile", "load_profile",
           "PROFILES", "QUANTITIES", "COSTS", "ENERGY_MODELS", "Quantity", "Cost", "EnergyModel",
           "count_events", "EventCounts", "LayerEvents", "LayerGeometry", "synops",
           "read_spike_counts", "write_spike_counts", "layer_chain"]
