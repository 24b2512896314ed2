"""Seed 002's evaluation tables from per-patient results: for each model and class, ROC AUC with DeLong's 95 %
interval and sensitivity / specificity of the model's call with Clopper-Pearson intervals (Tables 1-3), the
readers' consensus beside them with McNemar's exact p, DeLong's p between every pair of models scored on the same
patients, and Cohen's kappa of every rater against the reference standard (Table 4).

A model's result for a patient is one score per class (the sum of its image groups' probabilities) and its call
the largest; the readers give calls only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from netorigin.runtime.batch.manifest import read_csv_rows
from netorigin.runtime.mri.protocol import BINARY, GROUPS

from .comparisons import cohen_kappa, delong, mcnemar_exact
from .errors import InputDataError
from .metrics import rate


@dataclass(frozen=True)
class RaterCalls:
    """One rater's results on a cohort: the reference class and the call per patient, and (models only) the
    per-class scores the AUC is computed from."""

    name: str
    classes: tuple[str, ...]
    patients: tuple[str, ...]
    reference: tuple[str, ...]
    calls: tuple[str, ...]
    scores: np.ndarray | None = None


def _rows(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[dict[str, str]]]:
    """The table's columns and rows; one patient per row."""
    rows = read_csv_rows(path, required)
    patients = [r["patient"] for r in rows]
    if len(set(patients)) != len(patients):
        raise InputDataError("a patient appears twice", path)
    return list(rows[0]), rows


def read_model_results(path: str | Path, name: str | None = None) -> RaterCalls:
    """CSV `patient,label,CLASS1,CLASS2,...`: the reference class and one score per class (e.g. the patient's
    summed probabilities); the call is the class with the largest score."""
    path = Path(path)
    header, rows = _rows(path, ("patient", "label"))
    classes = tuple(c for c in header if c not in ("patient", "label"))
    if len(classes) < 2:
        raise InputDataError("needs a score column for at least two classes after patient,label", path)
    try:
        scores = np.array([[float(r[c]) for c in classes] for r in rows])
    except (TypeError, ValueError):
        raise InputDataError("a class score is not a number", path) from None
    if not np.isfinite(scores).all():
        raise InputDataError("a class score is not finite", path)
    reference = tuple(r["label"] for r in rows)
    unknown = sorted(set(reference) - set(classes))
    if unknown:
        raise InputDataError(f"label(s) {', '.join(unknown)} have no score column", path)
    calls = tuple(classes[i] for i in scores.argmax(axis=1))
    return RaterCalls(name or path.stem, classes, tuple(r["patient"] for r in rows), reference, calls, scores)


def read_reader_calls(path: str | Path) -> dict[str, str]:
    """CSV `patient,call`: the readers' (consensus) class per patient."""
    path = Path(path)
    _, rows = _rows(path, ("patient", "call"))
    return {r["patient"]: r["call"] for r in rows}


def readers_on(calls: dict[str, str], model: RaterCalls, name: str) -> RaterCalls | None:
    """The readers' calls on `model`'s patients and classes (seven-way calls grouped into benign / malignant for a
    binary model), or None when they do not cover them."""
    if model.classes == BINARY:
        calls = {p: next((g for g, members in GROUPS.items() if c in members), c) for p, c in calls.items()}
    if any(p not in calls for p in model.patients) or any(calls[p] not in model.classes for p in model.patients):
        return None
    return RaterCalls(name, model.classes, model.patients, model.reference, tuple(calls[p] for p in model.patients))


def _correct(rater: RaterCalls, cls: str) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: is it of `cls`, and is the rater right about that (called cls, or did not)."""
    truth = np.array([r == cls for r in rater.reference])
    called = np.array([c == cls for c in rater.calls])
    return truth, called == truth


def class_rows(model: RaterCalls, readers: RaterCalls | None = None) -> list[dict]:
    """Tables 1-3: one row per class."""
    rows = []
    for index, cls in enumerate(model.classes):
        truth, right = _correct(model, cls)
        row: dict = {"class": cls, "patients": int(truth.sum())}
        try:
            result = delong(truth, model.scores[:, index])
            row |= {"auc": float(result.auc[0]), "auc_ci95": list(result.ci95())}
        except InputDataError as exc:  # a class with fewer than two patients in or out of it
            row |= {"auc": None, "auc_ci95": None, "auc_note": str(exc)}
        row |= {"sensitivity": rate(int(right[truth].sum()), int(truth.sum())),
                "specificity": rate(int(right[~truth].sum()), int((~truth).sum()))}
        if readers is not None:
            _, reader_right = _correct(readers, cls)
            row["readers"] = {
                "sensitivity": rate(int(reader_right[truth].sum()), int(truth.sum())),
                "specificity": rate(int(reader_right[~truth].sum()), int((~truth).sum())),
                "mcnemar_p_sensitivity": mcnemar_exact(right[truth], reader_right[truth]).p,
                "mcnemar_p_specificity": mcnemar_exact(right[~truth], reader_right[~truth]).p}
        rows.append(row)
    return rows


def model_differences(models: Sequence[RaterCalls]) -> list[dict]:
    """DeLong's p per class between every two models scored on the same patients with the same classes."""
    out = []
    for first, second in combinations(models, 2):
        if first.patients != second.patients or first.classes != second.classes:
            continue
        per_class = {}
        for index, cls in enumerate(first.classes):
            truth = np.array([r == cls for r in first.reference])
            try:
                per_class[cls] = delong(truth, first.scores[:, index], second.scores[:, index]).p_difference()
            except InputDataError:
                per_class[cls] = None
        out.append({"models": [first.name, second.name], "delong_p": per_class})
    return out


def agreement(rater: RaterCalls) -> dict:
    """Table 4: Cohen's kappa of the rater's calls against the reference, with its z-test p."""
    result = cohen_kappa(list(rater.reference), list(rater.calls), list(rater.classes))
    agree = sum(r == c for r, c in zip(rater.reference, rater.calls, strict=True))
    return {"rater": rater.name, "kappa": result.kappa, "kappa_ci95": list(result.ci95), "p": result.p,
            "agreement": agree / len(rater.reference), "patients": len(rater.reference)}


def evaluation_tables(models: Sequence[RaterCalls], readers: dict[str, RaterCalls] | None = None) -> dict:
    """Every table for `models` (and the readers' calls on each model's patients, keyed by model name)."""
    if not models:
        raise InputDataError("no model results given")
    readers = readers or {}
    return {"models": [{"name": m.name, "classes": list(m.classes), "patients": len(m.patients),
                        "rows": class_rows(m, readers.get(m.name))} for m in models],
            "differences": model_differences(models),
            "agreement": [agreement(m) for m in models]
            + [agreement(r) | {"on": name} for name, r in readers.items()]}


def _fmt(rate: dict) -> str:
    low, high = rate["ci95"]
    return "n/a" if rate["trials"] == 0 else f"{100 * rate['value']:.1f} % ({100 * low:.1f}-{100 * high:.1f})"


def tables_markdown(tables: dict) -> str:
    """The tables as Markdown, in the seed's shape."""
    lines = []
    for model in tables["models"]:
        with_readers = any("readers" in row for row in model["rows"])
        lines += ["", f"### {model['name']} ({model['patients']} patients)", "",
                  "| class | n | AUC (95 % CI) | sensitivity | specificity |"
                  + (" readers' sensitivity | p | readers' specificity | p |" if with_readers else ""),
                  "|---|---|---|---|---|" + ("---|---|---|---|" if with_readers else "")]
        for row in model["rows"]:
            auc = "n/a" if row["auc"] is None else \
                f"{row['auc']:.3f} ({row['auc_ci95'][0]:.3f}-{row['auc_ci95'][1]:.3f})"
            line = f"| {row['class']} | {row['patients']} | {auc} | {_fmt(row['sensitivity'])} | " \
                   f"{_fmt(row['specificity'])} |"
            if "readers" in row:
                r = row["readers"]
                line += f" {_fmt(r['sensitivity'])} | {r['mcnemar_p_sensitivity']:.3g} | " \
                        f"{_fmt(r['specificity'])} | {r['mcnemar_p_specificity']:.3g} |"
            lines.append(line)
    for diff in tables["differences"]:
        values = ", ".join(f"{cls} {'n/a' if p is None else f'{p:.3g}'}" for cls, p in diff["delong_p"].items())
        lines += ["", f"DeLong p, {diff['models'][0]} vs {diff['models'][1]}: {values}"]
    lines += ["", "| rater | kappa (95 % CI) | p | agreement |", "|---|---|---|---|"]
    for row in tables["agreement"]:
        name = row["rater"] + (f" (on {row['on']})" if "on" in row else "")
        lines.append(f"| {name} | {row['kappa']:.3f} ({row['kappa_ci95'][0]:.3f}-{row['kappa_ci95'][1]:.3f}) | "
                     f"{row['p']:.3g} | {100 * row['agreement']:.1f} % |")
    return "\n".join(lines[1:]) + "\n"
