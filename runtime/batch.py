"""Many cases from a manifest: resumable, one failure never stops the others, reports written atomically."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_text_atomic
from .errors import InsufficientTissueError, ManifestError, NetoriginError
from .manifest import read_csv_rows
from .predictor import Predictor, SlideInput
from .report import write_case_outputs, write_insufficient_report

REQUIRED_COLUMNS = ("case", "slide")
OPTIONAL_COLUMNS = ("annotations", "specimen", "mpp", "label")
SAFE_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SUMMARY_NAME = "batch-summary.json"


@dataclass(frozen=True)
class BatchCase:
    case_id: str
    slides: tuple[SlideInput, ...]


@dataclass(frozen=True)
class CaseOutcome:
    case_id: str
    status: str  # ok | skipped | insufficient_tissue | failed
    verdict: str | None = None
    reason: str | None = None


def read_manifest(path: str | Path) -> list[BatchCase]:
    """One row per slide: case, slide[, annotations, specimen, mpp]; paths relative to the manifest."""
    path = Path(path)
    rows = read_csv_rows(path, REQUIRED_COLUMNS, OPTIONAL_COLUMNS)
    cases: dict[str, list[SlideInput]] = {}
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(rows, start=2):
        case, slide = row.get("case", ""), row.get("slide", "")
        if not SAFE_CASE_ID.match(case):
            raise ManifestError(f"line {line}: case id {case!r} must be letters, digits, '.', '_' or '-'", path)
        if not slide:
            raise ManifestError(f"line {line}: empty slide path", path)
        if (case, slide) in seen:
            raise ManifestError(f"line {line}: duplicate row for case {case!r} and slide {slide!r}", path)
        seen.add((case, slide))
        try:
            mpp = float(row["mpp"]) if row.get("mpp") else None
        except ValueError:
            raise ManifestError(f"line {line}: mpp {row['mpp']!r} is not a number", path) from None
        base = path.parent
        ann = row.get("annotations")
        cases.setdefault(case, []).append(SlideInput(path=base / slide, annotations=base / ann if ann else None,
                                                     specimen=row.get("specimen") or "A", mpp=mpp))
    return [BatchCase(case_id=c, slides=tuple(s)) for c, s in cases.items()]


def _finished(report: Path) -> bool:
    try:
        return json.loads(report.read_text()).get("status") in ("ok", "insufficient_tissue")
    except (OSError, json.JSONDecodeError):
        return False


def run_case(predictor: Predictor, case: BatchCase, out: Path, geojson: bool = False,
             thumbnail: bool = False) -> CaseOutcome:
    """Predict one case and write its report; never raises for input problems."""
    if _finished(out / f"{case.case_id}.json"):
        return CaseOutcome(case.case_id, "skipped")
    try:
        result = predictor.predict_case(case.slides, case_id=case.case_id)
        write_case_outputs(result, out, geojson=geojson, thumbnail=thumbnail)
        return CaseOutcome(case.case_id, "ok", verdict=result.verdict.verdict)
    except InsufficientTissueError as exc:
        write_insufficient_report(out, case.case_id, exc, predictor)
        return CaseOutcome(case.case_id, "insufficient_tissue", reason=str(exc))
    except NetoriginError as exc:
        return CaseOutcome(case.case_id, "failed", reason=str(exc))
    except Exception as exc:  # unattended batches: an unforeseen failure of one case must not stop the rest
        return CaseOutcome(case.case_id, "failed", reason=f"unexpected {type(exc).__name__}: {exc}")


STATUSES = ("ok", "skipped", "insufficient_tissue", "failed")


def status_counts(outcomes: list[CaseOutcome]) -> dict[str, int]:
    return {s: sum(o.status == s for o in outcomes) for s in STATUSES}


def run_batch(predictor: Predictor, cases: list[BatchCase], out: Path, workers: int = 1,
              on_done: Callable[[CaseOutcome], None] | None = None, geojson: bool = False,
              thumbnail: bool = False) -> list[CaseOutcome]:
    """Run every case (in `workers` threads sharing one session) and write the summary."""

    def one(case: BatchCase) -> CaseOutcome:
        outcome = run_case(predictor, case, out, geojson, thumbnail)
        if on_done is not None:
            on_done(outcome)
        return outcome

    with ThreadPoolExecutor(max(1, workers)) as pool:
        outcomes = list(pool.map(one, cases))
    summary = {"cases": len(outcomes),
               "counts": status_counts(outcomes),
               "failures": [{"case": o.case_id, "status": o.status, "reason": o.reason}
                            for o in outcomes if o.status in ("failed", "insufficient_tissue")],
               "outcomes": [o.__dict__ for o in outcomes]}
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2))
    return outcomes
