"""Exporters of spiking students: ONNX, NIR, Loihi (lava-dl netx HDF5), and their simulation.

``EXPORTERS`` (``registry.py``) maps a target name to an :class:`Exporter`:
``export(source, path, **options) -> ExportResult`` writes nothing unless the file reproduces
the PyTorch model it came from. ``graph`` turns a student into the layer records every
exporter shares; ``simulation`` runs written files (``BACKENDS``).

Here: ``base``, ``registry``, ``graph`` (a student as layer records), ``verify`` (what every
check needs), ``neurons``, ``export_memory`` and ``zoo_layers``; then one subpackage per target,
holding its writer and the checks of its file format — ``onnx/``, ``nir/`` (with the libraries
that read NIR), ``loihi/`` (with the Lava runner its check uses) — and ``simulation/`` (one
module per ``neurokd simulate`` backend). A new target is a subpackage plus one line in
``registry.py``.
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
