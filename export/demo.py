"""The demo: synthetic cohort -> `train` (split, fit, bands on held-out patients, export) -> lean-runtime
predictions.

Everything is seeded and made on the spot; the model is marked DEMO (random-weight ResNet50).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from netorigin.calibration.errors import InputDataError
from netorigin.calibration.labels import LABEL_NAMES
from netorigin.runtime.atomic import write_text_atomic
from netorigin.runtime.batch.manifest import read_csv_rows
from netorigin.runtime.batch.slides import read_manifest, run_batch
from netorigin.runtime.model.contract import DEMO_WARNING
from netorigin.runtime.progress import progress
from netorigin.runtime.reports.report import CaseExtras
from netorigin.runtime.slide.predictor import Predictor

from .embedder import build_embedder
from .synthetic import make_cohort
from .train import TrainPlan, train


@dataclass(frozen=True)
class DemoPlan:
    """Patients per class for training (split 60 / 40 by `train`) and for the held-out test."""

    train: dict
    test: dict
    patches_per_case: int = 100
    size_um: tuple[int, int] = (2000, 1800)


FULL = DemoPlan(train={"pancreas": 10, "small_intestine": 10, "other": 6},
                test={"pancreas": 4, "small_intestine": 4, "other": 4})
SMALL = DemoPlan(train={"pancreas": 5, "small_intestine": 5, "other": 3},
                 test={"pancreas": 1, "small_intestine": 1, "other": 2}, patches_per_case=16, size_um=(1800, 1600))


def _log(message: str, echo) -> None:
    echo(f"[demo] {message}")


def run_demo(out: Path, plan: DemoPlan = FULL, seed: int = 0, echo=print, quiet: bool = True) -> dict:
    """Run the whole chain; returns the summary that is also written to out/demo-summary.json. Unless `quiet`, a
    progress bar counts the patients `train` reads, then the cases predicted (on a terminal only)."""
    start = time.perf_counter()
    timings = {}
    manifests = {split: make_cohort(out / "cohort" / split, getattr(plan, split), seed=seed * 1000 + offset,
                                    mpps=(0.5,), size_um=plan.size_um)
                 for offset, split in enumerate(("train", "test"))}
    timings["cohort"] = time.perf_counter() - start
    _log(f"synthetic cohort written ({timings['cohort']:.1f} s)", echo)

    t = time.perf_counter()
    embedder, info = build_embedder("random", seed=seed)
    with progress(sum(plan.train.values()), "patients", "patients", quiet) as step:
        trained = train(manifests["train"], out / "model", embedder, info,
                        TrainPlan(seed=seed, patches_per_case=plan.patches_per_case, name="netorigin-demo", demo=True),
                        echo=lambda line: _log(line, echo), on_step=step)
    model_path = trained.models["fp32"]
    bands = trained.bands["fp32"]
    timings["train"] = time.perf_counter() - t
    _log(f"trained a seeded random-weight ResNet50 + PCA + SVM and exported {model_path} "
         f"({model_path.stat().st_size / 1e6:.0f} MB, {timings['train']:.1f} s)", echo)

    t = time.perf_counter()
    predictor = Predictor(model_path, device="cpu", seed=seed)
    labels = {row["case"]: row["label"] for row in read_csv_rows(manifests["test"], ("case", "label"))}
    rows = []
    reports = out / "reports"  # a batch: case pages, index.html, QuPath detections, thumbnails
    cases = read_manifest(manifests["test"])
    with progress(len(cases), "cases", "cases", quiet) as step:
        outcomes = run_batch(predictor, cases, reports, extras=CaseExtras(geojson=True, thumbnail=True), redo=True,
                             on_done=lambda _: step())
    for outcome in outcomes:
        if outcome.status != "ok":
            raise InputDataError(f"demo case {outcome.case_id} gave no verdict ({outcome.reason})")
        report = json.loads((reports / f"{outcome.case_id}.json").read_text())
        rows.append({"case": outcome.case_id, "truth": labels[outcome.case_id], "verdict": report["verdict"],
                     "patient_sum": report["patient_sum"], "votes_small_intestine": report["votes"]["small_intestine"],
                     "n_patches": report["votes"]["n_patches"], "band": [report["band"]["lower"],
                                                                         report["band"]["upper"]],
                     "seconds": report["timings_s"]["total"]})
    timings["predict"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - start

    labelled = [r for r in rows if r["truth"] != "other"]
    summary = {
        "warning": DEMO_WARNING,
        "model": str(model_path), "model_identity": predictor.contract.identity, "seed": seed,
        "confidence": bands.default_confidence, "patches_per_case": plan.patches_per_case,
        "split": trained.split.to_json(),
        "test_cases": rows,
        "patient_accuracy_labelled": sum(r["verdict"] == r["truth"] for r in labelled) / max(1, len(labelled)),
        "labelled_misclassified": sum(r["verdict"] not in (r["truth"], "uncertain") for r in labelled),
        "other_uncertain_fraction": (sum(r["verdict"] == "uncertain" for r in rows if r["truth"] == "other")
                                     / max(1, sum(r["truth"] == "other" for r in rows))),
        "calibration_sums": [s.__dict__ for s in trained.sums["fp32"]],
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "disk_bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
    }
    write_text_atomic(out / "demo-summary.json", json.dumps(summary, indent=2))
    _plot_sums(summary, bands, out / "demo-sums.png")
    return summary


def _plot_sums(summary: dict, bands, path: Path) -> None:
    """Per-case S of calibration and test patients against the default band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"pancreas": "tab:blue", "small_intestine": "tab:red", "other": "tab:gray"}
    band = bands.at(summary["confidence"])
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.axvspan(band.lower, band.upper, color="gold", alpha=0.35, label=f"uncertain band, c = {band.c:g}")
    rows = ([(s["s"], LABEL_NAMES[s["label"]]) for s in summary["calibration_sums"]],
            [(r["patient_sum"], r["truth"]) for r in summary["test_cases"]])
    for y, points in enumerate(rows):
        for s, truth in points:
            ax.scatter(s, y, color=colours[truth], s=40, edgecolor="k", zorder=3)
    for truth, colour in colours.items():
        ax.scatter([], [], color=colour, label=truth, edgecolor="k")
    ax.set_yticks([0, 1], ["calibration", "held-out test"])
    ax.set_xlabel("patient sum S of patch decision values")
    ax.set_title(f"netorigin demo ({DEMO_WARNING})")
    ax.set_ylim(-0.6, 1.6)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
