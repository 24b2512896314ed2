"""Many MRI cases with one lesion model: a report per case, a summary, and (when the manifest gives each patient's
lesion class) the per-patient results table `compare-raters` reads. A case that cannot be used fails alone, named;
a rerun skips a case whose report this model made from the same series, region and clinical record."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text_atomic
from ..batch import SUMMARY_NAME, CaseOutcome, output_lock, status_counts
from ..errors import NetoriginError
from ..manifest import read_csv_rows
from ..names import case_file, check_case_id
from .clinical import read_clinical
from .predictor import MriCase, MriPredictor, series_fingerprint
from .protocol import SEQUENCES, SEVEN_WAY
from .report import mri_report

RESULTS_NAME = "results.csv"


@dataclass(frozen=True)
class MriBatchCase:
    case: MriCase
    label: str | None  # the reference lesion class, when the manifest gives one


def read_mri_manifest(path: str | Path, predictor: MriPredictor, clinical: str | Path | None) -> list[MriBatchCase]:
    """Rows `patient[,label],<a series folder per sequence the model takes>,roi`, paths relative to the manifest;
    the clinical CSV is read whole here (its columns checked) and each patient's row attached."""
    path = Path(path)
    sequences = predictor.contract.sequences
    rows = read_csv_rows(path, ("patient", *sequences, "roi"), ("label", *SEQUENCES))
    records = read_clinical(clinical) if clinical is not None else {}
    cases, seen = [], set()
    for row in rows:
        patient = check_case_id(row["patient"])
        if patient in seen:
            raise NetoriginError(f"patient {patient} appears twice", path)
        seen.add(patient)
        label = row.get("label") or None
        if label is not None and label not in SEVEN_WAY:
            raise NetoriginError(f"patient {patient}: unknown lesion class {label!r}", path)
        case = MriCase(patient, {s: path.parent / row[s] for s in sequences}, path.parent / row["roi"],
                       records.get(patient))
        cases.append(MriBatchCase(case, label))
    return cases


def _inputs_of(report: dict) -> dict:
    return {"series": [{k: s[k] for k in ("sequence", "files", "sha256")} for s in report["inputs"]["series"]],
            "roi": report["inputs"]["roi"]["sha256"], "clinical": report["inputs"].get("record")}


def _finished(predictor: MriPredictor, item: MriBatchCase, out: Path) -> bool:
    """A report of this model from the same series, region and clinical record is already there."""
    path = case_file(out, item.case.patient, ".json")
    try:
        report = json.loads(path.read_text())
        if {k: report["model"][k] for k in ("graph_sha256", "verdict_sha256")} != predictor.contract.identity:
            return False
        series = [{"sequence": s} | series_fingerprint(item.case.series[s]) for s in predictor.contract.sequences]
        current = {"series": [{k: s[k] for k in ("sequence", "files", "sha256")} for s in series],
                   "roi": _sha256(item.case.roi), "clinical": item.case.clinical
                   if predictor.contract.clinical else None}
        return _inputs_of(report) == current
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_mri_batch(predictor: MriPredictor, items: list[MriBatchCase], out: Path,
                  on_done: Callable[[CaseOutcome], None] = lambda _: None) -> list[CaseOutcome]:
    """Every case in turn; the summary (and the results table when every case has a label) written last."""
    with output_lock(out):
        outcomes, rows = [], []
        for item in items:
            patient = item.case.patient
            if _finished(predictor, item, out):
                report = json.loads(case_file(out, patient, ".json").read_text())
                outcome = CaseOutcome(patient, "skipped", verdict=report["lesion_class"])
            else:
                try:
                    report = mri_report(predictor.predict(item.case), predictor)
                except NetoriginError as exc:  # this case fails, named; the others go on
                    outcome = CaseOutcome(patient, "failed", reason=str(exc))
                    outcomes.append(outcome)
                    on_done(outcome)
                    continue
                write_text_atomic(case_file(out, patient, ".json"), json.dumps(report, indent=2))
                outcome = CaseOutcome(patient, "ok", verdict=report["lesion_class"])
            rows.append((item, report))
            outcomes.append(outcome)
            on_done(outcome)
        summary = {"family": "mri", "model": predictor.contract.identity | {"kind": predictor.contract.kind},
                   "cases": len(outcomes), "counts": status_counts(outcomes),
                   "failures": [{"case": o.case_id, "reason": o.reason} for o in outcomes if o.status == "failed"],
                   "outcomes": [o.__dict__ for o in outcomes]}
        write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2))
        labelled = [(item, report) for item, report in rows if item.label is not None]
        if labelled:
            _write_results(out / RESULTS_NAME, labelled, predictor)
        return outcomes


def _write_results(path: Path, rows: list[tuple[MriBatchCase, dict]], predictor: MriPredictor) -> None:
    """patient,label,<summed probability per class>: the reference mapped into the model's task (a patient
    outside it, e.g. a cyst for a malignancy model, is left out)."""
    from .protocol import MODEL_KINDS

    kind = MODEL_KINDS[predictor.contract.kind]
    classes = predictor.contract.classes
    lines = [",".join(["patient", "label", *classes])]
    for item, report in rows:
        label = kind.label_of(item.label)
        if label is not None:
            lines.append(",".join([item.case.patient, label,
                                   *(f"{report['patient_sums'][c]:.8g}" for c in classes)]))
    write_text_atomic(path, "\n".join(lines) + "\n")
