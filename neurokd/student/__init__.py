"""A spiking student from any source, and how a sample reaches it.

Here: ``sources`` (a neurokd checkpoint, a NIR file or a user's model as one student),
``loading`` (``neurokd.load``), ``inputs`` (which samples a command runs a student on),
``encoding`` (how a sample becomes T timesteps), ``geometry`` (the shape of one synaptic layer),
``layers`` (which name a layer's numbers carry) and ``nir/`` (reading NIR graphs). A new kind
of student source goes here.
"""
