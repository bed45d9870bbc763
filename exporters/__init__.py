"""Exporters of spiking students: ONNX, NIR, Loihi (lava-dl netx HDF5)."""
