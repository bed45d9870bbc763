"""The ONNX target: ``export`` (the student unrolled over T, checked in ONNX Runtime) and
``checks`` (an ONNX file checked before ONNX Runtime is given it)."""
