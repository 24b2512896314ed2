"""netorigin benchmarks: one command, figures side by side in one run, JSON + markdown.

    python benchmarks/run.py [--workdir DIR] [--out benchmarks/results] [--workers 1 2] [--quick]

Sections: export (time, size, parity), SVM head (SVMClassifier vs float64 standard ops), patches/s per
batch size (PyTorch eager + scikit-learn reference vs ORT fp32 / fp16 / INT8; CUDA rows when a GPU is
present), reading 100 patches (best level vs level 0), one case per stage, cases/hour with N workers,
and verdict parity of every variant on the demo cohort. Goals are stated, never asserted.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, environment, table, write_results  # noqa: E402

from netorigin.export.build import load_head, variant_bytes  # noqa: E402
from netorigin.export.embedder import build_embedder, embed_uint8  # noqa: E402
from netorigin.export.embeddings import calibration_patches, iter_cohort  # noqa: E402
from netorigin.export.heads import head_arrays  # noqa: E402
from netorigin.export.onnx_graph import attach_head, export_embedder  # noqa: E402
from netorigin.export.synthetic import make_slide, patient_texture  # noqa: E402
from netorigin.runtime.batch import read_manifest, run_batch  # noqa: E402
from netorigin.runtime.contract import load_contract  # noqa: E402
from netorigin.runtime.predictor import Predictor  # noqa: E402
from netorigin.runtime.regions import load_annotations  # noqa: E402
from netorigin.runtime.sampling import PatchGeometry, plan_reads, sample_slide  # noqa: E402
from netorigin.runtime.slide import Slide  # noqa: E402

GOALS = {"ort_fp32_vs_reference": 3.5, "ort_int8_vs_reference": 9.0, "read_100_patches_s": 0.5,
         "case_fp32_s": 3.5, "case_int8_s": 1.5, "h100_fp16_patches_per_s": 20_000}


def ensure_demo(workdir: Path) -> Path:
    if not (workdir / "demo-summary.json").exists():
        from netorigin.export.demo import FULL, run_demo

        run_demo(workdir, FULL, seed=0)
    return workdir


def build_variants(workdir: Path, quick: bool) -> tuple[dict, dict]:
    """fp32 / fp16 / INT8 models from the demo's head, timing the export itself."""
    head = load_head(workdir / "model" / "head.joblib")
    embedder, info = build_embedder("random", seed=0)
    t = time.perf_counter()
    proto = attach_head(export_embedder(embedder), head_arrays(head["pipeline"]))
    bands = load_contract(workdir / "model" / "netorigin-demo.onnx")
    from netorigin.calibration.bands import BandTable

    table_ = BandTable(bands=tuple(bands.bands), **bands.provenance["calibration"])
    fp32 = variant_bytes(proto, info, head_arrays(head["pipeline"]), head["info"], table_, demo=True)
    export_s = time.perf_counter() - t
    patches, cal_set = calibration_patches(workdir / "cohort" / "fit" / "manifest.csv", 64 if quick else 256, 0)
    paths, stats = {}, {"export_fp32_s": export_s}
    tmp = Path(tempfile.mkdtemp(prefix="netorigin-bench-"))
    for precision in ("fp32", "fp16", "int8"):
        t = time.perf_counter()
        data = fp32 if precision == "fp32" else variant_bytes(
            proto, info, head_arrays(head["pipeline"]), head["info"], table_, demo=True, precision=precision,
            calibration_patches=patches, calibration_set=cal_set)
        stats[f"convert_{precision}_s"] = 0.0 if precision == "fp32" else time.perf_counter() - t
        paths[precision] = tmp / f"{precision}.onnx"
        paths[precision].write_bytes(data)
        stats[f"size_{precision}_mb"] = len(data) / 1e6
    return {"embedder": embedder, "pipeline": head["pipeline"], "paths": paths}, stats


def test_patches(workdir: Path, n: int) -> np.ndarray:
    cases = iter_cohort(workdir / "cohort" / "test" / "manifest.csv", -(-n // 12), 5)
    return np.concatenate([case.pixels for case in cases])[:n]


def parity_export(models: dict, patches: np.ndarray) -> dict:
    """ONNX vs the reference pipeline on 100 real demo patches."""
    ref_emb = embed_uint8(models["embedder"], patches)
    ref_dec = models["pipeline"].decision_function(ref_emb.astype(np.float64))
    from netorigin.runtime.session import open_session

    dec, emb = open_session(load_contract(models["paths"]["fp32"]), "cpu").run(patches, with_embeddings=True)
    return {"embedding_max_rel_error": float(np.abs(emb - ref_emb).max() / np.abs(ref_emb).max()),
            "decision_max_abs_error": float(np.abs(dec - ref_dec).max()),
            "sum_100_abs_error": float(abs(dec.astype(np.float64).sum() - ref_dec.sum())),
            "labels_identical": bool(np.array_equal(dec > 0, ref_dec > 0))}


def svm_heads(quick: bool) -> dict:
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
                              [helper.make_tensor_value_info("decision", TensorProto.FLOAT, [None])], inits)
    ours = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    ours.ir_version = 9
    onnx.checker.check_model(ours)
    s2 = ort.InferenceSession(ours.SerializeToString(), providers=["CPUExecutionProvider"])
    dec = s2.run(None, {"x": test})[0]
    return {"support_vectors": int(len(svc.support_)),
            "svmclassifier_ms_per_100": 1000 * best_of(lambda: s1.run(None, {"x": test})),
            "svmclassifier_max_abs_error": float(errs[column]), "svmclassifier_column": column,
            "std_ops_f64_ms_per_100": 1000 * best_of(lambda: s2.run(None, {"x": test})),
            "std_ops_f64_max_abs_error": float(np.abs(dec - ref).max()),
            "std_ops_sum_abs_error": float(abs(dec.astype(np.float64).sum() - ref.sum()))}


def throughput(models: dict, patches: np.ndarray, batches: list[int]) -> list[dict]:
    """Patches/s of embedder + classifier; CPU rows always, CUDA rows when a GPU is present."""
    rows = []
    torch.set_num_threads(torch.get_num_threads())
    pipeline = models["pipeline"]
    for bs in batches:
        batch = patches[:bs]

        def reference(batch=batch):
            emb = embed_uint8(models["embedder"], batch, batch_size=len(batch))
            pipeline.decision_function(emb.astype(np.float64))

        rows.append({"engine": "PyTorch eager + scikit-learn (reference)", "device": "cpu", "batch": bs,
                     "patches_per_s": bs / best_of(reference, 2)})
        for precision in ("fp32", "int8", "fp16"):
            session = ort.InferenceSession(str(models["paths"][precision]), providers=["CPUExecutionProvider"])
            secs = best_of(lambda s=session, b=batch: s.run(["decision"], {"patches": b}), 2)
            rows.append({"engine": f"ORT {precision}", "device": "cpu", "batch": bs, "patches_per_s": bs / secs})
    if "CUDAExecutionProvider" in ort.get_available_providers():
        rows += cuda_throughput(models, patches)
    return rows


def cuda_throughput(models: dict, patches: np.ndarray) -> list[dict]:
    rows = []
    big = np.concatenate([patches] * (256 // len(patches) + 1))[:256]
    for precision in ("fp32", "fp16"):
        opts = {"use_tf32": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"}
        for nhwc in ("0", "1"):
            session = ort.InferenceSession(str(models["paths"][precision]),
                                           providers=[("CUDAExecutionProvider", dict(opts, prefer_nhwc=nhwc))])
            for bs in (64, 128, 256):
                secs = best_of(lambda s=session, b=big[:bs]: s.run(["decision"], {"patches": b}), 5)
                rows.append({"engine": f"ORT CUDA {precision} nhwc={nhwc}", "device": "cuda", "batch": bs,
                             "patches_per_s": bs / secs})
    trunk = copy.deepcopy(models["embedder"]).cuda().half().to(memory_format=torch.channels_last)
    for bs in (64, 128, 256):
        x = torch.from_numpy(big[:bs]).cuda()

        def run(x=x):
            with torch.inference_mode():
                trunk(x)
            torch.cuda.synchronize()

        rows.append({"engine": "PyTorch fp16 channels-last", "device": "cuda", "batch": bs,
                     "patches_per_s": bs / best_of(run, 5)})
    return rows


def reading(workdir: Path) -> list[dict]:
    """100 patches read + resized at the best level vs level 0, 20x (demo slide) and 40x."""
    slide40 = workdir / "bench-40x.svs"
    if not slide40.exists():
        rng = np.random.default_rng(9)
        make_slide(slide40, "pancreas", patient_texture("pancreas", rng), rng, mpp=0.25, size_um=(3000, 2800))
    slide20 = sorted((workdir / "cohort" / "test" / "slides").glob("*.svs"))[0]
    rows = []
    geometry = PatchGeometry()
    for name, path in (("20x (0.5 um/px)", slide20), ("40x (0.25 um/px)", slide40)):
        with Slide(path) as slide:
            regions = load_annotations(path.with_suffix(".geojson"), slide)
            for label, level in (("best level", None), ("level 0", 0)):
                plan = plan_reads(slide, geometry, level)
                for workers in (1, 2, 4):
                    def read(plan=plan, workers=workers, slide=slide, regions=regions):
                        with ThreadPoolExecutor(workers) as pool:
                            list(sample_slide(slide, regions, 100, geometry, 0, 0, pool, plan))
                    rows.append({"slide": name, "level": f"{label} ({plan.level.index}, {plan.read_size} px)",
                                 "threads": workers, "seconds_100_patches": best_of(read, 2)})
    return rows


def one_case(workdir: Path, models: dict) -> list[dict]:
    case = read_manifest(workdir / "cohort" / "test" / "manifest.csv")[0]
    rows = []
    for precision in ("fp32", "int8"):
        predictor = Predictor(models["paths"][precision], device="cpu")
        predictor.predict_case(case.slides, case_id=case.case_id)  # warm-up
        for label, level in (("best level", None), ("level 0", 0)):
            timings = [predictor.predict_case(case.slides, case_id=case.case_id, level=level).timings
                       for _ in range(2)]
            best = min(timings, key=lambda t: t["total"])
            rows.append({"precision": precision, "level": label, **{k: round(v, 3) for k, v in best.items()}})
    return rows


def parallel_cases(workdir: Path, models: dict, workers_list: list[int], quick: bool) -> list[dict]:
    cases = read_manifest(workdir / "cohort" / "test" / "manifest.csv")[: 4 if quick else 8]
    rows = []
    for precision in ("int8", "fp32"):
        predictor = Predictor(models["paths"][precision], device="cpu")
        for workers in workers_list:
            out = Path(tempfile.mkdtemp(prefix="netorigin-batch-"))
            t = time.perf_counter()
            run_batch(predictor, cases, out, workers)
            secs = time.perf_counter() - t
            rows.append({"precision": precision, "workers": workers, "cases": len(cases),
                         "seconds": round(secs, 2), "cases_per_hour": round(3600 * len(cases) / secs)})
    return rows


def verdict_parity(workdir: Path, models: dict) -> list[dict]:
    """Every variant vs fp32 on the demo's calibration + test cases: flips and max |dS| / band width."""
    cases = []
    for split in ("calibrate", "test"):
        cases += read_manifest(workdir / "cohort" / split / "manifest.csv")
    results = {}
    for precision in ("fp32", "fp16", "int8"):
        predictor = Predictor(models["paths"][precision], device="cpu")
        results[precision] = [predictor.predict_case(c.slides, case_id=c.case_id) for c in cases]
        band = predictor.band
    width = band.upper - band.lower
    rows = []
    for precision in ("fp16", "int8"):
        pairs = list(zip(results["fp32"], results[precision]))
        ds = [abs(a.verdict.patient_sum - b.verdict.patient_sum) for a, b in pairs]
        rows.append({"precision": precision, "cases": len(pairs),
                     "verdict_flips": sum(a.verdict.verdict != b.verdict.verdict for a, b in pairs),
                     "patch_sign_flips": int(sum(np.sum((a.decisions > 0) != (b.decisions > 0)) for a, b in pairs)),
                     "max_abs_dS": max(ds), "band_width": width, "max_abs_dS_over_band_width": max(ds) / width})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("netorigin-bench"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="Smaller samples (a smoke run).")
    args = parser.parse_args()
    t0 = time.perf_counter()
    workdir = ensure_demo(args.workdir)
    models, export_stats = build_variants(workdir, args.quick)
    patches = test_patches(workdir, 64 if args.quick else 100)
    results = {"environment": environment(), "goals": GOALS, "export": export_stats}
    results["export"]["parity"] = parity_export(models, patches)
    print("export", json.dumps(results["export"]), flush=True)
    results["svm_head"] = svm_heads(args.quick)
    print("svm head", json.dumps(results["svm_head"]), flush=True)
    results["throughput"] = throughput(models, patches, [8, 32] if args.quick else [8, 32, 64])
    print("throughput done", flush=True)
    results["reading"] = reading(workdir)
    results["one_case"] = one_case(workdir, models)
    results["parallel"] = parallel_cases(workdir, models, args.workers, args.quick)
    results["verdict_parity"] = verdict_parity(workdir, models)
    results["wall_time_s"] = round(time.perf_counter() - t0, 1)
    write_results(args.out, "latest", results, markdown(results))
    print(markdown(results))


def markdown(r: dict) -> str:
    ref = {row["batch"]: row["patches_per_s"] for row in r["throughput"]
           if row["engine"].startswith("PyTorch eager")}
    tp_rows = [[row["engine"], row["device"], row["batch"], row["patches_per_s"],
                row["patches_per_s"] / ref[row["batch"]] if row["device"] == "cpu" else ""]
               for row in r["throughput"]]
    e = r["export"]
    parts = [
        f"# netorigin benchmarks\n\n{r['environment']['cpu']}, {r['environment']['cores']} cores, "
        f"onnxruntime {r['environment']['onnxruntime']}, {r['environment']['date']}; total {r['wall_time_s']} s. "
        "Random-weight ResNet50 (speed is real, accuracy is not the point); demo cohort.\n",
        "## Export\n",
        table(["fp32 export s", "fp32 MB", "fp16 MB", "int8 MB", "emb. max rel err", "decision max abs err",
               "100-patch sum abs err", "labels identical"],
              [[e["export_fp32_s"], e["size_fp32_mb"], e["size_fp16_mb"], e["size_int8_mb"],
                e["parity"]["embedding_max_rel_error"], e["parity"]["decision_max_abs_error"],
                e["parity"]["sum_100_abs_error"], e["parity"]["labels_identical"]]]),
        "\n## SVM head (100 patches, synthetic 2048-d fit)\n",
        table(list(r["svm_head"]), [list(r["svm_head"].values())]),
        "\n## Embedder + classifier throughput (patches/s; ratio vs the reference at the same batch)\n",
        table(["engine", "device", "batch", "patches/s", "x reference"], tp_rows),
        "\n## Reading 100 patches (read + white filter + resize)\n",
        table(["slide", "level", "threads", "seconds"],
              [[x["slide"], x["level"], x["threads"], x["seconds_100_patches"]] for x in r["reading"]]),
        "\n## One case, open -> verdict, per stage (seconds; read_and_sample overlaps inference)\n",
        table(list(r["one_case"][0]), [list(x.values()) for x in r["one_case"]]),
        "\n## Many cases in parallel\n",
        table(list(r["parallel"][0]), [list(x.values()) for x in r["parallel"]]),
        "\n## Verdict parity vs fp32 on the demo cohort\n",
        table(list(r["verdict_parity"][0]), [list(x.values()) for x in r["verdict_parity"]]),
        f"\nGoals (measured, not asserted): {json.dumps(r['goals'])}\n",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
