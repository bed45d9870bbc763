"""neurokd: distil ANN teachers into spiking students, export them, estimate their energy.

The package face: ``distill(RunConfig(...)) -> Result``, ``load(path) -> LoadedRun``.
The tree, top to bottom (a room imports only rooms below it; ``tools/lint_imports.py``):

- ``cli/``       the ``neurokd`` command: one module per command, the tables and plots it
                 shows (a new plot goes here)
- ``train/``     the distillation loop, fitting, evaluation, feature taps, torchrun, the
                 training log and the run folder
- ``student/``   a student from any source (checkpoint, NIR file, a user's model), the inputs
                 a command runs it on, the geometry of its layers; ``student/nir/`` reads NIR
- ``config.py``  every setting of a run (``RunConfig``), validated on creation
- ``models/``    students and teachers by name
- ``data/``      data sets by name (a new data set goes here), event files and frames, encodings
- ``losses/``    distillation losses by name (a new loss goes here)
- ``validation.py``  one check for a setting's type and size, wherever it comes from
- ``files/``     files as untrusted input and atomic writes (a new generic file check goes
                 here; a check of one target's format goes with the target)
- ``runtime/``   threads, signals, progress, device
- ``errors.py``, ``text.py``  errors a user can act on; how numbers and failures are worded

Beside the core: ``neurokd.exporters`` (folder ``exporters/``: one subpackage per target — a
new target goes there — and ``simulation/``) and ``neurokd.energy`` (folder ``energy/``).
"""

__version__ = "0.1.0"

# Names resolved on first use (PEP 562), not at import: ``neurokd --help`` and
# ``neurokd energy profiles`` import this package and must not pay for torch (~2 s).
_LAZY = {"RunConfig": "config", "NeuroKDError": "errors", "LoadedRun": "student.loading",
         "load": "student.loading", "Result": "train.distillation",
         "distill": "train.distillation"}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'neurokd' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

