"""The clinical record of Models F/G (seed 002): the seed's fields, their encoding into the numbers that join the
image features before the fully connected layer, and the checks that refuse an incomplete or unknown record.

The seed one-hot encodes its fields (its Table S3 is not public). Choices, stated in the README: yes/no and sex
are one-hot; each tumour marker and liver-function value is one-hot "normal / abnormal" against a common
reference limit; age is years / 100. The table travels in the model's metadata, so the runtime encodes a record
exactly as training did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..batch.manifest import read_csv_rows
from ..errors import MriInputError


@dataclass(frozen=True)
class ClinicalField:
    """One field: `yes_no` / `category` (one-hot over `categories`), `above` / `below` (one-hot normal/abnormal
    against `limit` in `unit`), or `number` (value / `scale`)."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    limit: float | None = None
    unit: str = ""
    scale: float | None = None

    @property
    def width(self) -> int:
        return 1 if self.kind == "number" else 2 if self.kind in ("above", "below", "yes_no") else len(
            self.categories)


def _yes_no(name: str) -> ClinicalField:
    return ClinicalField(name, "yes_no", ("no", "yes"))


def _upper(name: str, limit: float, unit: str) -> ClinicalField:
    return ClinicalField(name, "above", limit=limit, unit=unit)


DEFAULT_ENCODING = (
    ClinicalField("age", "number", unit="years", scale=100.0),
    ClinicalField("sex", "category", ("female", "male")),
    _yes_no("cirrhosis"), _yes_no("other_cancer"),
    _upper("afp", 20.0, "ng/mL"), _upper("cea", 5.0, "ng/mL"), _upper("ca125", 35.0, "U/mL"),
    _upper("ca199", 37.0, "U/mL"), _upper("psa", 4.0, "ng/mL"), _upper("ferritin", 400.0, "ng/mL"),
    ClinicalField("albumin", "below", limit=35.0, unit="g/L"), _upper("bilirubin", 21.0, "umol/L"),
    _yes_no("prolonged_pt"), _yes_no("encephalopathy"), _yes_no("ascites"),
)
CLINICAL_FIELDS = tuple(f.name for f in DEFAULT_ENCODING)


def encoding_to_json(encoding: tuple[ClinicalField, ...]) -> list[dict]:
    return [asdict(f) | {"categories": list(f.categories)} for f in encoding]


def encoding_from_json(rows: list[dict]) -> tuple[ClinicalField, ...]:
    return tuple(ClinicalField(**(row | {"categories": tuple(row.get("categories", ()))})) for row in rows)


def encoded_width(encoding: tuple[ClinicalField, ...]) -> int:
    return sum(f.width for f in encoding)


def _number(value: str, field: ClinicalField, patient: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise MriInputError(f"patient {patient}: {field.name} {value!r} is not a number"
                            + (f" (in {field.unit})" if field.unit else "")) from None
    if not math.isfinite(number) or number < 0:
        raise MriInputError(f"patient {patient}: {field.name} {value!r} is not a non-negative number")
    return number


def encode_record(record: Mapping[str, str], encoding: tuple[ClinicalField, ...], patient: str) -> np.ndarray:
    """The record as the model's clinical input (float32); a missing value, a value that is not a number or an
    unknown category is one line naming the patient and the field, never a guess."""
    parts: list[float] = []
    for field in encoding:
        value = (record.get(field.name) or "").strip()
        if not value:
            raise MriInputError(f"patient {patient}: clinical field {field.name} is missing (Models F/G need every "
                                "field; there is no imputation)")
        if field.kind == "number":
            parts.append(_number(value, field, patient) / (field.scale or 1.0))
        elif field.kind in ("above", "below"):
            number = _number(value, field, patient)
            abnormal = number > field.limit if field.kind == "above" else number < field.limit
            parts += [0.0, 1.0] if abnormal else [1.0, 0.0]
        else:
            if value.lower() not in field.categories:
                raise MriInputError(f"patient {patient}: {field.name} {value!r} is not one of "
                                    f"{', '.join(field.categories)}")
            parts += [float(value.lower() == c) for c in field.categories]
    return np.asarray(parts, dtype=np.float32)


def read_clinical(path: str | Path, encoding: tuple[ClinicalField, ...] = DEFAULT_ENCODING
                  ) -> dict[str, dict[str, str]]:
    """CSV `patient,<field>...` -> record per patient; a column that is no field of `encoding` is refused (a
    misspelt field would otherwise be silently missing), as is a patient given twice."""
    path = Path(path)
    rows = read_csv_rows(path, ("patient",), optional=tuple(f.name for f in encoding))
    records: dict[str, dict[str, str]] = {}
    for row in rows:
        if row["patient"] in records:
            raise MriInputError(f"patient {row['patient']} appears twice", path)
        records[row["patient"]] = {k: v for k, v in row.items() if k != "patient"}
    return records
