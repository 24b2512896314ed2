"""INT8 for OpenVINO by NNCF's accuracy control (`train --precision int8 --int8-nncf`).

NNCF quantises the fp32 ONNX graph through its ONNX backend, so the result is one QDQ ONNX file like every other
model, with the stem (the first convolution) and the SVM head kept float: its mixed preset (symmetric weights,
asymmetric activations), MinMax activation ranges from the fit patients' patches. It then reverts to float, one
group at a time, the operations it ranks as moving S most, until the model passes the model's own fidelity check
run on OpenVINO f32 — the engine that runs this file (`--engine auto` picks OpenVINO for an INT8 model only where
that check, recorded by `train`, passed). The check is NNCF's metric: per patient -|dS| / band width against ONNX
Runtime fp32, and over all calibration patients the worst of them minus the verdict flips at every band, so
`max_drop` 0.01 is exactly "no flip and |dS| within 1 % of the band". Measured on the demo model: it stalls near
2 % of the band (benchmarks/nncf_int8.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from types import ModuleType

import numpy as np
import onnx

from netorigin.calibration.bands_io import PatientSum
from netorigin.runtime.engines.session import CPU_BATCH
from netorigin.runtime.errors import MissingDependencyError
from netorigin.runtime.model.contract import INPUT_NAME
from netorigin.runtime.model.record import FidelityRecord

from .onnx_graph import is_head_node
from .precision import Int8Recipe, quantised_nodes

MAX_ITERATIONS = 40
RANKING_SUBSET = 3  # patients per ranking run: NNCF ranks every quantised group on them, so they set the cost


@dataclass(frozen=True)
class NncfInt8:
    """NNCF's INT8 model, the nodes it computes in INT8, and its fidelity check on OpenVINO."""

    model: onnx.ModelProto
    int8_nodes: tuple[str, ...]
    check: FidelityRecord

    def as_dict(self) -> dict:
        return {"method": "nncf.quantize_with_accuracy_control (ONNX backend, judged on OpenVINO f32)",
                "passed": self.check.passed, "int8_nodes": len(self.int8_nodes), "check": asdict(self.check)}


def nncf() -> ModuleType:
    try:
        return importlib.import_module("nncf")
    except ModuleNotFoundError:
        raise MissingDependencyError("INT8 by NNCF's accuracy control needs nncf: pip install "
                                     "'netorigin[export]'") from None


def nncf_int8(fp32: onnx.ModelProto, calibration_patches: np.ndarray, reference: Sequence[PatientSum],
              width: float, score: Callable[[onnx.ModelProto, Sequence[int]], list[PatientSum]],
              judge: Callable[[list[PatientSum]], FidelityRecord], max_iterations: int = MAX_ITERATIONS
              ) -> NncfInt8:
    """NNCF's accuracy-controlled INT8 of `fp32`: `score` gives the OpenVINO sums of the calibration patients at
    the given indices, `judge` the fidelity check of all of them against `reference` (fp32 on ONNX Runtime)."""
    library = nncf()
    from nncf.quantization.advanced_parameters import (
        AdvancedAccuracyRestorerParameters,
        AdvancedQuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    def validation_fn(model: onnx.ModelProto, items: Iterable[int]) -> tuple[float, list[float]]:
        indices = list(items)
        rows = score(model, indices)
        per_patient = [-abs(row.s - reference[i].s) / width for row, i in zip(rows, indices, strict=True)]
        if len(indices) < len(reference):  # a ranking subset: the bands need every patient
            return min(per_patient), per_patient
        return min(per_patient) - judge(rows).verdict_flips, per_patient

    stem = next(node.name for node in fp32.graph.node if node.op_type == "Conv")
    ignored = [node.name for node in fp32.graph.node if is_head_node(node)] + [stem]
    batches = [{INPUT_NAME: calibration_patches[i:i + CPU_BATCH]}
               for i in range(0, len(calibration_patches), CPU_BATCH)]
    model = library.quantize_with_accuracy_control(
        fp32, library.Dataset(batches), library.Dataset(list(range(len(reference)))), validation_fn,
        max_drop=0.01, drop_type=library.DropType.ABSOLUTE, preset=library.QuantizationPreset.MIXED,
        subset_size=len(batches), ignored_scope=library.IgnoredScope(names=ignored, validate=False),
        advanced_quantization_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX),
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=max_iterations, ranking_subset_size=min(RANKING_SUBSET, len(reference)),
            num_ranking_workers=1))
    check = judge(score(model, range(len(reference))))
    return NncfInt8(model, tuple(quantised_nodes(model, Int8Recipe(float_stem=True))), check)
