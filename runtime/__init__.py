"""The lean runtime: slides -> tumour patches -> ONNX Runtime -> verdict. Never imports torch or sklearn.

    from netorigin.runtime import Predictor
    result = Predictor("model.onnx", device="auto").predict_case(["case.svs"], ["case.geojson"])
    result.verdict.verdict  # "pancreas" | "small_intestine" | "uncertain"
"""

from .bands import Band, BandTable
from .contract import ModelContract, load_contract
from .errors import (
                     AnnotationError,
                     ConfigurationError,
                     DeviceError,
                     InsufficientTissueError,
                     ManifestError,
                     MissingDependencyError,
                     ModelError,
                     NetoriginError,
                     OutputError,
                     SlideError,
)
from .predictor import CaseResult, Predictor, SlideInput

__all__ = ["Band", "BandTable", "ModelContract", "load_contract", "Predictor", "CaseResult", "SlideInput",
           "NetoriginError", "SlideError", "AnnotationError", "ModelError", "ConfigurationError", "DeviceError",
           "ManifestError", "InsufficientTissueError", "OutputError", "MissingDependencyError"]
