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

# Names resolved on first use (PEP 562): the profiles and the pricing import no torch, so
# ``neurokd energy profiles`` answers at once; the counter (torch, spikingjelly) loads only
# when something is counted. name -> (submodule, attribute).
_LAZY = {
    **{n: ("events", n) for n in ("EventCounts", "LayerEvents", "synops")},
    "LayerGeometry": ("events", "LayerGeometry"), "count_events": ("count", "count_events"),
    **{n: ("estimation", n) for n in ("estimate", "estimate_from_options",
                                       "price_spike_counts")},
    **{n: ("memory", n) for n in ("LAYOUTS", "MemoryLayout")},
    **{n: ("neurobench", n) for n in ("NeuroBenchMetrics", "neurobench_metrics")},
    **{n: ("pricing", n) for n in ("AnnLayer", "EnergyReport", "LayerEnergy", "Prices", "price",
                                    "price_ann")},
    "PROFILES": ("profiles", "BUILTIN"),
    **{n: ("profiles", n) for n in ("EnergyProfile", "load_profile")},
    **{n: ("quantities", n) for n in ("COSTS", "ENERGY_MODELS", "QUANTITIES", "Cost",
                                       "EnergyModel", "Quantity")},
    **{n: ("spike_counts", n) for n in ("layer_chain", "read_spike_counts",
                                         "write_spike_counts")},
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'neurokd.energy' has no attribute {name!r}")
    import importlib

    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
