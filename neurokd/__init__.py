"""neurokd: distil ANN teachers into spiking students, export them, estimate their energy."""

from .config import RunConfig
from .errors import NeuroKDError
from .student.loading import LoadedRun, load
from .train.distillation import Result, distill

__all__ = ["RunConfig", "Result", "distill", "load", "LoadedRun", "NeuroKDError"]
__version__ = "0.1.0"
