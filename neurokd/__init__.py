"""neurokd: distil ANN teachers into spiking students, export them, estimate their energy."""

from .config import RunConfig
from .distillation import Result, distill
from .errors import NeuroKDError
from .loading import LoadedRun, load

__all__ = ["RunConfig", "Result", "distill", "load", "LoadedRun", "NeuroKDError"]
__version__ = "0.1.0"
