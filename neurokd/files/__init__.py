"""Files as untrusted input, and writes that never leave half a file.

Here: ``safe_io`` (atomic writes, bounded text reads, writability checks), ``budget`` (the one
memory budget every size claim from a file goes through), ``npz`` (``.npz``/``.npy`` headers
before data), ``hdf5`` (an HDF5 file walked from its headers), ``torch_file`` (what a
``torch.load``-able file is, sniffed before it is loaded; dense real tensors only),
``json_text`` (JSON from a file, depth-bounded, decoding errors named) and ``paths`` (paths named inside
a data folder's files kept inside it; only regular files opened). A new generic file check goes here;
a check of one target's format lives with that target (``exporters/onnx/checks.py``,
``exporters/loihi/netx_checks.py``), of one data set's format with the data set
(``data/event_files.py``). Nothing here imports above ``neurokd.errors`` and
``neurokd.runtime``.
"""
