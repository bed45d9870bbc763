"""The Loihi target (lava-dl netx HDF5): ``export``, ``quantize`` (one scale per layer),
``fixed_point`` (Loihi's integer arithmetic, bit for bit), ``netx_file`` and ``netx_checks``
(the ``.net`` file written, read back and checked) and ``pool_fold`` (average pooling folded
into the next layer). Running the file in Lava is ``neurokd.exporters.simulation``."""
