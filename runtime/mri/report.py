"""The record of one MRI case: the lesion class, the patient's summed probabilities, every image group's
probabilities, the inputs' fingerprints, the model's identity, the versions and the provider that ran."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..model.contract import DEMO_WARNING
from ..names import case_file
from ..reports.versions import versions
from .contract import PATIENT_RULE
from .groups import sitk
from .occlusion import FILL, METHOD
from .page import mri_case_html
from .predictor import MriPredictor, MriResult

MRI_REPORT_VERSION = 2  # 2: the occlusion maps of the case page


def mri_report(result: MriResult, predictor: MriPredictor) -> dict[str, Any]:
    contract = predictor.contract
    sums = result.sums
    return {
        "report_version": MRI_REPORT_VERSION,
        "family": "mri",
        "status": "ok",
        "case": result.patient,
        "warning": DEMO_WARNING if contract.is_demo else None,
        "lesion_class": result.lesion_class,
        "model_kind": contract.kind,
        "classes": list(result.classes),
        "patient_sums": {c: float(v) for c, v in zip(result.classes, sums, strict=True)},
        "patient_rule": PATIENT_RULE,
        "groups": [{"section": int(section), "probabilities": {c: float(v) for c, v in zip(result.classes, row,
                                                                                              strict=True)}}
                   | ({} if result.occlusion is None else {"occlusion": result.occlusion[g].tolist()})
                   for g, (section, row) in enumerate(zip(result.groups.sections, result.probabilities, strict=True))],
        "occlusion": None if result.occlusion is None else {
            "grid": int(result.occlusion.shape[1]), "fill": FILL, "class": result.lesion_class, "method": METHOD},
        "inputs": {"series": result.series, "roi": result.roi, "clinical": result.clinical},
        "model": {"path": str(contract.path), **contract.identity, "kind": contract.kind,
                  "demo": contract.is_demo, "signature": predictor.signature.as_dict()},
        "provider": result.provider,
        "versions": versions() | {"SimpleITK": sitk().Version_VersionString()},
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def mri_text(report: dict[str, Any]) -> str:
    """The terminal summary."""
    sums = ", ".join(f"{c} {v:.3f}" for c, v in report["patient_sums"].items())
    lines = [f"{report['case']}: {report['lesion_class']}  (Model {report['model_kind']}, "
             f"{len(report['groups'])} image groups; summed probabilities: {sums})"]
    if report["warning"]:
        lines.insert(0, f"*** {report['warning']} ***")
    return "\n".join(lines)


def write_mri_case(out: Path, result: MriResult, report: dict[str, Any]) -> None:
    """CASE.json (the record) and CASE.html (the case page): both rendered first, then written, each whole; if the
    second cannot be written the first is removed, so a page never stands beside another run's record."""
    page, record = mri_case_html(report, result.groups), json.dumps(report, indent=2)
    written = case_file(out, result.patient, ".json")
    write_text_atomic(written, record)
    try:
        write_text_atomic(case_file(out, result.patient, ".html"), page)
    except Exception:
        written.unlink(missing_ok=True)
        raise
