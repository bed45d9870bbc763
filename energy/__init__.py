"""Energy estimates of spiking students from counted operations and spike rates.

``report(model, inputs, profile="45nm-fp32", ann=None) -> EnergyReport`` counts a student on
real inputs (SOPs, MACs, neuron updates per layer) and prices the counts with a hardware
profile (``profiles``); ``lava_report`` prices the spike counts of a deployed run.
"""

from .count import EventCounts, LayerEvents, LayerGeometry, count_events, synops
from .lava import layer_chain, read_lava_result, write_lava_result
from .profiles import BUILTIN as PROFILES
from .profiles import EnergyProfile, load_profile
from .report import AnnLayer, EnergyReport, LayerEnergy, lava_report, price, report

__all__ = ["report", "lava_report", "EnergyReport", "LayerEnergy", "AnnLayer", "price",
           "EnergyProfile", "load_profile", "PROFILES", "count_events", "EventCounts",
           "LayerEvents", "LayerGeometry", "synops", "read_lava_result", "write_lava_result",
           "layer_chain"]
