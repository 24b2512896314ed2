"""Audit replay: re-run a case from what its report records and say whether the report is reproduced bit for bit.

A report names its model by digest, its slides by content (quickhash, size, dimensions, MPP and where the MPP came
from), its annotation files by SHA-256, and its seed, confidence level, region rules, forced level and engine. The
replay finds those inputs again (by content, never by path alone), runs the case the same way, and compares the new
report with the old one field by field; only what cannot be the same twice (creation time, timings, versions,
paths and file names, the signature state that depends on the keys given) is left out of the comparison.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..dicom.dicomweb import is_series_url
from ..engines.session import CUDA, OPENVINO
from ..errors import InsufficientTissueError, NetoriginError, ReportError
from ..model.contract import ModelContract, load_contract
from ..model.signing import PublicKey
from ..slide.predictor import SLIDE_IDENTITY, Predictor, SlideInput, annotation_sha256
from ..slide.regions import RegionRules
from ..slide.slide import MppRule, Slide
from .compare import Audit, check_report_schema, compare_reports, version_differences
from .report import REPORT_VERSION, case_report, insufficient_report

# Not the run's result: when and how fast it ran, where its files were and what they were called (inputs are
# found by content; an insufficient-tissue `problem` names the slide's path, its numbers are compared apart),
# which versions ran and whether a key vouched for the signature (shown apart), the DICOM objects written (new
# instance UIDs each time). "*" stands for any list index.
NOT_COMPARED = {("created",), ("timings_s",), ("versions",), ("problem",), ("dicom_results",), ("cluster",),
                ("model", "path"),
                ("model", "signature", "state"), ("engine", "requested"), ("engine", "why"),
                ("slides", "*", "fingerprint", "path"), ("slides", "*", "fingerprint", "name"),
                ("inputs", "*", "slide"), ("inputs", "*", "annotations", "name")}

_TEXTS = {"type": "array", "items": {"type": "string"}}
_INPUT = {"type": "object", "required": ["slide", *SLIDE_IDENTITY, "annotations", "specimen"], "properties": {
    "slide": {"type": "string"}, "quickhash": {"type": "string"}, "bytes": {"type": ["integer", "null"]},
    "dimensions": {"type": "array", "items": {"type": "integer"}}, "mpp": {"type": "number", "exclusiveMinimum": 0},
    "mpp_source": {"enum": ["slide", "fallback", "forced"]}, "specimen": {"type": "string"},
    "annotations": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["name", "sha256"], "properties": {
        "name": {"type": "string"}, "sha256": {"type": "string"}}}]}}}
# What a replay reads from a report: checked first, so a broken report is one line, never a traceback.
REPORT_SCHEMA = {"type": "object", "required": ["report_version", "status", "case", "seed", "confidence",
                                                "region_rules", "inputs", "model", "level", "provider", "engine"],
                 "properties": {
                     "status": {"enum": ["ok", "insufficient_tissue"]}, "case": {"type": "string"},
                     "seed": {"type": "integer", "minimum": 0}, "confidence": {"type": ["number", "null"]},
                     "level": {"type": ["integer", "null"], "minimum": 0}, "provider": {"type": "string"},
                     "engine": {"type": "object", "properties": {"ran": {"type": "string"}}},
                     "model": {"type": "object"}, "inputs": {"type": "array", "minItems": 1, "items": _INPUT},
                     "region_rules": {"type": "object", "required": ["include", "exclude", "object_types"],
                                      "additionalProperties": False,
                                      "properties": {"include": _TEXTS, "exclude": _TEXTS, "object_types": _TEXTS}},
                     "slides": {"type": "array", "items": {"type": "object", "required": ["fingerprint"]}}}}


def check_report(report: dict[str, Any], path: Path) -> dict[str, Any]:
    """`report` (read from `path`) if it is a slide report of this version with everything a replay reads; else a
    one-line error naming the file."""
    if report.get("report_version") != REPORT_VERSION:
        raise ReportError(f"report_version {report.get('report_version')} cannot be replayed: this netorigin "
                          f"replays version {REPORT_VERSION} (earlier reports lack where each slide's MPP came "
                          "from)", path)
    check_report_schema(report, REPORT_SCHEMA, path)
    return report


def mpp_rule_of(recorded: dict[str, Any]) -> MppRule:
    """The MPP rule a slide was read with, from its recorded MPP and where that came from."""
    if recorded["mpp_source"] == "forced":
        return MppRule(forced=recorded["mpp"])
    if recorded["mpp_source"] == "fallback":
        return MppRule(fallback=recorded["mpp"])
    return MppRule()


class FileIndex:
    """The files under some folders, and the folders themselves (a DICOM slide is a folder), walked once (hidden
    ones skipped); annotation digests cached."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self.files: list[Path] = []
        for folder in folders:
            for root, dirs, names in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                self.files += [Path(root) / n for n in [*dirs, *sorted(names)] if not n.startswith(".")]
        self._digests: dict[Path, str | None] = {}

    def where(self) -> str:
        return ", ".join(map(str, self.folders))

    def candidates(self, name: str, size: int | None = None, suffixes: tuple[str, ...] = ()) -> list[Path]:
        """Files called `name` first, then any other of that size or any folder (slides: a DICOM slide's folder
        holds more than its series' bytes), or with those suffixes (annotations)."""
        named = [p for p in self.files if p.name == name]
        others = [p for p in self.files if p.name != name and
                  (p.suffix.lower() in suffixes if suffixes else p.is_dir() or _size(p) == size)]
        return named + others

    def sha256(self, path: Path) -> str | None:
        if path not in self._digests:
            try:
                self._digests[path] = annotation_sha256(path)
            except NetoriginError:
                self._digests[path] = None  # unreadable: not the file looked for
        return self._digests[path]


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _slide_identity(path: Path | str, recorded: dict[str, Any]) -> dict[str, Any] | None:
    """`path`'s slide identity under the recorded MPP rule (None: not a slide OpenSlide opens with that rule)."""
    try:
        with Slide(path, mpp_rule_of(recorded)) as slide:
            fingerprint = slide.fingerprint()
    except NetoriginError:
        return None
    return {k: fingerprint[k] for k in SLIDE_IDENTITY}


def find_slide(recorded: dict[str, Any], index: FileIndex) -> tuple[Path | None, str | None]:
    """The file with the recorded slide's content: one of its name first, then any of its size. Returns the path, or
    None and what was found instead."""
    wanted = {k: recorded[k] for k in SLIDE_IDENTITY}
    first_named = None
    for path in index.candidates(recorded["slide"], size=recorded["bytes"]):
        found = _slide_identity(path, recorded)
        if found == wanted:
            return path, None
        if path.name == recorded["slide"] and first_named is None:
            first_named = (path, found)
    if first_named is None:
        return None, (f"no file in {index.where()} has its content ({recorded['bytes']} bytes, quickhash "
                      f"{recorded['quickhash'][:16]}…)")
    path, found = first_named
    if found is None:
        return None, f"{path} is not a slide OpenSlide opens (with the recorded MPP rule)"
    changed = ", ".join(f"{k} {wanted[k]} → {found[k]}" for k in wanted if found[k] != wanted[k])
    return None, f"{path} differs from the slide the report was made from ({changed})"


def find_archived(recorded: dict[str, Any], url: str) -> tuple[str | None, str | None]:
    """A DICOMweb slide is found where the report says it was: its series, with the same instances."""
    found = _slide_identity(url, recorded)
    if found == {k: recorded[k] for k in SLIDE_IDENTITY}:
        return url, None
    return None, f"{url} no longer holds the series the report was made from" if found else \
        f"{url} cannot be read"


def find_annotations(recorded: dict[str, Any], index: FileIndex) -> tuple[Path | None, str | None]:
    """The annotation file with the recorded digest: one of its name first, then any GeoJSON / JSON file."""
    candidates = index.candidates(recorded["name"], suffixes=(".geojson", ".json"))
    for path in candidates:
        if index.sha256(path) == recorded["sha256"]:
            return path, None
    named = [p for p in candidates if p.name == recorded["name"]]
    if named:
        return None, (f"{named[0]} differs from the annotations the report was made with (sha256 "
                      f"{recorded['sha256'][:16]}… → {str(index.sha256(named[0]))[:16]}…)")
    return None, f"no file in {index.where()} has its content (sha256 {recorded['sha256'][:16]}…)"


def locate_inputs(report: dict[str, Any], slides: Path | None, annotations: Path | None
                  ) -> tuple[list[SlideInput], list[str]]:
    """The report's slides and annotation files, found by content; and what could not be found or has changed."""
    if slides is None and not report.get("slides"):
        raise ReportError("this report records no slide paths (insufficient tissue): give the folder with --slides")
    recorded_paths = [s["fingerprint"]["path"] for s in report.get("slides", [])]
    folders = [slides] if slides is not None else \
        list(dict.fromkeys(Path(p).parent for p in recorded_paths if not is_series_url(p)))
    index = FileIndex(folders)
    annotation_index = index if annotations is None else FileIndex([annotations])
    items, problems = [], []
    for number, recorded in enumerate(report["inputs"]):
        url = recorded_paths[number] if number < len(recorded_paths) else None
        path, problem = find_archived(recorded, url) if is_series_url(url) else find_slide(recorded, index)
        if path is None:
            problems.append(f"slide {recorded['slide']}: {problem}")
            continue
        geojson = None
        if recorded["annotations"] is not None:
            geojson, problem = find_annotations(recorded["annotations"], annotation_index)
            if geojson is None:
                problems.append(f"annotations {recorded['annotations']['name']} of slide {recorded['slide']}: "
                                f"{problem}")
                continue
        items.append(SlideInput(path, geojson, recorded["specimen"], mpp_rule_of(recorded)))
    return items, problems


def replay_predictor(report: dict[str, Any], contract: ModelContract,
                     trusted_keys: list[str | Path | PublicKey] | None) -> Predictor:
    """A predictor set up as the report's run was: engine and device that ran, OpenVINO precision, confidence, seed,
    region rules. Lower fidelity is allowed (an audit reproduces what ran); the report's notes are compared."""
    engine, provider = report["engine"].get("ran", "onnxruntime"), report["provider"]
    ov_precision = provider.split()[-1] if engine == OPENVINO and provider else "auto"
    rules = RegionRules(**{k: tuple(v) for k, v in report["region_rules"].items()})
    return Predictor(contract, device="cuda" if provider == CUDA else "cpu", confidence=report["confidence"],
                     seed=report["seed"], rules=rules, engine=engine, ov_precision=ov_precision,
                     allow_lower_fidelity=True, trusted_keys=trusted_keys)


def replay_report(report: dict[str, Any], predictor: Predictor, items: list[SlideInput]) -> dict[str, Any]:
    """The report this run gives now, as its JSON would read back."""
    try:
        result = predictor.predict_case(items, case_id=report["case"], level=report["level"])
        fresh = case_report(result)
    except InsufficientTissueError as exc:
        fresh = insufficient_report(report["case"], exc, predictor, items, report["level"])
    return json.loads(json.dumps(fresh))


def _context(report: dict[str, Any], replayed: dict[str, Any], predictor: Predictor,
             items: list[SlideInput]) -> list[str]:
    """What the replay ran with, and what differs without being the run's result (versions, signature state)."""
    lines = [f"inputs: {', '.join(str(item.path) for item in items)}",
             f"engine: {predictor.engine_choice.get('ran')} on {predictor.provider}"]
    lines += version_differences(report, replayed)
    signed = [r.get("model", {}).get("signature", {}).get("state") for r in (report, replayed)]
    if signed[0] != signed[1]:
        lines.append(f"signature: {signed[0]} in the report, {signed[1]} here (key ids compared; the state depends "
                     "on the trusted keys given)")
    return lines


def audit(report: dict[str, Any], model: str | Path | ModelContract, slides: Path | None = None,
          annotations: Path | None = None, trusted_keys: list[str | Path | PublicKey] | None = None) -> Audit:
    """Replay the report's case and compare. Stops before running when the model or an input is not the one the
    report was made from (that is already the answer)."""
    contract = model if isinstance(model, ModelContract) else load_contract(model)
    result = Audit(report["case"])
    problem = contract.identity_difference(report["model"])
    if problem is not None:
        result.differences.append(f"model: {problem}")
        return result
    items, problems = locate_inputs(report, slides, annotations)
    if problems:
        result.differences += problems
        return result
    predictor = replay_predictor(report, contract, trusted_keys)
    result.replayed = replay_report(report, predictor, items)
    result.differences = compare_reports(report, result.replayed, NOT_COMPARED)
    result.context = _context(report, result.replayed, predictor, items)
    return result
