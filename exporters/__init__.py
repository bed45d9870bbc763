"""Exporters of spiking students: ONNX, NIR, Loihi (lava-dl netx HDF5), and their simulation.

``EXPORTERS`` (``registry.py``) maps a target name to an :class:`Exporter`:
``export(source, path, **options) -> ExportResult`` writes nothing unless the file reproduces
the PyTorch model it came from. ``graph`` turns a student into the layer records every
exporter shares; ``simulation`` runs written files (``BACKENDS``).
"""

from .base import Exporter, ExportResult
from .graph import LayerRecord, NeuronParams, StudentGraph, fold_batchnorm, trace_student
from .loihi.export import LoihiExportResult, export_loihi
from .nir.export import NirExportResult, export_nir, to_nir_graph
from .nir.simulator import NirSimulator, load_nir_simulator
from .onnx.export import OnnxExportResult, export_onnx
from .registry import EXPORTERS, exporter
from .verify import Agreement

__all__ = ["EXPORTERS", "Exporter", "ExportResult", "exporter", "export_loihi",
           "LoihiExportResult", "export_onnx", "OnnxExportResult", "export_nir",
           "NirExportResult", "NirSimulator", "load_nir_simulator", "to_nir_graph", "Agreement",
           "trace_student", "StudentGraph", "LayerRecord", "NeuronParams", "fold_batchnorm"]
