"""labkit: the course's package.

The modules at this level are what the labs import: models (and the embedding cache),
corpora, vector stores, serving, fine-tuning, the agent's world (``oncall``, ``bfcl``),
monitoring, the portfolio reader, the upstream project of lab 09, measuring (``bench``),
hardware and precision, and plots. ``labkit.course`` holds the course's own tooling (the
``labkit`` command, the plan, progress, the notebook runner, grading), which no lab
imports. Infrastructure only: the answers to the exercises live in the labs themselves.
"""
from .config import QUICK, describe_hardware, pick, results_dir
from .hardware import precision

__version__ = "0.1.0"
__all__ = ["QUICK", "describe_hardware", "pick", "precision", "results_dir"]
