"""Exporters of spiking students: ONNX, NIR, Loihi (lava-dl netx HDF5).

ONNX and NIR take a ``neurokd.sources.StudentSource``, a checkpoint path, or a multi-step
spiking module plus its input shape and T, and write nothing unless the export reproduces the
PyTorch model (ONNX Runtime; ``nir.read`` + re-simulation). ``graph`` turns a student into
layer records that every exporter shares.
"""

from .graph import LayerRecord, NeuronParams, StudentGraph, fold_batchnorm, trace_student
from .loihi import LoihiExportResult, export_loihi
from .nir import NirExportResult, export_nir, import_nir, to_nir_graph
from .onnx import OnnxExportResult, export_onnx
from .verify import Agreement

__all__ = ["export_loihi", "LoihiExportResult", "export_onnx", "OnnxExportResult", "export_nir", "NirExportResult", "import_nir",
           "to_nir_graph", "Agreement", "trace_student", "StudentGraph", "LayerRecord",
           "NeuronParams", "fold_batchnorm"]
