"""Reading a case's patches from a DICOM WSI — a local folder of instances, and over DICOMweb from a local Orthanc
— against the same slide as SVS, side by side in one run; and a case end to end from DICOMweb with --store against
the same case from the local SVS.

    python benchmarks/dicom_read.py [--model MODEL.onnx] [--reps 5] [--patches 100] [--workdir DIR]

Writes the two Aperio-style slides of realistic size (common.realistic_slides: 20,000 x 16,000 px at level 0, 20x
and 40x) once, converts each to a folder of DICOM instances with wsidicomizer (a third-party writer, reading the SVS
through OpenSlide: JPEG frames of 512 px, the same pyramid levels), starts Orthanc with its DICOMweb plugin on
127.0.0.1 (as the tests do) and uploads the folders. Then, per repetition, slide and source, interleaved, with a new
seed and a new slide handle every time: the runtime's own sampling of 100 patches (open, annotations, level plan,
white-filtered reads, resize to the model's 224 px) on 4 read threads, wall seconds; and the open alone. With
--model, also a case open -> verdict -> outputs written (JSON, page; for DICOMweb the SR and annotations stored back
with STOW-RS) on ONNX Runtime CPU. Reports the median and min-max and ratios. Goals are stated, never asserted:
DICOMweb <= 2x the local DICOM read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
from common import environment, read_patches, realistic_slides, spread, table, write_results  # noqa: E402

from netorigin.runtime.slide.sampling import PatchGeometry  # noqa: E402
from netorigin.runtime.slide.slide import Slide  # noqa: E402
from tests.dicom_slides import dicomize  # noqa: E402
from tests.pacs import start_orthanc, upload  # noqa: E402

READ_WORKERS = 4
SOURCES = ("svs", "dicom folder", "dicomweb")


def dicom_copy(svs: Path) -> Path:
    """The slide as a folder of DICOM instances beside it, written once as the tests write theirs."""
    folder = svs.with_suffix(".dicom")
    return folder if folder.exists() else dicomize(svs, folder)


def series_url(root: str, folder: Path) -> str:
    import pydicom

    header = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    return f"{root}/studies/{header.StudyInstanceUID}/series/{header.SeriesInstanceUID}"


def open_seconds(source: Path | str) -> float:
    start = time.perf_counter()
    with Slide(source):
        pass
    return time.perf_counter() - start


def case_seconds(predictor, source: Path | str, annotations: Path, out: Path, store: bool) -> float:
    from netorigin.runtime.reports.report import CaseExtras, write_case_outputs

    start = time.perf_counter()
    result = predictor.predict_case([source], [annotations])
    write_case_outputs(result, out, CaseExtras(store=store))
    return time.perf_counter() - start


def ratio(numerators: list[float], denominators: list[float]) -> dict:
    """Repetition by repetition (measured side by side), then median and min-max."""
    return spread([a / b for a, b in zip(numerators, denominators)], 3)


def cell(values: dict) -> str:
    return f"{values['median']} ({values['min']}-{values['max']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--patches", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/netorigin-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    if args.reps < 5:
        parser.error("--reps must be at least 5 (median and min-max of >= 5 repetitions)")
    geometry = PatchGeometry()
    svs = realistic_slides(args.workdir)
    reads: dict[tuple[str, str], list[float]] = {}
    opens: dict[tuple[str, str], list[float]] = {}
    cases: dict[tuple[str, str], list[float]] = {}
    predictor = None
    if args.model is not None:
        from netorigin.runtime.slide.predictor import Predictor

        predictor = Predictor(args.model, device="cpu", engine="onnxruntime")
    with tempfile.TemporaryDirectory() as scratch, start_orthanc(Path(scratch)) as pacs:
        sources = {}
        for name, path in svs.items():
            folder = dicom_copy(path)
            upload(pacs["rest"], folder)
            sources[name] = {"svs": path, "dicom folder": folder, "dicomweb": series_url(pacs["dicomweb"], folder)}
        seed = 1000
        for rep in range(args.reps):
            for name, by_kind in sources.items():
                annotations = svs[name].with_suffix(".geojson")
                for kind in SOURCES:
                    seed += 1
                    opens.setdefault((name, kind), []).append(open_seconds(by_kind[kind]))
                    _, seconds = read_patches(by_kind[kind], args.patches, geometry, seed, READ_WORKERS,
                                              annotations=annotations)
                    reads.setdefault((name, kind), []).append(seconds)
                if predictor is not None:
                    for kind, store in (("svs", False), ("dicomweb", True)):
                        run = predictor.for_run(seed, None, predictor.rules, READ_WORKERS)
                        out = Path(scratch) / f"cases-{rep}-{name}-{kind.replace(' ', '-')}"
                        cases.setdefault((name, kind), []).append(
                            case_seconds(run, by_kind[kind], annotations, out, store))
    results = {"environment": environment(), "patches": args.patches, "read_workers": READ_WORKERS,
               "reps": args.reps, "slides": {}}
    rows, case_rows = [], []
    for name in svs:
        entry = {kind: {"read_s": spread(reads[(name, kind)], 4), "open_s": spread(opens[(name, kind)], 4)}
                 for kind in SOURCES}
        for kind in ("dicom folder", "dicomweb"):
            entry[kind]["read_over_svs"] = ratio(reads[(name, kind)], reads[(name, "svs")])
        entry["dicomweb"]["read_over_dicom_folder"] = ratio(reads[(name, "dicomweb")], reads[(name, "dicom folder")])
        entry["dicom_folder_bytes"] = sum(p.stat().st_size for p in svs[name].with_suffix(".dicom").iterdir())
        entry["svs_bytes"] = svs[name].stat().st_size
        rows.append([name, *(cell(entry[k]["read_s"]) for k in SOURCES),
                     cell(entry["dicomweb"]["read_over_dicom_folder"]), *(cell(entry[k]["open_s"]) for k in SOURCES)])
        if cases:
            entry["case_s"] = {"svs": spread(cases[(name, "svs")], 3),
                               "dicomweb_store": spread(cases[(name, "dicomweb")], 3),
                               "dicomweb_store_over_svs": ratio(cases[(name, "dicomweb")], cases[(name, "svs")])}
            case_rows.append([name, cell(entry["case_s"]["svs"]), cell(entry["case_s"]["dicomweb_store"]),
                              cell(entry["case_s"]["dicomweb_store_over_svs"])])
        results["slides"][name] = entry
    markdown = (f"# {args.patches} patches read: SVS vs DICOM folder vs DICOMweb (local Orthanc)\n\n"
                f"{results['environment']['cpu']}, {results['environment']['cores']} cores, {READ_WORKERS} read "
                f"threads, {args.reps} interleaved repetitions, new seed and handle each; seconds, median (min-max)\n\n"
                + table(["slide", "read SVS", "read DICOM folder", "read DICOMweb", "DICOMweb / folder", "open SVS",
                         "open folder", "open DICOMweb"], rows) + "\n")
    if case_rows:
        markdown += (f"\n## One case open -> verdict -> outputs ({args.model.name}, ONNX Runtime CPU)\n\n"
                     + table(["slide", "local SVS", "DICOMweb + --store", "ratio"], case_rows) + "\n")
    write_results(args.out, "dicom-read", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
