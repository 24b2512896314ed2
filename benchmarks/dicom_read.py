"""Reading a case's patches from a DICOM WSI against the same slide as SVS, side by side in one run.

    python benchmarks/dicom_read.py [--reps 5] [--patches 100] [--workdir DIR]

Writes the two Aperio-style slides of realistic size (common.realistic_slides: 20,000 x 16,000 px at level 0, 20x
and 40x) once, and converts each to a folder of DICOM instances with wsidicomizer (a third-party writer, reading the
SVS through OpenSlide: JPEG frames of 512 px, the same pyramid levels). Then, per repetition, format and slide,
interleaved, with a new seed and a new slide handle every time: the runtime's own sampling of 100 patches (open,
annotations, level plan, white-filtered reads, resize to the model's 224 px) on 4 read threads, wall seconds. The
DICOM slide is given as its folder, so the time includes finding its VOLUME instance (pydicom headers) and the
series completeness check. Reports the median and min-max and DICOM / SVS ratios. Goals are stated, never asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, read_patches, realistic_slides, spread, table, write_results  # noqa: E402

from netorigin.runtime.sampling import PatchGeometry  # noqa: E402

READ_WORKERS = 4


def dicom_copy(svs: Path) -> Path:
    """The slide as a folder of DICOM instances beside it (named so its annotations are found the same way)."""
    folder = svs.with_suffix(".dicom")
    if not folder.exists():
        converter = Path(sys.executable).with_name("wsidicomizer")
        subprocess.run([str(converter), "-i", str(svs), "-o", str(folder), "--source", "openslide"], check=True,
                       capture_output=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--patches", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/netorigin-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    if args.reps < 5:
        parser.error("--reps must be at least 5 (median and min-max of >= 5 repetitions)")
    geometry = PatchGeometry()
    slides = {name: {"svs": path, "dicom": dicom_copy(path)} for name, path in realistic_slides(args.workdir).items()}
    times: dict[tuple[str, str], list[float]] = {}
    seed = 1000
    for _ in range(args.reps):
        for name, formats in slides.items():
            for kind, path in formats.items():
                seed += 1
                _, seconds = read_patches(path, args.patches, geometry, seed, READ_WORKERS)
                times.setdefault((name, kind), []).append(seconds)
    results = {"environment": environment(), "patches": args.patches, "read_workers": READ_WORKERS,
               "reps": args.reps, "slides": {}}
    rows = []
    for name in slides:
        svs, dicom = spread(times[(name, "svs")], 4), spread(times[(name, "dicom")], 4)
        ratio = spread([d / s for d, s in zip(times[(name, "dicom")], times[(name, "svs")])], 3)
        results["slides"][name] = {"svs_s": svs, "dicom_folder_s": dicom, "dicom_over_svs": ratio,
                                   "dicom_bytes": sum(p.stat().st_size for p in slides[name]["dicom"].iterdir()),
                                   "svs_bytes": slides[name]["svs"].stat().st_size}
        rows.append([name, f"{svs['median']} ({svs['min']}-{svs['max']})",
                     f"{dicom['median']} ({dicom['min']}-{dicom['max']})",
                     f"{ratio['median']} ({ratio['min']}-{ratio['max']})"])
    markdown = (f"# {args.patches} patches read: DICOM folder vs SVS\n\n{results['environment']['cpu']}, "
                f"{results['environment']['cores']} cores, {READ_WORKERS} read threads, {args.reps} interleaved "
                "repetitions, new seed and handle each\n\n"
                + table(["slide", "SVS s", "DICOM folder s", "DICOM / SVS"], rows) + "\n")
    write_results(args.out, "dicom-read", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
