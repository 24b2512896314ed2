"""The deployable recipe in one call: cohort -> fit / calibration split -> head -> models whose bands are fixed on
held-out patients with each model's own decisions.

Pass 1 embeds the fit patients only. Every model (fp32 and each requested variant) is then built without bands
and opened with the runtime's own session; pass 2 samples each calibration patient once (exactly as the runtime
samples) and runs the patches through every model, so each model's bands come from the decisions that model
really produces. Embeddings input (no pixels) allows fp32 only, with bands from the head's decisions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from netorigin.calibration.bands import calibrate_bands
from netorigin.calibration.bands_io import PatientSum, calibration_record
from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.errors import InputDataError
from netorigin.calibration.labels import label_code
from netorigin.calibration.splits import (
    EMBEDDER_ROLE,
    PatientSplit,
    in_sample,
    read_split,
    refuse_in_sample,
    stratified_split,
)
from netorigin.runtime.atomic import write_text_atomic
from netorigin.runtime.batch.manifest import read_csv_rows
from netorigin.runtime.engines.openvino_session import (
    bf16_available,
    open_openvino,
    openvino_installed,
    openvino_measured_on,
    openvino_session,
)
from netorigin.runtime.engines.session import (
    BF16_CHECK,
    INT8_OPENVINO_CHECK,
    MAX_DELTA_OVER_WIDTH,
    ModelSession,
    open_session,
)
from netorigin.runtime.model.bands import Band, BandTable
from netorigin.runtime.model.contract import load_contract, with_metadata
from netorigin.runtime.model.record import FidelityRecord, MeasuredOn
from netorigin.runtime.names import check_name
from netorigin.runtime.progress import Bar
from netorigin.runtime.slide.regions import RegionRules
from netorigin.runtime.slide.sampling import PatchGeometry
from netorigin.runtime.slide.slide import MppRule
from netorigin.runtime.slide.verdict import case_score, verdict_from_sum

from .build import check_precision, with_head, write_model
from .embedder import EmbedderInfo, PatchEmbedder
from .embeddings import CasePatches, calibration_patches, check_slides, embed_manifest, is_patch_manifest, iter_cohort
from .engines import make_engine
from .head_file import save_head
from .heads import PatchSumScorer, as_scorer, fit_embeddings
from .int8_search import cpu_session, search_int8
from .metadata import build_metadata, model_record
from .mil import MilConfig, MilHead
from .nncf_int8 import NncfInt8, nncf_int8
from .onnx_graph import export_embedder, strip_build_traces
from .precision import PRECISIONS, Int8Recipe, calibration_batches, convert, kept_float_nodes, node_modules


@dataclass(frozen=True)
class TrainPlan:
    """Explicit parameters of one training run (scikit-learn style: nothing hidden)."""

    head: str = "reference"
    fit_fraction: float = 0.6
    split_file: Path | None = None
    seed: int = 0
    patches_per_case: int = 100
    precisions: tuple[str, ...] = ("fp32",)
    int8_calibration_patches: int = 256
    int8: Int8Recipe = field(default_factory=lambda: Int8Recipe(search=True))
    engine: str = "onnx"
    mil: MilConfig = field(default_factory=MilConfig)
    rules: RegionRules = field(default_factory=RegionRules)
    mpp: MppRule = field(default_factory=MppRule)
    name: str = "netorigin"
    demo: bool = False
    allow_in_sample: bool = False  # research only: calibration patients that trained the embedder (recorded)


@dataclass
class TrainResult:
    models: dict[str, Path]
    bands: dict[str, BandTable]
    split: PatientSplit
    sums: dict[str, list[PatientSum]]
    head_path: Path
    summary: dict


def _split(patients: list[tuple[str, int]], plan: TrainPlan) -> PatientSplit:
    if plan.split_file is not None:
        return read_split(plan.split_file, patients)
    return stratified_split(patients, plan.fit_fraction, plan.seed)


def _bands(sums: list[PatientSum]) -> BandTable:
    return calibrate_bands([s.s for s in sums if s.label < 2], [s.s for s in sums if s.label == 2])


def _case_sum(session: ModelSession, bag: bool, patient: str, label: int, pixels: np.ndarray,
              with_embeddings: bool = False) -> tuple[PatientSum, np.ndarray | None]:
    """A case's S (and embeddings) as the runtime computes it: runs of the engine's product batch in sampling order,
    or one run of the whole bag for a bag head (whose one vote is its sign)."""
    if bag:
        out = session.run_bag(pixels, with_embeddings)
        return PatientSum(patient, label, *case_score(out.decisions, out.score)), out.embeddings
    step = session.batch_size  # each engine at its product batch, as the runtime runs it
    runs = [session.run(pixels[i:i + step], with_embeddings) for i in range(0, len(pixels), step)]
    d = np.concatenate([r[0] for r in runs])
    embeddings = np.concatenate([r[1] for r in runs]) if with_embeddings else None
    return PatientSum(patient, label, *case_score(d)), embeddings


def _patient_table(manifest: Path) -> list[tuple[str, int]]:
    key = "patient" if is_patch_manifest(manifest) else "case"
    table: dict[str, int] = {}
    for row in read_csv_rows(manifest, (key, "label")):
        table.setdefault(row[key], label_code(row["label"], manifest))
    return list(table.items())


def train(cohort: Path, out: Path, embedder: PatchEmbedder, info: EmbedderInfo, plan: TrainPlan = TrainPlan(),
          echo: Callable[[str], None] = print, on_step: Bar = Bar()) -> TrainResult:
    """Run the recipe; writes models, head, split, calibration sums and a summary under `out`. `on_step` is
    called once per patient read (fit patients embedded, re-read for INT8 calibration; calibration patients
    scored) and per INT8 calibration batch, and extended by the INT8 steps once the split says how many."""
    unknown = set(plan.precisions) - set(PRECISIONS)
    if unknown or "fp32" not in plan.precisions:
        raise InputDataError(f"precisions must include fp32 and be among {', '.join(PRECISIONS)}")
    check_name(plan.name, "model name")
    for precision in plan.precisions:
        check_precision(plan.head, precision)
    from_embeddings = cohort.suffix == ".npz"
    if from_embeddings and plan.precisions != ("fp32",):
        raise InputDataError("fp16 / INT8 variants are calibrated on their own decisions and so need the "
                             "cohort's pixels: give a slide or patch manifest instead of embeddings", cohort)
    if not from_embeddings:
        check_slides(cohort, PatchGeometry(), plan.mpp, plan.rules)  # every slide, before any output
    out.mkdir(parents=True, exist_ok=True)
    stored = Embeddings.load(cohort) if from_embeddings else None
    if stored is not None:
        stored.check_made_by(info.weights_sha256, plan.patches_per_case, cohort)
    patients = stored.patient_table() if stored is not None else _patient_table(cohort)
    split = _split(patients, plan)
    leaked = in_sample(list(split.calibration), None, info.trained_on_patients_sha256)
    refuse_in_sample(leaked, plan.allow_in_sample, cohort, EMBEDDER_ROLE)
    echo(f"split: {len(split.fit)} fit patients, {len(split.calibration)} calibration patients ({split.source})")

    proto = export_embedder(embedder)
    if "int8" in plan.precisions:  # a misnamed stage is refused before any patch is embedded
        kept_float_nodes(proto, plan.int8.keep_float)
    if stored is None:
        fit_emb = embed_manifest(cohort, make_engine(embedder, plan.engine, proto=proto), info,
                                 patches_per_case=plan.patches_per_case, seed=plan.seed, rules=plan.rules,
                                 mpp=plan.mpp, patients=set(split.fit), progress=lambda _: on_step())
    else:
        fit_emb = stored.select(np.isin(stored.patients, split.fit))
    pipeline = fit_embeddings(fit_emb, plan.head, plan.seed, plan.mil)
    head_info = dict(fit_emb.fit_record(), head=plan.head, fit_seed=plan.seed,
                     patches_per_case=plan.patches_per_case, split=split.to_json())
    head_path = out / f"{plan.name}-head.skops"
    save_head(head_path, pipeline, kind=plan.head, info=head_info)
    split.write(out / f"{plan.name}-split.json")
    echo(f"fitted {plan.head} on {len(fit_emb.embeddings)} patches of {len(split.fit)} patients")

    fp32, arrays = with_head(proto, pipeline)
    int8_patches = int8_set = None
    if "int8" in plan.precisions:
        on_step.extend(len(split.fit))
        int8_patches, int8_set = calibration_patches(cohort, plan.int8_calibration_patches, plan.seed,
                                                     patients=set(split.fit), rules=plan.rules, mpp=plan.mpp,
                                                     on_patient=on_step)
        int8_set |= plan.int8.as_dict()
        on_step.extend(calibration_batches(len(int8_patches)))
    sampling = {"seed": plan.seed, "patches_per_case": plan.patches_per_case, "region_rules": plan.rules.as_dict(),
                "mpp": {"fallback": plan.mpp.fallback, "forced": plan.mpp.forced},
                "sampled_from_slides": stored is None and not is_patch_manifest(cohort)}  # else these did not apply
    training = {"split": split.source,
                "fit_patients": len(split.fit), "calibration_patients": len(split.calibration), "sampling": sampling}
    models: dict[str, Path] = {}
    sessions: dict[str, ModelSession] = {}
    graphs: dict[str, bytes] = {}
    record = model_record(info, plan.head, head_info["fit_patients"], demo=plan.demo)
    calibration_cases = None
    if stored is None and "int8" in plan.precisions and (plan.int8.search or plan.int8.nncf):  # checks candidates
        calibration_cases = list(iter_cohort(cohort, plan.patches_per_case, plan.seed, rules=plan.rules,
                                             mpp=plan.mpp, patients=set(split.calibration)))
    for precision in plan.precisions:
        if precision == "int8" and calibration_cases is not None and plan.int8.nncf:
            found = _nncf_int8(fp32, int8_patches, calibration_cases, plan.int8.nncf_iterations)
            strip_build_traces(found.model)
            graph = found.model.SerializeToString()
            int8_set |= {"nncf": found.as_dict()}
            echo(f"INT8 by NNCF's accuracy control: {len(found.int8_nodes)} nodes in INT8, check on OpenVINO "
                 f"{'passed' if found.check.passed else 'FAILED'} ({found.check.summary()})")
        elif precision == "int8" and calibration_cases is not None:
            search = search_int8(fp32, int8_patches, plan.int8, _validator(fp32, calibration_cases), on_step)
            strip_build_traces(search.model)
            graph = search.model.SerializeToString()
            int8_set |= search.recipe.as_dict() | {"search": search.as_dict(node_modules(fp32))}
            echo(f"INT8 accuracy control: {len(search.kept)} of {len(search.ranking)} quantised nodes kept in "
                 f"float32, check {'passed' if search.passed else 'FAILED'}")
        else:
            graph = convert(fp32, precision, int8_patches, plan.int8, on_batch=on_step).SerializeToString()
        meta = build_metadata(info, arrays, None, record, patches_per_case=plan.patches_per_case,
                              cohort=head_info["cohort"], training=training, precision=precision,
                              calibration_set=int8_set if precision == "int8" else None)
        path = out / (f"{plan.name}.onnx" if precision == "fp32" else f"{plan.name}-{precision}.onnx")
        write_model(path, with_metadata(graph, meta))
        models[precision], graphs[precision] = path, graph
        if stored is None:
            sessions[precision] = open_session(load_contract(path), "cpu")
    if stored is None and bf16_available():  # the check `--engine auto` needs before it may choose bf16
        sessions[BF16_CHECK] = open_openvino(load_contract(models["fp32"]), "bf16")
    if stored is None and "int8" in models and openvino_installed():  # OpenVINO runs the INT8 file differently
        sessions[INT8_OPENVINO_CHECK] = open_openvino(load_contract(models["int8"]), "f32")

    sums, head_sums = _calibration_sums(cohort, stored, split, as_scorer(pipeline), sessions, plan, on_step,
                                        calibration_cases)
    bf16_sums, int8_openvino_sums = sums.pop(BF16_CHECK, None), sums.pop(INT8_OPENVINO_CHECK, None)
    bands = {precision: _bands(patient_sums) for precision, patient_sums in sums.items()}
    engine_checks: dict[str, dict[str, FidelityRecord]] = {precision: {} for precision in models}
    if bf16_sums is not None:
        engine_checks["fp32"][BF16_CHECK] = _fidelity_check(bf16_sums, sums["fp32"], bands["fp32"],
                                                            sessions[BF16_CHECK].measured_on)
    if int8_openvino_sums is not None:  # the INT8 file on OpenVINO, under the INT8 file's own bands
        engine_checks["int8"][INT8_OPENVINO_CHECK] = _fidelity_check(
            int8_openvino_sums, sums["fp32"], bands["fp32"], sessions[INT8_OPENVINO_CHECK].measured_on, bands["int8"])
    fidelity = {p: _fidelity_check(rows, sums["fp32"], bands["fp32"], sessions[p].measured_on if sessions else None,
                                   bands[p]) for p, rows in sums.items()}
    decisions = "this model on ONNX Runtime (CPU)" if sessions else "the fitted head on stored embeddings"
    for precision, path in models.items():
        calibration = calibration_record(bands[precision], sums[precision], origin=f"train ({split.source})",
                                         decisions=decisions, in_sample_patients=len(leaked),
                                         checked_against_fit=True)
        final = replace(record, calibration=calibration, engine_checks=engine_checks[precision],
                        fidelity_vs_fp32=fidelity[precision] if precision != "fp32" else None)
        fresh = build_metadata(info, arrays, bands[precision], final, patches_per_case=plan.patches_per_case,
                               cohort=head_info["cohort"], training=training, precision=precision,
                               calibration_set=int8_set if precision == "int8" else None)
        write_model(path, with_metadata(graphs[precision], fresh))
    summary = _summary(sums, head_sums, bands, fidelity, split, models, isinstance(pipeline, MilHead)) | {
        "sampling": sampling,
        "engine_checks": {p: {k: asdict(v) for k, v in checks.items()} for p, checks in engine_checks.items()},
        "int8_calibration": int8_set,
        "embedder_training_patients_in_calibration": len(leaked)}
    write_text_atomic(out / f"{plan.name}-train.json", json.dumps(summary, indent=2))
    echo(f"calibrated {len(bands['fp32'].bands)} bands per model on {len(split.calibration)} held-out patients")
    return TrainResult(models, bands, split, sums, head_path, summary)


def _calibration_sums(cohort: Path, stored: Embeddings | None, split: PatientSplit,
                      scorer: PatchSumScorer | MilHead, sessions: dict[str, ModelSession], plan: TrainPlan,
                      on_patient: Callable[[], None], cases: list[CasePatches] | None = None
                      ) -> tuple[dict[str, list[PatientSum]], list[PatientSum]]:
    """Per-model sums of the calibration patients (`cases` when they were read already), and the fitted head's
    own sums (scikit-learn float64 or PyTorch) on the fp32 model's embeddings."""
    if stored is not None:
        reference, _ = scorer.score(stored.select(np.isin(stored.patients, split.calibration)))
        return {"fp32": reference}, reference
    bag = isinstance(scorer, MilHead)
    sums: dict[str, list[PatientSum]] = {p: [] for p in sessions}
    reference: list[PatientSum] = []
    if cases is None:
        cases = iter_cohort(cohort, plan.patches_per_case, plan.seed, rules=plan.rules, mpp=plan.mpp,
                            patients=set(split.calibration))
    for case in cases:
        embeddings = None
        for precision, session in sessions.items():
            row, case_embeddings = _case_sum(session, bag, case.patient, case.label, case.pixels,
                                             with_embeddings=precision == "fp32")
            embeddings = case_embeddings if precision == "fp32" else embeddings
            sums[precision].append(row)
        (row,), _ = scorer.score(Embeddings.of_case(case.patient, case.label, embeddings))
        reference.append(row)
        on_patient()
    return sums, reference


def _validator(fp32: onnx.ModelProto, cases: list[CasePatches]) -> Callable[[onnx.ModelProto], FidelityRecord]:
    """The INT8 search's check of a candidate: the fidelity check `train` records (its own bands from its own
    decisions, against fp32 on the calibration patients, every band), run on ONNX Runtime's CPU provider."""
    def sums(model: onnx.ModelProto) -> tuple[list[PatientSum], ModelSession]:
        session = cpu_session(model)
        return [_case_sum(session, False, c.patient, c.label, c.pixels)[0] for c in cases], session

    reference, _ = sums(fp32)
    reference_bands = _bands(reference)

    def validate(model: onnx.ModelProto) -> FidelityRecord:
        rows, session = sums(model)
        return _fidelity_check(rows, reference, reference_bands, session.measured_on, _bands(rows))

    return validate


def _nncf_int8(fp32: onnx.ModelProto, patches: np.ndarray, cases: list[CasePatches], iterations: int) -> NncfInt8:
    """NNCF's accuracy control with the fidelity check `train` records for the INT8 file on OpenVINO: against fp32
    on ONNX Runtime on the calibration patients, each model under its own bands."""
    session = cpu_session(fp32, "fp32 reference")
    reference = [_case_sum(session, False, c.patient, c.label, c.pixels)[0] for c in cases]
    reference_bands = _bands(reference)
    default = reference_bands.at(reference_bands.default_confidence)

    def score(model: onnx.ModelProto, indices) -> list[PatientSum]:
        candidate = openvino_session(model.SerializeToString(), "NNCF INT8 candidate", "f32")
        return [_case_sum(candidate, False, cases[i].patient, cases[i].label, cases[i].pixels)[0] for i in indices]

    def judge(rows: list[PatientSum]) -> FidelityRecord:
        return _fidelity_check(rows, reference, reference_bands, openvino_measured_on("f32"), _bands(rows))

    return nncf_int8(fp32, patches, reference, default.upper - default.lower, score, judge, iterations)


def _verdict(row: PatientSum, band: Band) -> str:
    return verdict_from_sum(row.s, row.votes_small_intestine, row.n_patches, (band.lower, band.upper))


def _fidelity_check(other_sums: list[PatientSum], fp32_sums: list[PatientSum], fp32_bands: BandTable,
                    measured_on: MeasuredOn | None, other_bands: BandTable | None = None) -> FidelityRecord | None:
    """Another engine on this model (`other_bands` None: the fp32 bands) or a precision variant (its own bands)
    against ONNX Runtime fp32 on the calibration patients, as measured on `measured_on` (None: no engine ran, so
    nothing was measured): verdict flips at every stored band, and max |dS| / width of the fp32 default band;
    passed = no flip and |dS| within 1 % of the band.

    A patient whose fp32 S lies within 2e-7 of a band's edge (the other-origin patients that define the edges sit
    1e-7 from them) flips under any change of arithmetic at that band, so it is not counted there
    (`edge_patients_skipped`); the |dS| limit covers everyone, so such a patient moves by at most 1 % of the band."""
    if measured_on is None:
        return None
    if other_bands is not None and len(other_bands.bands) != len(fp32_bands.bands):
        raise ValueError("the variant's bands and fp32's were calibrated on different patients")
    flips = skipped = 0
    for k, band in enumerate(fp32_bands.bands):
        other_band = band if other_bands is None else other_bands.bands[k]
        for a, b in zip(other_sums, fp32_sums):
            if band.upper > band.lower and min(abs(b.s - band.lower), abs(b.s - band.upper)) <= 2e-7:
                skipped += 1
                continue
            flips += _verdict(a, other_band) != _verdict(b, band)
    default = fp32_bands.at(fp32_bands.default_confidence)
    width = default.upper - default.lower
    delta = max(abs(a.s - b.s) for a, b in zip(other_sums, fp32_sums))
    ratio = delta / width if width > 0 else None  # no band width to compare with: never passes
    return FidelityRecord(verdict_flips=flips, max_abs_delta_s_over_band_width=ratio, patients=len(fp32_sums),
                          bands_checked=len(fp32_bands.bands), edge_patients_skipped=skipped,
                          threshold=MAX_DELTA_OVER_WIDTH,
                          passed=flips == 0 and ratio is not None and ratio <= MAX_DELTA_OVER_WIDTH,
                          measured_on=measured_on)


def _summary(sums: dict[str, list[PatientSum]], head_sums: list[PatientSum], bands: dict[str, BandTable],
             fidelity: dict[str, dict], split: PatientSplit, models: dict[str, Path], bag: bool = False) -> dict:
    """Per model: bands, and against fp32 on the calibration patients the fidelity check its metadata records."""
    fp32 = sums["fp32"]
    out = {"split": split.to_json(), "models": {}}
    for precision, rows in sums.items():
        out["models"][precision] = {
            "path": str(models[precision]), "default_confidence": bands[precision].default_confidence,
            "bands": bands[precision].to_json(),
            "fidelity_vs_fp32": None if fidelity[precision] is None else asdict(fidelity[precision]),
            "sums": [r.__dict__ for r in rows]}
    # The fp32 model's S against the fitted head's own (scikit-learn float64, or PyTorch for a MIL head).
    out["fp32_vs_head_reference"] = "PyTorch float32" if bag else "scikit-learn float64"
    out["fp32_vs_head_reference_max_abs_delta_s"] = max(abs(a.s - b.s) for a, b in zip(fp32, head_sums))
    return out
