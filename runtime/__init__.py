"""The lean runtime: slides -> tumour patches -> ONNX Runtime -> verdict. Never imports torch or sklearn.

    from netorigin.runtime import Predictor
    result = Predictor("model.onnx", device="auto").predict_case(["case.svs"], ["case.geojson"])
    result.verdict.verdict  # "pancreas" | "small_intestine" | "uncertain"
"""

from .errors import (
                     AnnotationError,
                     ConfigurationError,
                     DeviceError,
                     InferenceError,
                     InsufficientTissueError,
                     ManifestError,
                     MissingDependencyError,
                     ModelError,
                     NetoriginError,
                     OutputError,
                     SignatureError,
                     SlideError,
)
from .model.bands import Band, BandTable
from .model.contract import ModelContract, load_contract
from .slide.predictor import CaseResult, Predictor, SlideInput
from .slide.regions import RegionRules
from .slide.slide import MppRule

__all__ = ["Band", "BandTable", "ModelContract", "load_contract", "Predictor", "CaseResult", "SlideInput",
           "RegionRules", "MppRule", "NetoriginError", "SlideError", "AnnotationError", "ModelError",
           "ConfigurationError", "DeviceError", "ManifestError", "InsufficientTissueError", "InferenceError",
           "OutputError", "MissingDependencyError", "SignatureError"]
