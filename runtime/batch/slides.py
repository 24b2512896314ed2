"""Many slide cases from a manifest: resumable, one failure never stops the others, reports written atomically."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ..atomic import write_text_atomic
from ..dicom.dicomweb import is_series_url
from ..errors import ConfigurationError, InsufficientTissueError, ManifestError, NetoriginError, OutputError
from ..names import case_file, check_case_id
from ..reports.case_page import index_html
from ..reports.report import REPORT_VERSION, CaseExtras, write_case_outputs, write_insufficient_report
from ..slide.predictor import Predictor, PredictorSettings, SlideInput, case_inputs
from ..slide.slide import MppRule, row_mpp_rule
from .cluster import DaskMapper, LocalMapper, worker_cached
from .cluster_access import ClusterAccess
from .common import SUMMARY_NAME, CaseOutcome, finished_report, output_lock, status_counts
from .manifest import read_csv_rows

REQUIRED_COLUMNS = ("case", "slide")
OPTIONAL_COLUMNS = ("annotations", "specimen", "mpp", "force_mpp", "label")
INDEX_NAME = "index.html"


@dataclass(frozen=True)
class BatchCase:
    case_id: str
    slides: tuple[SlideInput, ...]


def read_manifest(path: str | Path, mpp: MppRule = MppRule()) -> list[BatchCase]:
    """One row per slide: case, slide[, annotations, specimen, mpp, force_mpp]; paths relative to the manifest.
    `mpp` applies to rows that give neither MPP column."""
    path = Path(path)
    rows = read_csv_rows(path, REQUIRED_COLUMNS, OPTIONAL_COLUMNS)
    cases: dict[str, list[SlideInput]] = {}
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(rows, start=2):
        case, slide = row.get("case", ""), row.get("slide", "")
        try:
            check_case_id(case)
        except ConfigurationError as exc:
            raise ManifestError(f"line {line}: {exc.problem}", path) from None
        if not slide:
            raise ManifestError(f"line {line}: empty slide path", path)
        if (case, slide) in seen:
            raise ManifestError(f"line {line}: duplicate row for case {case!r} and slide {slide!r}", path)
        seen.add((case, slide))
        base = path.parent
        ann = row.get("annotations")
        source = slide if is_series_url(slide) else base / slide
        cases.setdefault(case, []).append(SlideInput(path=source, annotations=base / ann if ann else None,
                                                     specimen=row.get("specimen") or "A",
                                                     mpp=row_mpp_rule(row, mpp, line, path)))
    return [BatchCase(case_id=c, slides=tuple(s)) for c, s in cases.items()]


def _difference(report: dict, predictor: Predictor, case: BatchCase) -> str | None:
    """Why a finished report (ok or insufficient tissue) was not made by this run's model, confidence, seed, region
    rules and inputs (slide files by content, annotation files by digest or their absence, specimens); None if it
    was."""
    if report.get("report_version") != REPORT_VERSION:
        return f"an earlier netorigin (report_version {report.get('report_version')})"
    model = predictor.contract.identity_difference(report.get("model") or {})
    if model is not None:
        return model
    if report.get("confidence") != (predictor.band.c if predictor.band else None):
        return f"confidence {report.get('confidence')}"
    if report.get("seed") != predictor.seed:
        return f"seed {report.get('seed')}"
    if report.get("region_rules") != predictor.rules.as_dict():
        return "other region rules (classes or object types)"
    try:
        current = case_inputs(case.slides)
    except NetoriginError:
        return "a slide or annotation file that can no longer be read"
    if report.get("inputs") != current:
        return "other slide or annotation files"
    return None


def plan_resume(predictor: Predictor, cases: list[BatchCase], out: Path, redo: bool = False) -> set[str]:
    """Case ids whose finished report this run may keep; refuses (or, with `redo`, reruns) any other report."""
    keep, stale = set(), []
    for case in cases:
        report = finished_report(case_file(out, case.case_id, ".json"))
        if report is None:
            continue
        reason = _difference(report, predictor, case)
        if reason is None:
            keep.add(case.case_id)
        else:
            stale.append(f"{case.case_id} ({reason})")
    if stale and not redo:
        shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        raise OutputError(f"{len(stale)} finished report(s) here were made by another run: {shown}; rerun with "
                          "--redo to replace them, or choose another output folder", out)
    return keep


def run_case(predictor: Predictor, case: BatchCase, out: Path, extras: CaseExtras = CaseExtras(),
             keep: frozenset[str] = frozenset()) -> CaseOutcome:
    """Predict one case and write its report; never raises for input problems."""
    if case.case_id in keep:
        return CaseOutcome(case.case_id, "skipped")
    try:
        result = predictor.predict_case(case.slides, case_id=case.case_id)
        write_case_outputs(result, out, extras)
        return CaseOutcome(case.case_id, "ok", verdict=result.verdict.verdict)
    except InsufficientTissueError as exc:
        try:
            write_insufficient_report(out, case.case_id, exc, predictor, case.slides, extras=extras)
        except NetoriginError as failure:  # e.g. its SR could not be stored: the case fails, the batch goes on
            return CaseOutcome(case.case_id, "failed", reason=str(failure))
        return CaseOutcome(case.case_id, "insufficient_tissue", reason=str(exc))
    except NetoriginError as exc:
        return CaseOutcome(case.case_id, "failed", reason=str(exc))
    except Exception as exc:  # unattended batches: an unforeseen failure of one case must not stop the rest
        return _unexpected(case, exc)


def _unexpected(case: BatchCase, exc: Exception) -> CaseOutcome:
    return CaseOutcome(case.case_id, "failed", reason=f"unexpected {type(exc).__name__}: {exc}")


def run_case_on_worker(case: BatchCase, settings: PredictorSettings, identity: dict[str, str], out: Path,
                       extras: CaseExtras) -> CaseOutcome:
    """One case as a cluster task. The worker verifies the model and opens its engine once per model identity
    and engine settings (seed, confidence and region rules only make a light copy), keeping the last two; a
    model file that differs from the driver's (another file at the same path) fails the case, named."""
    key = ("engine", settings.model, tuple(sorted(identity.items())), settings.engine, settings.device,
           settings.threads, settings.ov_precision, settings.trusted_keys)
    try:
        engine = worker_cached(key, settings.build, keep=2)
    except NetoriginError as exc:
        return CaseOutcome(case.case_id, "failed", reason=str(exc))
    except Exception as exc:  # e.g. out of memory opening the engine: this case fails, the batch goes on
        return _unexpected(case, exc)
    if engine.contract.identity != identity:
        return CaseOutcome(case.case_id, "failed", reason=f"{settings.model}: the model on this worker is not the "
                                                             "driver's (different digests)")
    predictor = engine.for_run(settings.seed, settings.confidence, settings.rules, settings.read_workers)
    return run_case(predictor, case, out, extras)


def _resolved(case: BatchCase) -> BatchCase:
    """Absolute paths: a worker started in another folder must read the same files."""
    return replace(case, slides=tuple(replace(s, path=s.path if is_series_url(s.path) else s.path.resolve(),
                                              annotations=s.annotations.resolve()
                                              if s.annotations else None) for s in case.slides))


def _run_on_cluster(mapper: DaskMapper, predictor: Predictor, cases: list[BatchCase], out: Path,
                    extras: CaseExtras, keep: frozenset[str], done: Callable[[CaseOutcome], CaseOutcome]
                    ) -> list[CaseOutcome]:
    """Finished cases are skipped here, the rest go to the cluster with absolute paths; a case the cluster loses
    (its workers kept dying) fails alone, like any other failing case."""
    # The trusted keys travel as key bytes: a worker trusts what the driver trusted, not a file at some path.
    settings = replace(predictor.settings, model=str(Path(predictor.settings.model).resolve()))
    todo = [_resolved(c) for c in cases if c.case_id not in keep]
    ran = mapper(run_case_on_worker, todo, on_done=done, on_lost=lambda case, why: CaseOutcome(
        case.case_id, "failed", reason=f"{case.case_id}: {why}"), settings=settings,
        identity=predictor.contract.identity, out=out.resolve(), extras=extras)
    by_id = {o.case_id: o for o in ran}
    return [by_id.get(c.case_id) or done(CaseOutcome(c.case_id, "skipped")) for c in cases]


def run_batch(predictor: Predictor, cases: list[BatchCase], out: Path, workers: int = 1,
              on_done: Callable[[CaseOutcome], None] | None = None, extras: CaseExtras = CaseExtras(),
              redo: bool = False, keep: set[str] | None = None,
              mapper: LocalMapper | DaskMapper | None = None) -> list[CaseOutcome]:
    """Run every case and write the summary: in `workers` threads sharing one session, or as one task per case
    on a Dask `mapper` (each worker keeps its own session; `out` must be a folder every worker can write). A
    finished case is skipped only if this run would make the same report (model identity, confidence, seed,
    region rules, slide files); `keep` is that plan when the caller made it already. `on_done` is called under a
    lock (progress bars are not thread-safe). The folder is locked while the batch runs."""
    with output_lock(out):
        return _run_batch(predictor, cases, out, workers, on_done, extras, redo, keep, mapper)


def _run_batch(predictor: Predictor, cases: list[BatchCase], out: Path, workers: int,
               on_done: Callable[[CaseOutcome], None] | None, extras: CaseExtras, redo: bool,
               keep: set[str] | None, mapper: LocalMapper | DaskMapper | None) -> list[CaseOutcome]:
    keep = frozenset(plan_resume(predictor, cases, out, redo) if keep is None else keep)
    done_lock = threading.Lock()

    def done(outcome: CaseOutcome) -> CaseOutcome:
        if on_done is not None:
            with done_lock:
                on_done(outcome)
        return outcome

    access = mapper.access if mapper is not None else ClusterAccess()
    extras = replace(extras, cluster=access.scheme)
    if isinstance(mapper, DaskMapper):
        outcomes = _run_on_cluster(mapper, predictor, cases, out, extras, keep, done)
    else:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            outcomes = list(pool.map(lambda case: done(run_case(predictor, case, out, extras, keep)), cases))
    summary = {"cases": len(outcomes),
               "counts": status_counts(outcomes),
               "cluster": access.as_record(),
               "failures": [{"case": o.case_id, "status": o.status, "reason": o.reason}
                            for o in outcomes if o.status in ("failed", "insufficient_tissue")],
               "outcomes": [o.__dict__ for o in outcomes]}
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2))
    reports = {o.case_id: finished_report(case_file(out, o.case_id, ".json")) for o in outcomes}
    write_text_atomic(out / INDEX_NAME, index_html(summary, {k: v for k, v in reports.items() if v}))
    return outcomes
