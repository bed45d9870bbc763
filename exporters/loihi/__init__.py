"""The Loihi target (lava-dl netx HDF5): ``export``, ``quantize`` (one scale per layer),
``fixed_point`` (Loihi's integer arithmetic, bit for bit), ``netx_file`` and ``netx_checks``
(the ``.net`` file written, read back and checked) and ``pool_fold`` (average pooling folded
into the next layer). A network with residual adds or max pooling is a graph, not a chain:
``graph_build`` (student -> neuron groups and synapses, relays aligning branches in time),
``graph_network`` (the graph and its integer and float models), ``graph_file`` (neurokd's
Loihi graph file), ``graph_check`` (its checks); ``deployed_size`` counts neurons, synapses and
Loihi 2 cores for both. Running the file in Lava is ``neurokd.exporters.simulation``."""
