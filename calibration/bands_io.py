"""Reading per-patient sums tables and band files; writing bands into a model's metadata."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from netorigin.runtime.atomic import write_text_atomic
from netorigin.runtime.families import save_model
from netorigin.runtime.model.bands import Band, BandTable
from netorigin.runtime.model.contract import PREFIX, ModelContract, load_contract, with_metadata
from netorigin.runtime.model.record import CalibrationRecord
from netorigin.runtime.slide.verdict import case_score

from .errors import InputDataError
from .labels import LABEL_NAMES, label_code
from .splits import patient_digests


@dataclass(frozen=True)
class PatientSum:
    patient: str
    label: int  # 0 pancreas, 1 small intestine, 2 other
    s: float
    votes_small_intestine: int | None = None
    n_patches: int | None = None


def bag_sum(patient: str, label: int, score: float) -> PatientSum:
    """A bag head's S for a patient: the bag is the one voter, so its sign decides outside the band."""
    return PatientSum(patient, label, *case_score((), score))


def read_sums(path: str | Path) -> tuple[list[PatientSum], bool]:
    """CSV (patient,label,sum[,votes,n_patches]) or JSON (list of such objects, or {"sums": {label: [...]}}), and
    whether the rows name their patients (the {"sums": ...} form does not: its ids are made up, so nothing can be
    checked against them)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputDataError("sums file not found", path) from None
    rows: list[dict]
    ids_known = True
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"not valid JSON ({exc.msg})", path) from None
        if isinstance(doc, dict) and isinstance(doc.get("sums"), dict):
            rows = [{"patient": f"{label}-{i}", "label": label, "sum": s}
                    for label, values in doc["sums"].items() for i, s in enumerate(values)]
            ids_known = False
        elif isinstance(doc, list):
            rows = doc
        else:
            raise InputDataError("JSON must be a list of {patient, label, sum} or {\"sums\": {label: [...]}}",
                                 path)
    else:
        rows = list(csv.DictReader(text.splitlines()))
    out, seen = [], set()
    for i, row in enumerate(rows):
        try:
            patient, label, s = str(row["patient"]), row["label"], float(row["sum"])
        except (KeyError, TypeError, ValueError):
            raise InputDataError(f"row {i + 1} needs patient, label and a numeric sum", path) from None
        if not math.isfinite(s):
            raise InputDataError(f"patient {patient}: sum is NaN or infinite", path)
        if patient in seen:
            raise InputDataError(f"duplicate patient id {patient!r}", path)
        seen.add(patient)
        votes = row.get("votes")
        n = row.get("n_patches")
        out.append(PatientSum(patient, label_code(label, path), s,
                              int(votes) if votes not in (None, "") else None,
                              int(n) if n not in (None, "") else None))
    if not out:
        raise InputDataError("sums file has no rows", path)
    return out, ids_known


def table_from_sums(sums: list[PatientSum]) -> tuple[list[float], list[float]]:
    pi = [p.s for p in sums if p.label < 2]
    others = [p.s for p in sums if p.label == 2]
    return pi, others


def read_bands(path: str | Path) -> tuple[BandTable, CalibrationRecord]:
    """A band file of `calibrate --out`: the table and where it came from (in-sample flag, origin, decisions)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        bands = tuple(Band(**b) for b in doc["bands"])
        table = BandTable(bands=bands, n_pi=int(doc["n_pi"]), n_other=int(doc["n_other"]))
    except FileNotFoundError:
        raise InputDataError("bands file not found", path) from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputDataError(f"not a netorigin bands file ({exc})", path) from None
    if not isinstance(doc.get("calibration"), dict):
        raise InputDataError("the bands file does not say where its bands came from (made by an older netorigin): "
                             "run `netorigin calibrate ... -o BANDS.json` again", path)
    try:
        return table, CalibrationRecord.from_json(doc["calibration"])
    except (KeyError, TypeError) as exc:
        raise InputDataError(f"the bands file's calibration record is damaged ({exc})", path) from None


def write_bands(table: BandTable, calibration: CalibrationRecord, path: str | Path) -> None:
    """The band table and its calibration record as JSON (what `read_bands` and `netorigin export --bands` read)."""
    doc = {"n_pi": table.n_pi, "n_other": table.n_other, "default_confidence": table.default_confidence,
           "bands": table.to_json(), "calibration": asdict(calibration)}
    write_text_atomic(path, json.dumps(doc, indent=2))


def calibration_record(table: BandTable, sums: list[PatientSum], *, origin: str, decisions: str,
                       ids_known: bool = True, in_sample_patients: int = 0, checked_against_fit: bool = False
                       ) -> CalibrationRecord:
    """Where a band table came from. Invented patient ids never count as checked."""
    return CalibrationRecord(
        origin=origin, decisions=decisions, n_pi=table.n_pi, n_other=table.n_other,
        patients_sha256=tuple(patient_digests(p.patient for p in sums)) if ids_known else (),
        in_sample=in_sample_patients > 0, in_sample_patients=in_sample_patients,
        checked_against_fit=checked_against_fit and ids_known,
        sums=tuple(sorted(({"label": LABEL_NAMES[p.label], "s": float(p.s)} for p in sums), key=lambda r: r["s"])))


def check_bands_precision(precision: str, where=None) -> None:
    """A variant's bands come only from its own decisions (`train`): giving an fp16 / INT8 model other bands (fp32's,
    a table's, the head's) is refused."""
    if precision != "fp32":
        raise InputDataError(variant_bands_refusal(precision), where)


def variant_bands_refusal(precision: str) -> str:
    return (f"a {precision} model's bands come from its own decisions, not the fp32 model's or a table's: build it "
            f"with `netorigin train --precision {precision}` (or export it with --no-bands)")


def write_bands_into_model(model: str | Path | ModelContract, table: BandTable, calibration: CalibrationRecord,
                           out: str | Path | None = None) -> Path:
    """Replace an fp32 model's bands: the graph bytes stay identical (same graph digest), the record carries
    everything forward but the checks measured under the old bands (dropped: they must be run again), and the
    verdict digest changes. A variant's bands come only from its own decisions (`train`), so it is refused."""
    contract = model if isinstance(model, ModelContract) else load_contract(model)
    check_bands_precision(contract.precision, contract.path)
    meta = dict(contract.meta)
    meta[PREFIX + "bands"] = table.to_json()
    meta[PREFIX + "default_confidence"] = table.default_confidence
    meta[PREFIX + "record"] = contract.record.with_bands_from(calibration).to_json()
    meta[PREFIX + "provenance"] = dict(meta[PREFIX + "provenance"], bands_note=None)
    target = Path(out or contract.path)
    save_model(target, with_metadata(contract.model_bytes, meta), previous=contract)
    return target
