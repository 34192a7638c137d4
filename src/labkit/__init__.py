"""labkit: the helper package every lab of the course imports.

Infrastructure only (models, data, measuring, plotting, running notebooks); the answers
to the exercises live in the labs themselves.
"""
from .config import QUICK, describe_hardware, pick, results_dir
from .hardware import precision

__version__ = "0.1.0"
__all__ = ["QUICK", "describe_hardware", "pick", "precision", "results_dir"]
