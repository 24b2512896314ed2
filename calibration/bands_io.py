"""Reading per-patient sums tables and band files; writing bands into a model's metadata."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from netorigin.runtime.atomic import write_bytes_atomic, write_text_atomic
from netorigin.runtime.bands import Band, BandTable
from netorigin.runtime.contract import PREFIX, ModelContract, load_contract, with_metadata

from .errors import InputDataError
from .labels import LABEL_NAMES, label_code


@dataclass(frozen=True)
class PatientSum:
    patient: str
    label: int  # 0 pancreas, 1 small intestine, 2 other
    s: float
    votes_small_intestine: int | None = None
    n_patches: int | None = None


def bag_sum(patient: str, label: int, score: float) -> PatientSum:
    """A bag head's S for a patient: the bag is the one voter, so its sign decides outside the band."""
    return PatientSum(patient, label, score, int(score > 0), 1)


def read_sums(path: str | Path) -> list[PatientSum]:
    """CSV (patient,label,sum[,votes,n_patches]) or JSON (list of such objects, or {"sums": {label: [...]}})."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputDataError("sums file not found", path) from None
    rows: list[dict]
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"not valid JSON ({exc.msg})", path) from None
        if isinstance(doc, dict) and isinstance(doc.get("sums"), dict):
            rows = [{"patient": f"{label}-{i}", "label": label, "sum": s}
                    for label, values in doc["sums"].items() for i, s in enumerate(values)]
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
    return out


def table_from_sums(sums: list[PatientSum]) -> tuple[list[float], list[float]]:
    pi = [p.s for p in sums if p.label < 2]
    others = [p.s for p in sums if p.label == 2]
    return pi, others


def read_bands(path: str | Path) -> BandTable:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        bands = tuple(Band(**b) for b in doc["bands"])
        return BandTable(bands=bands, n_pi=int(doc["n_pi"]), n_other=int(doc["n_other"]))
    except FileNotFoundError:
        raise InputDataError("bands file not found", path) from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputDataError(f"not a netorigin bands file ({exc})", path) from None


def write_bands(table: BandTable, path: str | Path) -> None:
    """The band table as JSON (what `read_bands` and `netorigin export --bands` read)."""
    doc = {"n_pi": table.n_pi, "n_other": table.n_other, "default_confidence": table.default_confidence,
           "bands": table.to_json()}
    write_text_atomic(path, json.dumps(doc, indent=2))


def calibration_record(sums: list[PatientSum]) -> list[dict]:
    """The calibration patients' sums and labels, without patient ids, sorted: what a case page plots the band
    against (provenance, not verdict-deciding)."""
    return sorted(({"label": LABEL_NAMES[p.label], "s": float(p.s)} for p in sums), key=lambda r: r["s"])


def write_bands_into_model(model: str | Path | ModelContract, table: BandTable, out: str | Path | None = None, *,
                           calibration: dict | None = None, sums: list[PatientSum] | None = None) -> Path:
    """Replace the model's bands and default confidence; the graph bytes stay identical (same graph digest), the
    verdict digest changes. `calibration` adds provenance (in-sample flag, what was checked), `sums` the
    calibration patients' sums."""
    contract = model if isinstance(model, ModelContract) else load_contract(model)
    meta = dict(contract.meta)
    meta[PREFIX + "bands"] = table.to_json()
    meta[PREFIX + "default_confidence"] = table.default_confidence
    prov = dict(meta[PREFIX + "provenance"])
    prov["calibration"] = {"n_pi": table.n_pi, "n_other": table.n_other, **(calibration or {}),
                           "sums": calibration_record(sums or [])}
    prov["bands_note"] = None
    meta[PREFIX + "provenance"] = prov
    target = Path(out or contract.path)
    write_bytes_atomic(target, with_metadata(contract.model_bytes, meta))
    return target
