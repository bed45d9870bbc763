"""Energy estimates of spiking students from counted operations and spike rates.

``estimate(model, inputs, profile="45nm-fp32", ann=None, energy_model="compute") ->
EnergyReport`` counts a student on real inputs (the quantities of ``QUANTITIES`` per layer:
SOPs, MACs, neuron updates; under ``energy_model="memory"`` also Lemaire et al.'s addressing
and memory traffic) and prices the counts with a hardware profile (``PROFILES``, or a TOML
file), with per-layer break-even spike rates against the ANN reference and, on request, the
NeuroBench metrics; ``price_spike_counts`` prices the spike-count file of a deployed run;
``estimate_from_options`` is ``neurokd energy report`` as one call. docs/energy.md explains
the counting, the quantities, the models, the profiles and the JSON.

Submodules: ``count`` (hooks and event records), ``quantities`` (the registry), ``memory``
(the memory model's counters, buffers and word sizes), ``profiles``, ``pricing``,
``break_even``, ``ann`` (the ANN reference), ``neurobench`` (NeuroBench's metrics),
``estimation`` (the calls above), ``spike_counts`` (the file format), ``doc_tables``
(docs/energy.md's tables). The report's table, JSON and plot are the CLI's
(``neurokd.cli.energy_render``).
"""

from .count import EventCounts, LayerEvents, LayerGeometry, count_events, synops
from .estimation import estimate, estimate_from_options, price_spike_counts
from .memory import LAYOUTS, MemoryLayout
from .neurobench import NeuroBenchMetrics, neurobench_metrics
from .pricing import AnnLayer, EnergyReport, LayerEnergy, Prices, price, price_ann
from .profiles import BUILTIN as PROFILES
from .profiles import EnergyProfile, load_profile
from .quantities import COSTS, ENERGY_MODELS, QUANTITIES, Cost, EnergyModel, Quantity
from .spike_counts import layer_chain, read_spike_counts, write_spike_counts

__all__ = ["estimate", "estimate_from_options", "price_spike_counts", "EnergyReport",
           "LayerEnergy", "AnnLayer", "Prices", "price", "price_ann", "EnergyProfile",
           "load_profile", "LAYOUTS", "MemoryLayout", "NeuroBenchMetrics", "neurobench_metrics",
           "PROFILES", "QUANTITIES", "COSTS", "ENERGY_MODELS", "Quantity", "Cost", "EnergyModel",
           "count_events", "EventCounts", "LayerEvents", "LayerGeometry", "synops",
           "read_spike_counts", "write_spike_counts", "layer_chain"]
