"""Reading NIR graphs as students: ``reader`` (the graph as a source), ``shapes`` (shapes
inferred and checked against every node's weights) and ``modules`` (checked nodes as
spikingjelly layers). Writing NIR is an export target: ``neurokd.exporters.nir``."""
