"""Audit replay of an MRI case report: find the case's series and region again by content (never by path alone),
run the case with the model the report names and the clinical record it took, and compare the two reports field by
field. Left out of the comparison: when and how fast it ran, the versions, where the files were, and whether a key
vouched for the signature (shown apart)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..dicom.dicomweb import is_series_url
from ..engines.session import CUDA
from ..errors import ReportError
from ..model.contract import identity_difference
from ..model.signing import PublicKey
from ..reports.compare import Audit, check_report_schema, compare_reports, version_differences
from .contract import MriContract, load_mri_contract
from .predictor import MriCase, MriPredictor, file_digest, series_fingerprint
from .report import MRI_REPORT_VERSION, mri_report

NOT_COMPARED = {("created",), ("timings_s",), ("versions",), ("model", "path"), ("model", "signature", "state"),
                ("inputs", "series", "*", "path"), ("inputs", "roi", "path")}
REGION_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".dicom")
_DIGEST = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
REPORT_SCHEMA = {"type": "object", "required": ["report_version", "family", "status", "case", "inputs", "model",
                                                "provider", "occlusion"],
                 "properties": {
                     "family": {"const": "mri"}, "status": {"const": "ok"}, "case": {"type": "string"},
                     "provider": {"type": "string"}, "model": {"type": "object"},
                     "occlusion": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["grid"], "properties": {
                         "grid": {"type": "integer", "minimum": 1}}}]},
                     "inputs": {"type": "object", "required": ["series", "roi", "clinical"], "properties": {
                         "series": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "required": ["sequence", "path", "files", "sha256"], "properties": {
                                 "sequence": {"type": "string"}, "path": {"type": "string"},
                                 "files": {"type": "integer", "minimum": 1}, "sha256": _DIGEST}}},
                         "roi": {"type": "object", "required": ["path", "sha256"], "properties": {
                             "path": {"type": "string"}, "sha256": _DIGEST}},
                         "clinical": {"oneOf": [{"type": "null"},
                                                {"type": "object", "additionalProperties": {"type": "string"}}]}}}}}


def is_mri_report(report: dict[str, Any]) -> bool:
    return report.get("family") == "mri"


def check_mri_report(report: dict[str, Any], path: Path) -> dict[str, Any]:
    """`report` (read from `path`) if it is an MRI report of this version with everything a replay reads; else a
    one-line error naming the file."""
    if report.get("report_version") != MRI_REPORT_VERSION:
        raise ReportError(f"MRI report_version {report.get('report_version')} cannot be replayed: this netorigin "
                          f"replays version {MRI_REPORT_VERSION} (earlier reports lack the occlusion grid)", path)
    check_report_schema(report, REPORT_SCHEMA, path)
    return report


def _folders(roots: list[Path]) -> list[Path]:
    found = list(roots)
    for root in roots:
        for here, dirs, _ in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(here) / d for d in dirs]
    return found


def find_series(recorded: dict[str, Any], roots: list[Path]) -> Path | None:
    """The folder whose files have the recorded series' digest: where the report says first, then any under
    `roots` with as many files."""
    wanted = (recorded["files"], recorded["sha256"])
    candidates = [Path(recorded["path"])] + [f for f in _folders(roots) if f != Path(recorded["path"])]
    for folder in candidates:
        if folder.is_dir() and sum(p.is_file() for p in folder.iterdir()) == recorded["files"]:
            fingerprint = series_fingerprint(folder)
            if (fingerprint["files"], fingerprint["sha256"]) == wanted:
                return folder
    return None


def find_file(recorded: dict[str, Any], roots: list[Path]) -> Path | None:
    """The file with the recorded SHA-256: where the report says first, then any file under `roots` with a region's
    suffix (NIfTI, NRRD, MHA, DICOM)."""
    recorded_path = Path(recorded["path"])
    candidates = [recorded_path] + sorted(p for root in roots for p in root.rglob("*")
                                          if p.is_file() and p != recorded_path and not p.name.startswith(".")
                                          and p.name.lower().endswith(REGION_SUFFIXES))
    for path in candidates:
        if path.is_file() and file_digest(path).hexdigest() == recorded["sha256"]:
            return path
    return None


def locate_mri_inputs(report: dict[str, Any], search: Path | None) -> tuple[MriCase | None, list[str]]:
    """The report's series and region, found by content; and what could not be found."""
    roots = [search] if search is not None else []
    where = f"in {search}" if search is not None else "where the report says"
    series, problems = {}, []
    for recorded in report["inputs"]["series"]:  # an archived series is fetched again: the comparison judges it
        folder = recorded["path"] if is_series_url(recorded["path"]) else find_series(recorded, roots)
        if folder is None:
            problems.append(f"series {recorded['sequence']}: no folder {where} holds its {recorded['files']} files "
                            f"(sha256 {recorded['sha256'][:16]}…)")
        series[recorded["sequence"]] = folder
    recorded_roi = report["inputs"]["roi"]
    roi = recorded_roi["path"] if is_series_url(recorded_roi["path"]) else find_file(recorded_roi, roots)
    if roi is None:
        problems.append(f"region of interest: no file {where} has its content "
                        f"(sha256 {report['inputs']['roi']['sha256'][:16]}…)")
    if problems:
        return None, problems
    return MriCase(report["case"], series, roi, report["inputs"]["clinical"]), []


def audit_mri(report: dict[str, Any], model: str | Path | MriContract, search: Path | None = None,
              trusted_keys: list[str | Path | PublicKey] | None = None) -> Audit:
    """Replay the report's MRI case and compare. Stops before running when the model or an input is not the one
    the report was made from."""
    contract = model if isinstance(model, MriContract) else load_mri_contract(model)
    result = Audit(report["case"])
    problem = identity_difference(contract.identity, report["model"])
    if problem is not None:
        result.differences.append(f"model: {problem}")
        return result
    case, problems = locate_mri_inputs(report, search)
    if case is None:
        result.differences += problems
        return result
    predictor = MriPredictor(contract.path, device="cuda" if report["provider"] == CUDA else "cpu",
                             trusted_keys=trusted_keys)
    grid = (report["occlusion"] or {}).get("grid")
    result.replayed = json.loads(json.dumps(mri_report(predictor.predict(case, grid), predictor)))
    result.differences = compare_reports(report, result.replayed, NOT_COMPARED)
    result.context = [f"inputs: {', '.join(str(p) for p in case.series.values())}; region {case.roi}",
                      f"provider: {predictor.provider}"]
    result.context += version_differences(report, result.replayed)
    return result
