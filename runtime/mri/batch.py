"""Many MRI cases with one lesion model: a report per case, a summary, and (when the manifest gives each patient's
lesion class) the per-patient results table `compare-raters` reads. A case that cannot be used fails alone, named;
a rerun skips a case whose report this model made from the same series, region and clinical record."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..batch.cluster import DaskMapper, LocalMapper, worker_cached
from ..batch.common import SUMMARY_NAME, CaseOutcome, finished_report, output_lock, status_counts
from ..batch.manifest import read_csv_rows
from ..dicom.dicomweb import is_series_url
from ..errors import NetoriginError, OutputError, first_line
from ..names import case_file, check_case_id
from .clinical import read_clinical
from .occlusion import OCCLUSION_GRID
from .predictor import MriCase, MriPredictor, MriSettings, fetched, input_fingerprints
from .protocol import MODEL_KINDS, SEQUENCES, SEVEN_WAY
from .report import MRI_REPORT_VERSION, mri_report, write_mri_case
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
        case = MriCase(patient, {s: _input(path, row[s]) for s in sequences}, _input(path, row["roi"]),
                       records.get(patient))
        cases.append(MriBatchCase(case, label))
    return cases


def _input(manifest: Path, given: str) -> Path | str:
    """A manifest cell: a DICOMweb series URL as it is, a path relative to the manifest."""
    return given if is_series_url(given) else manifest.parent / given


def _inputs(series: list[dict], roi_sha256: str, clinical: dict | None) -> dict:
    return {"series": [{k: s[k] for k in ("sequence", "files", "sha256")} for s in series], "roi": roi_sha256,
            "clinical": clinical}


def _finished(predictor: MriPredictor, item: MriBatchCase, report: dict, occlusion_grid: int | None) -> bool:
    """`report` is of this version and was made by this model from the same series, region and clinical record,
    with the same occlusion grid."""
    try:
        if report.get("report_version") != MRI_REPORT_VERSION or \
                (report.get("occlusion") or {}).get("grid") != occlusion_grid:
            return False
        if {k: report["model"][k] for k in ("graph_sha256", "verdict_sha256")} != predictor.contract.identity:
            return False
        with fetched(item.case, predictor.contract.sequences) as (local, urls):
            series, roi = input_fingerprints(local, predictor.contract.sequences, urls)
        current = _inputs(series, roi["sha256"], item.case.clinical if predictor.contract.clinical else None)
        done = _inputs(report["inputs"]["series"], report["inputs"]["roi"]["sha256"], report["inputs"]["clinical"])
        return done == current
    except (OSError, KeyError, TypeError, NetoriginError):  # an input gone or unreachable: run the case again
        return False


def run_mri_case(item: MriBatchCase, predictor: MriPredictor, out: Path, occlusion_grid: int | None
                 ) -> tuple[CaseOutcome, dict | None]:
    """One case: its report and page written, or its earlier ones removed and the failure named."""
    patient = item.case.patient
    try:
        result = predictor.predict(item.case, occlusion_grid)
        report = mri_report(result, predictor)
        write_mri_case(out, result, report)
    except Exception as exc:  # this case fails, named; the others go on
        reason = str(exc) if isinstance(exc, NetoriginError) else \
            f"unexpected {type(exc).__name__}: {first_line(exc)}"
        for suffix in (".json", ".html"):
            case_file(out, patient, suffix).unlink(missing_ok=True)
        return CaseOutcome(patient, "failed", reason=reason), None
    return CaseOutcome(patient, "ok", verdict=report["lesion_class"]), report


def run_mri_case_on_worker(item: MriBatchCase, settings: MriSettings, identity: dict[str, str], out: Path,
                           occlusion_grid: int | None) -> tuple[CaseOutcome, dict | None]:
    """One case as a cluster task: the worker verifies the model and opens its session once per model and
    settings; a model file that differs from the driver's fails the case, named."""
    patient = item.case.patient
    try:
        predictor = worker_cached(("mri", settings, tuple(sorted(identity.items()))), settings.build, keep=2)
    except NetoriginError as exc:
        return CaseOutcome(patient, "failed", reason=str(exc)), None
    if predictor.contract.identity != identity:
        return CaseOutcome(patient, "failed", reason=f"{settings.model}: the model on this worker is not the "
                                                     "driver's (different digests)"), None
    return run_mri_case(item, predictor, out, occlusion_grid)


def _resolved(item: MriBatchCase) -> MriBatchCase:
    """Absolute paths: a worker started in another folder must read the same files."""
    case = replace(item.case, series={s: p if is_series_url(p) else p.resolve() for s, p in item.case.series.items()},
                   roi=item.case.roi if is_series_url(item.case.roi) else item.case.roi.resolve())
    return replace(item, case=case)


def run_mri_batch(predictor: MriPredictor, items: list[MriBatchCase], out: Path,
                  on_done: Callable[[CaseOutcome], None] = lambda _: None, redo: bool = False,
                  mapper: LocalMapper | DaskMapper | None = None, occlusion_grid: int | None = OCCLUSION_GRID
                  ) -> list[CaseOutcome]:
    """Every case, here or as one task per case on a Dask `mapper` (its workers share `out`); the summary (and
    the results table when cases have labels) written last. Reports of another model in `out` are refused unless
    `redo` (one summary never mixes two models); a case that now fails loses its earlier report and page."""
    mapper = mapper or LocalMapper()
    with output_lock(out):
        earlier = {item.case.patient: finished_report(case_file(out, item.case.patient, ".json"))
                   for item in items}
        others = [p for p, r in earlier.items() if r is not None and r.get("model", {}).get("graph_sha256") !=
                  predictor.contract.identity["graph_sha256"]]
        if others and not redo:
            raise OutputError(f"{len(others)} report(s) here (e.g. {others[0]}) were made by another model: --redo "
                              "replaces them", out)
        kept = {item.case.patient for item in items
                if earlier[item.case.patient] is not None
                and _finished(predictor, item, earlier[item.case.patient], occlusion_grid)}
        todo = [item for item in items if item.case.patient not in kept]

        def done(result: tuple[CaseOutcome, dict | None]) -> None:
            on_done(result[0])

        def lost(item: MriBatchCase, why: str) -> tuple[CaseOutcome, None]:
            return CaseOutcome(item.case.patient, "failed", reason=f"{item.case.patient}: {why}"), None

        if isinstance(mapper, DaskMapper):
            ran = mapper(run_mri_case_on_worker, [_resolved(i) for i in todo], on_done=done, on_lost=lost,
                         settings=predictor.settings, identity=predictor.contract.identity, out=out.resolve(),
                         occlusion_grid=occlusion_grid)
        else:
            ran = mapper(run_mri_case, todo, on_done=done, predictor=predictor, out=out,
                         occlusion_grid=occlusion_grid)
        by_patient = {outcome.case_id: (outcome, report) for outcome, report in ran}
        outcomes, rows = [], []
        for item in items:
            patient = item.case.patient
            if patient in kept:
                outcome, report = CaseOutcome(patient, "skipped", verdict=earlier[patient]["lesion_class"]), \
                    earlier[patient]
                on_done(outcome)
            else:
                outcome, report = by_patient[patient]
            outcomes.append(outcome)
            if report is not None:
                rows.append((item, report))
        summary = {"family": "mri", "model": predictor.contract.identity | {"kind": predictor.contract.kind},
                   "cases": len(outcomes), "counts": status_counts(outcomes), "cluster": mapper.access.as_record(),
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
