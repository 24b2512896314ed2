"""netorigin benchmarks: one command, figures side by side in one run, JSON + markdown.

    python benchmarks/run.py [--workdir DIR] [--out benchmarks/results] [--reps 5] [--workers 1 2] [--quick]

Throughput, reading, case and parallel timings are the median and min-max of `--reps` (>= 5) repetitions, engines
interleaved so they share the machine's state; throughput and cases after one warm-up, reads on a new handle each
time (cold by design); the export is timed once.
Sections: export (time, size, parity), SVM head (SVMClassifier vs float64
standard ops), patches/s per batch size (PyTorch eager + scikit-learn reference vs ORT fp32 / fp16 / INT8 and,
when installed, OpenVINO f32 / bf16; CUDA rows when a GPU is present) with the product's batch
(CPU_BATCH; 32 before 2026-12-07) as the
headline and every engine at its best batch as well, reading 100 patches on slides of realistic size (20x and
40x, 20,000 px wide; best level vs level 0; a new handle and seed per repetition), one case per stage on those
slides, cases/hour with N workers (a new seed per repetition), and verdict parity of every variant on the demo
cohort. Goals are stated, never asserted.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import case_fidelity, environment, read_patches, realistic_slides, spread, table, timed, write_results  # noqa: E402,E501

from netorigin.export.build import build_model_bytes  # noqa: E402
from netorigin.export.embedder import build_embedder, embed_uint8  # noqa: E402
from netorigin.export.embeddings import iter_cohort  # noqa: E402
from netorigin.export.head_file import load_head  # noqa: E402
from netorigin.export.train import TrainPlan, train  # noqa: E402
from netorigin.runtime.batch.slides import read_manifest, run_batch  # noqa: E402
from netorigin.runtime.engines.session import CPU_BATCH, open_session  # noqa: E402
from netorigin.runtime.model.contract import load_contract  # noqa: E402
from netorigin.runtime.slide.predictor import Predictor  # noqa: E402
from netorigin.runtime.slide.sampling import PatchGeometry, plan_reads  # noqa: E402
from netorigin.runtime.slide.slide import Slide  # noqa: E402

GOALS = {"ort_fp32_vs_reference": 3.5, "ort_int8_vs_reference": 9.0, "read_100_patches_s": 0.5,
         "case_fp32_s": 3.5, "case_int8_s": 1.5, "h100_fp16_patches_per_s": 20_000,
         "openvino_bf16_vs_ort_fp32": 1.9, "ort_int8_vs_ort_fp32": 2.5, "verdict_flips": 0,
         "max_abs_dS_over_band_width": 0.01}


def ensure_demo(workdir: Path) -> Path:
    if not (workdir / "demo-summary.json").exists():
        from netorigin.export.demo import FULL, run_demo

        run_demo(workdir, FULL, seed=0)
    return workdir


def build_variants(workdir: Path, quick: bool) -> tuple[dict, dict, dict]:
    """fp32 / fp16 / INT8 models trained as the product trains them on the demo cohort (each variant's bands from
    its own decisions), the time of one fp32 export, and train's fidelity check of each on its calibration
    patients."""
    embedder, info = build_embedder("random", seed=0)
    plan = TrainPlan(seed=0, name="bench", demo=True, precisions=("fp32", "fp16", "int8"),
                     int8_calibration_patches=64 if quick else 256)
    trained = train(workdir / "cohort" / "train" / "manifest.csv", workdir / "variants", embedder, info, plan,
                    echo=lambda _: None)
    head = load_head(trained.head_path)
    t = time.perf_counter()
    build_model_bytes(embedder, info, head, trained.bands["fp32"], demo=True)
    stats = {"export_fp32_s": time.perf_counter() - t,
             **{f"size_{p}_mb": path.stat().st_size / 1e6 for p, path in trained.models.items()}}
    fidelity = {p: m["fidelity_vs_fp32"] for p, m in trained.summary["models"].items()}
    return {"embedder": embedder, "pipeline": head["pipeline"], "paths": trained.models}, stats, fidelity


def test_patches(workdir: Path, n: int) -> np.ndarray:
    cases = iter_cohort(workdir / "cohort" / "test" / "manifest.csv", -(-n // 12), 5)
    return np.concatenate([case.pixels for case in cases])[:n]


def parity_export(models: dict, patches: np.ndarray) -> dict:
    """ONNX vs the reference pipeline on 100 real demo patches."""
    ref_emb = embed_uint8(models["embedder"], patches)
    ref_dec = models["pipeline"].decision_function(ref_emb.astype(np.float64))
    dec, emb = open_session(load_contract(models["paths"]["fp32"]), "cpu").run(patches, with_embeddings=True)
    return {"embedding_max_rel_error": float(np.abs(emb - ref_emb).max() / np.abs(ref_emb).max()),
            "decision_max_abs_error": float(np.abs(dec - ref_dec).max()),
            "sum_100_abs_error": float(abs(dec.astype(np.float64).sum() - ref_dec.sum())),
            "labels_identical": bool(np.array_equal(dec > 0, ref_dec > 0))}


def svm_heads(quick: bool, reps: int) -> dict:
    """skl2onnx SVMClassifier vs our float64 standard-op head, synthetic 2048-d fit (paper-text head)."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.svm import SVC

    from netorigin.export.heads import HeadArrays
    from netorigin.export.onnx_graph import head_nodes

    rng = np.random.default_rng(0)
    n = 600 if quick else 2000
    x = rng.gamma(1.5, 0.3, (n, 2048)).astype(np.float32)
    y = np.repeat([0, 1], n // 2)
    x[y == 1, :200] += 0.08
    svc = SVC(C=1.0, kernel="rbf", gamma="auto").fit(x, y)
    test = rng.gamma(1.5, 0.3, (100, 2048)).astype(np.float32)
    ref = svc.decision_function(test.astype(np.float64))
    classifier = convert_sklearn(svc, initial_types=[("x", FloatTensorType([None, 2048]))],
                                 options={id(svc): {"zipmap": False}}, target_opset={"": 18, "ai.onnx.ml": 3})
    s1 = ort.InferenceSession(classifier.SerializeToString(), providers=["CPUExecutionProvider"])
    col = s1.run(None, {"x": test})[1]
    errs = [np.abs(col[:, c] - ref).max() for c in range(2)]
    column = int(np.argmin(errs))  # picked by parity, never by name
    arrays = HeadArrays(kind="rbf", pca_mean=None, pca_components=None,
                        support_vectors=svc.support_vectors_.astype(np.float64), dual_coef=svc.dual_coef_[0],
                        gamma=float(svc._gamma), intercept=float(svc.intercept_[0]))
    nodes, inits = head_nodes(arrays, "x", "decision")
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2048])],
                              [helper.make_tensor_value_info("decision", TensorProto.DOUBLE, [None])], inits)
    ours = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    ours.ir_version = 9
    onnx.checker.check_model(ours)
    s2 = ort.InferenceSession(ours.SerializeToString(), providers=["CPUExecutionProvider"])
    dec = s2.run(None, {"x": test})[0]
    return {"support_vectors": int(len(svc.support_)),
            "svmclassifier_ms_per_100": spread([1000 * t for t in timed(lambda: s1.run(None, {"x": test}), reps)], 2),
            "svmclassifier_max_abs_error": float(errs[column]), "svmclassifier_column": column,
            "std_ops_f64_ms_per_100": spread([1000 * t for t in timed(lambda: s2.run(None, {"x": test}), reps)], 2),
            "std_ops_f64_max_abs_error": float(np.abs(dec - ref).max()),
            "std_ops_sum_abs_error": float(abs(dec.astype(np.float64).sum() - ref.sum()))}


PRODUCT_BATCH = CPU_BATCH  # the runtime's CPU batch: the headline


def cpu_engines(models: dict) -> dict:
    """Engine name -> run(uint8 batch) for each ONNX Runtime precision and, when installed, OpenVINO f32 / bf16 on
    the fp32 model, each opened as the runtime opens it."""
    engines = {}
    for precision in ("fp32", "int8", "fp16"):
        engines[f"ORT {precision}"] = open_session(load_contract(models["paths"][precision]), "cpu").run
    from netorigin.runtime.engines.openvino_session import bf16_available, open_openvino

    try:
        precisions = ("f32", "bf16") if bf16_available() else ("f32",)
    except ImportError:
        precisions = ()
    for precision in precisions:
        engines[f"OpenVINO {precision}"] = open_openvino(load_contract(models["paths"]["fp32"]), precision).run
    return engines


def throughput(models: dict, patches: np.ndarray, batches: list[int], reps: int) -> list[dict]:
    """Patches/s of embedder + classifier per batch size, engines interleaved per repetition; CUDA rows when a GPU
    is present."""
    pipeline = models["pipeline"]

    def reference(batch: np.ndarray) -> None:
        emb = embed_uint8(models["embedder"], batch, batch_size=len(batch))
        pipeline.decision_function(emb.astype(np.float64))

    engines = {"PyTorch eager + scikit-learn (reference)": reference, **cpu_engines(models)}
    rows = []
    for bs in batches:
        batch = patches[:bs]
        seconds: dict[str, list[float]] = {name: [] for name in engines}
        for run in engines.values():
            run(batch)  # warm-up: first runs allocate
        for _ in range(reps):
            for name, run in engines.items():
                t = time.perf_counter()
                run(batch)
                seconds[name].append(time.perf_counter() - t)
        rows += [{"engine": name, "device": "cpu", "batch": bs, "patches_per_s": spread([bs / t for t in times], 1)}
                 for name, times in seconds.items()]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        rows += cuda_throughput(models, patches, reps)
    return rows


def cuda_throughput(models: dict, patches: np.ndarray, reps: int) -> list[dict]:
    rows = []
    big = np.concatenate([patches] * (256 // len(patches) + 1))[:256]
    for precision in ("fp32", "fp16"):
        opts = {"use_tf32": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"}
        for nhwc in ("0", "1"):
            session = ort.InferenceSession(str(models["paths"][precision]),
                                           providers=[("CUDAExecutionProvider", dict(opts, prefer_nhwc=nhwc))])
            for bs in (64, 128, 256):
                times = timed(lambda s=session, b=big[:bs]: s.run(["decision"], {"patches": b}), reps)
                rows.append({"engine": f"ORT CUDA {precision} nhwc={nhwc}", "device": "cuda", "batch": bs,
                             "patches_per_s": spread([bs / t for t in times], 1)})
    trunk = copy.deepcopy(models["embedder"]).cuda().half().to(memory_format=torch.channels_last)
    for bs in (64, 128, 256):
        x = torch.from_numpy(big[:bs]).cuda()

        def run(x=x):
            with torch.inference_mode():
                trunk(x)
            torch.cuda.synchronize()

        rows.append({"engine": "PyTorch fp16 channels-last", "device": "cuda", "batch": bs,
                     "patches_per_s": spread([bs / t for t in timed(run, reps)], 1)})
    return rows


def reading(slides: dict[str, Path], reps: int) -> list[dict]:
    """100 patches read, white-filtered and resized at the best level vs level 0, on a new handle with a new seed
    per repetition."""
    geometry = PatchGeometry()
    configs = [("best level", None, 1), ("best level", None, 2), ("level 0", 0, 2)]
    seconds: dict = {(name, c): [] for name in slides for c in configs}
    for rep in range(reps):
        for name, path in slides.items():
            for config in configs:
                seconds[(name, config)].append(read_patches(path, 100, geometry, 1000 * rep + 11, config[2],
                                                            config[1])[1])
    plans = {}
    for name, path in slides.items():
        with Slide(path) as slide:
            plans |= {(name, level): plan_reads(slide, geometry, level) for _, level, _ in configs}
    return [{"slide": f"{name} ({slides[name].name})", "threads": workers, "seconds_100_patches": spread(times, 3),
             "level": f"{label} ({plans[name, level].level.index}, {plans[name, level].read_size} px)"}
            for (name, (label, level, workers)), times in seconds.items()]


def one_case(slides: dict[str, Path], models: dict, reps: int) -> list[dict]:
    """Open -> verdict on the realistic slides, per stage, a new seed per repetition (median of each stage)."""
    rows = []
    for precision in ("fp32", "int8"):
        base = Predictor(models["paths"][precision], device="cpu", engine="onnxruntime")
        for name, path in slides.items():
            annotations = [path.with_suffix(".geojson")]
            base.predict_case([path], annotations)  # warm-up
            timings = [base.for_run(1000 * rep + 13, None, base.rules, base.read_workers)
                       .predict_case([path], annotations).timings for rep in range(reps)]
            stages = {k: spread([t[k] for t in timings], 3) for k in timings[0]}
            rows.append({"precision": precision, "slide": name, "stages": stages})
    return rows


def parallel_cases(workdir: Path, models: dict, workers_list: list[int], quick: bool, reps: int) -> list[dict]:
    """Cases/hour of one batch of demo cases per worker count, a new seed per repetition."""
    cases = read_manifest(workdir / "cohort" / "test" / "manifest.csv")[: 4 if quick else 8]
    rows = []
    for precision in ("int8", "fp32"):
        base = Predictor(models["paths"][precision], device="cpu", engine="onnxruntime")
        for workers in workers_list:
            rates = []
            for rep in range(reps):
                predictor = base.for_run(1000 * rep + 17, None, base.rules, base.read_workers)
                with tempfile.TemporaryDirectory(prefix="netorigin-batch-") as out:
                    t = time.perf_counter()
                    run_batch(predictor, cases, Path(out), workers)
                    rates.append(3600 * len(cases) / (time.perf_counter() - t))
            rows.append({"precision": precision, "workers": workers, "cases": len(cases),
                         "cases_per_hour": spread(rates, 0)})
    return rows


def verdict_parity(workdir: Path, models: dict) -> list[dict]:
    """Every variant vs fp32 on every demo case, each under its own bands: flips and max |dS| / fp32 band width."""
    cases = []
    for split in ("train", "test"):
        cases += read_manifest(workdir / "cohort" / split / "manifest.csv")
    results = {}
    for precision in ("fp32", "fp16", "int8"):
        predictor = Predictor(models["paths"][precision], device="cpu", engine="onnxruntime")
        results[precision] = [predictor.predict_case(c.slides, case_id=c.case_id) for c in cases]
        if precision == "fp32":
            width = predictor.band.upper - predictor.band.lower
    rows = []
    for precision in ("fp16", "int8"):
        pairs = list(zip(results["fp32"], results[precision]))
        flips, max_ds = case_fidelity(results[precision], results["fp32"])
        rows.append({"precision": precision, "cases": len(pairs), "verdict_flips": flips,
                     "patch_sign_flips": int(sum(np.sum((a.decisions > 0) != (b.decisions > 0)) for a, b in pairs)),
                     "max_abs_dS": max_ds, "band_width": width, "max_abs_dS_over_band_width": max_ds / width})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("netorigin-bench"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--reps", type=int, default=5, help="Repetitions per timing (median and min-max; >= 5).")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="Smaller samples (a smoke run).")
    args = parser.parse_args()
    if args.reps < 5:
        parser.error("--reps must be at least 5 (a figure is the median and min-max of >= 5 repetitions)")
    t0 = time.perf_counter()
    workdir = ensure_demo(args.workdir)
    slides = realistic_slides(workdir)
    models, export_stats, fidelity = build_variants(workdir, args.quick)
    patches = test_patches(workdir, 64 if args.quick else 100)
    results = {"environment": environment(), "goals": GOALS, "reps": args.reps, "export": export_stats,
               "calibration_fidelity": fidelity}
    results["export"]["parity"] = parity_export(models, patches)
    print("export", json.dumps(results["export"]), flush=True)
    results["svm_head"] = svm_heads(args.quick, args.reps)
    print("svm head", json.dumps(results["svm_head"]), flush=True)
    batches = sorted({8, PRODUCT_BATCH, 32} | (set() if args.quick else {64}))
    results["throughput"] = throughput(models, patches, batches, args.reps)
    print("throughput done", flush=True)
    results["reading"] = reading(slides, args.reps)
    results["one_case"] = one_case(slides, models, args.reps)
    results["parallel"] = parallel_cases(workdir, models, args.workers, args.quick, args.reps)
    results["verdict_parity"] = verdict_parity(workdir, models)
    results["wall_time_s"] = round(time.perf_counter() - t0, 1)
    write_results(args.out, "latest", results, markdown(results))
    print(markdown(results))


def _range(s: dict) -> str:
    return f"{s['min']:.4g}–{s['max']:.4g}"


def throughput_tables(rows: list[dict]) -> list[str]:
    """The product's batch as the headline (ratios of medians vs the reference and ORT fp32 at that batch), then
    every engine at its best batch."""
    median = {(r["engine"], r["batch"]): r["patches_per_s"]["median"] for r in rows}
    reference = "PyTorch eager + scikit-learn (reference)"
    headline = [[r["engine"], r["device"], r["patches_per_s"]["median"], _range(r["patches_per_s"]),
                 r["patches_per_s"]["median"] / median[(reference, PRODUCT_BATCH)] if r["device"] == "cpu" else "",
                 r["patches_per_s"]["median"] / median[("ORT fp32", PRODUCT_BATCH)] if r["device"] == "cpu" else ""]
                for r in rows if r["batch"] == PRODUCT_BATCH or r["device"] == "cuda"]
    best = {}
    for r in rows:
        if r["engine"] not in best or r["patches_per_s"]["median"] > best[r["engine"]]["patches_per_s"]["median"]:
            best[r["engine"]] = r
    every = [[r["engine"], r["device"], r["batch"], r["patches_per_s"]["median"], _range(r["patches_per_s"])]
             for r in best.values()]
    return [f"\n## Embedder + classifier throughput at the product's batch ({PRODUCT_BATCH}; CUDA rows at every batch)"
            "\n", table(["engine", "device", "patches/s median", "min–max", "x reference", "x ORT fp32"], headline),
            "\n## Each engine at its best batch\n",
            table(["engine", "device", "best batch", "patches/s median", "min–max"], every)]


def markdown(r: dict) -> str:
    e = r["export"]
    svm = r["svm_head"]
    stages = ("open", "regions", "read_and_sample", "resize", "inference", "verdict", "total")
    parts = [
        f"# netorigin benchmarks\n\n{r['environment']['cpu']}, {r['environment']['cores']} cores, "
        f"onnxruntime {r['environment']['onnxruntime']}, {r['environment']['date']}; total {r['wall_time_s']} s. "
        f"Timings: median and min–max of {r['reps']} repetitions (after a warm-up; reads on a new handle each). "
        "Random-weight ResNet50 (speed is "
        "real, accuracy is not the point); demo cohort.\n",
        "## Export (one export)\n",
        table(["fp32 export s", "fp32 MB", "fp16 MB", "int8 MB", "emb. max rel err", "decision max abs err",
               "100-patch sum abs err", "labels identical"],
              [[e["export_fp32_s"], e["size_fp32_mb"], e["size_fp16_mb"], e["size_int8_mb"],
                e["parity"]["embedding_max_rel_error"], e["parity"]["decision_max_abs_error"],
                e["parity"]["sum_100_abs_error"], e["parity"]["labels_identical"]]]),
        "\n## SVM head (100 patches, synthetic 2048-d fit)\n",
        table(["support vectors", "SVMClassifier ms (median, min–max)", "SVMClassifier max abs err",
               "std ops f64 ms (median, min–max)", "std ops max abs err", "std ops sum abs err"],
              [[svm["support_vectors"], f"{svm['svmclassifier_ms_per_100']['median']} "
                f"({_range(svm['svmclassifier_ms_per_100'])})", svm["svmclassifier_max_abs_error"],
                f"{svm['std_ops_f64_ms_per_100']['median']} ({_range(svm['std_ops_f64_ms_per_100'])})",
                svm["std_ops_f64_max_abs_error"], svm["std_ops_sum_abs_error"]]]),
        *throughput_tables(r["throughput"]),
        "\n## Reading 100 patches (read + white filter + resize; new handle and seed per repetition)\n",
        table(["slide", "level", "threads", "seconds median", "min–max"],
              [[x["slide"], x["level"], x["threads"], x["seconds_100_patches"]["median"],
                _range(x["seconds_100_patches"])] for x in r["reading"]]),
        "\n## One case, open -> verdict, per stage (median seconds; read_and_sample overlaps inference)\n",
        table(["precision", "slide", *stages, "total min–max"],
              [[x["precision"], x["slide"], *(x["stages"][k]["median"] for k in stages), _range(x["stages"]["total"])]
               for x in r["one_case"]]),
        "\n## Many cases in parallel (demo cases)\n",
        table(["precision", "workers", "cases", "cases/hour median", "min–max"],
              [[x["precision"], x["workers"], x["cases"], x["cases_per_hour"]["median"], _range(x["cases_per_hour"])]
               for x in r["parallel"]]),
        "\n## Fidelity vs fp32 on the calibration patients (`train`'s check, each model under its own bands, every "
        "band)\n",
        table(["precision", "verdict flips", "edge patients skipped", "max |dS| / band width", "passed"],
              [[p, c["verdict_flips"], c["edge_patients_skipped"], c["max_abs_delta_s_over_band_width"], c["passed"]]
               for p, c in r["calibration_fidelity"].items()]),
        "\n## Verdict parity vs fp32 on the demo cohort (default band)\n",
        table(list(r["verdict_parity"][0]), [list(x.values()) for x in r["verdict_parity"]]),
        f"\nGoals (measured, not asserted): {json.dumps(r['goals'])}\n",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
