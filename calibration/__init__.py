"""Calibration and evaluation: band fitting (c = k/o), sums tables, embeddings files, the paper's evaluation
protocols, metrics and plots. Built on the runtime (verdict rule, band type); never imports the training side.
`protocols` needs scikit-learn and `plots` matplotlib (the `export` extra).
"""

from .bands import calibrate_bands
from .embeddings import Embeddings
from .errors import InputDataError

__all__ = ["calibrate_bands", "Embeddings", "InputDataError"]
