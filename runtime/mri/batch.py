"""Many MRI cases with one lesion model: a report per case, a summary, and (when the manifest gives each patient's
lesion class) the per-patient results table `compare-raters` reads. A case that cannot be used fails alone, named;
a rerun skips a case whose report this model made from the same series, region and clinical record."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..batch import SUMMARY_NAME, CaseOutcome, finished_report, output_lock, status_counts
from ..errors import NetoriginError, OutputError, first_line
from ..manifest import read_csv_rows
from ..names import case_file, check_case_id
from .clinical import read_clinical
from .predictor import MriCase, MriPredictor, input_fingerprints
from .protocol import MODEL_KINDS, SEQUENCES, SEVEN_WAY
from .report import mri_report
from .results import write_results_table

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


def _inputs(series: list[dict], roi_sha256: str, clinical: dict | None) -> dict:
    return {"series": [{k: s[k] for k in ("sequence", "files", "sha256")} for s in series], "roi": roi_sha256,
            "clinical": clinical}


def _finished(predictor: MriPredictor, item: MriBatchCase, report: dict) -> bool:
    """`report` was made by this model from the same series, region and clinical record."""
    try:
        if {k: report["model"][k] for k in ("graph_sha256", "verdict_sha256")} != predictor.contract.identity:
            return False
        series, roi = input_fingerprints(item.case, predictor.contract.sequences)
        current = _inputs(series, roi["sha256"], item.case.clinical if predictor.contract.clinical else None)
        done = _inputs(report["inputs"]["series"], report["inputs"]["roi"]["sha256"], report["inputs"]["clinical"])
        return done == current
    except (OSError, KeyError, TypeError):
        return False


def run_mri_batch(predictor: MriPredictor, items: list[MriBatchCase], out: Path,
                  on_done: Callable[[CaseOutcome], None] = lambda _: None, redo: bool = False) -> list[CaseOutcome]:
    """Every case in turn; the summary (and the results table when cases have labels) written last. Reports of
    another model in `out` are refused unless `redo` (one summary never mixes two models); a case that now fails
    loses its earlier report."""
    with output_lock(out):
        earlier = {item.case.patient: finished_report(case_file(out, item.case.patient, ".json"))
                   for item in items}
        others = [p for p, r in earlier.items() if r is not None and r.get("model", {}).get("graph_sha256") !=
                  predictor.contract.identity["graph_sha256"]]
        if others and not redo:
            raise OutputError(f"{len(others)} report(s) here (e.g. {others[0]}) were made by another model: --redo "
                              "replaces them", out)
        outcomes, rows = [], []
        for item in items:
            patient = item.case.patient
            report = earlier[patient]
            if report is not None and _finished(predictor, item, report):
                outcome = CaseOutcome(patient, "skipped", verdict=report["lesion_class"])
            else:
                try:
                    report = mri_report(predictor.predict(item.case), predictor)
                except Exception as exc:  # this case fails, named; the others go on
                    reason = str(exc) if isinstance(exc, NetoriginError) else \
                        f"unexpected {type(exc).__name__}: {first_line(exc)}"
                    case_file(out, patient, ".json").unlink(missing_ok=True)
                    outcome = CaseOutcome(patient, "failed", reason=reason)
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
    """The reference mapped into the model's task (a patient outside it, e.g. a cyst for a malignancy model, is
    left out)."""
    kind = MODEL_KINDS[predictor.contract.kind]
    classes = predictor.contract.classes
    table = [(item.case.patient, kind.label_of(item.label),
              np.array([report["patient_sums"][c] for c in classes]), len(report["groups"]))
             for item, report in rows if kind.label_of(item.label) is not None]
    write_results_table(path, table, classes)
