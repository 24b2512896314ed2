"""Stage what `benchmarks/gpu.sh` needs on a fresh GPU machine that reaches no package registry: the models, a
cohort, and the wheels the lean runtime lacks there, as one tar split into parts small enough to travel one per
device call.

    python benchmarks/gpu_stage.py -m MODEL.onnx [-m VARIANT.onnx] --manifest COHORT.csv [--no-wheels]
        [--out .gpu-stage] [--part-mib 52]

Writes OUT/p1/part … OUT/pN/part (and OUT/p1/SHA256 of the whole tar) and prints the device calls that carry them
one by one and then run the script. The first model is the fp32 reference. The wheels are for the device image
(CPython 3.12, x86-64): onnxruntime-gpu, OpenSlide and what the runtime needs that the image does not hold.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

WHEELS = ("onnxruntime-gpu==1.31.1", "openslide-python", "openslide-bin", "shapely", "jsonschema",
          "jsonschema-specifications", "referencing", "rpds-py", "attrs")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "manylinux_2_5_x86_64")


def download_wheels(into: Path) -> None:
    """The device image's CPython 3.12 wheels, without their dependencies (the image holds numpy, protobuf, …)."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(into), *WHEELS],
                   check=True)


def copy_cohort(manifest: Path, into: Path) -> None:
    """The manifest's slides and annotations, at the same paths relative to the copied manifest."""
    into.mkdir(parents=True)
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for column in ("slide", "annotations"):
            if row.get(column):
                target = into / row[column]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(manifest.parent / row[column], target)
    shutil.copy2(manifest, into / "manifest.csv")


def build_payload(models: list[Path], manifest: Path, root: Path, wheels: bool) -> None:
    (root / "models").mkdir(parents=True)
    for index, model in enumerate(models):
        shutil.copy2(model, root / "models" / f"{index}-{model.name}")  # the order says which is the reference
    copy_cohort(manifest, root / "cohort")
    (root / "wheels").mkdir()
    if wheels:
        download_wheels(root / "wheels")


def split(tar: Path, out: Path, part_bytes: int) -> int:
    """tar → out/p1/part … out/pN/part, and the tar's SHA-256 in out/p1/SHA256; returns N."""
    if out.exists():
        shutil.rmtree(out)
    digest = hashlib.sha256()
    count = 0
    with tar.open("rb") as handle:
        while chunk := handle.read(part_bytes):
            count += 1
            (out / f"p{count}").mkdir(parents=True)
            (out / f"p{count}" / "part").write_bytes(chunk)
            digest.update(chunk)
    (out / "p1" / "SHA256").write_text(digest.hexdigest() + "\n")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", type=Path, action="append", required=True,
                        help="model file (repeatable; the first is the fp32 reference)")
    parser.add_argument("--manifest", type=Path, required=True, help="slide manifest of the parity cohort")
    parser.add_argument("--out", type=Path, default=Path(".gpu-stage"))
    parser.add_argument("--part-mib", type=int, default=52, help="part size (a device call carries 64 MiB)")
    parser.add_argument("--no-wheels", action="store_true", help="no wheels (the CPU dry run)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "payload"
        build_payload(args.model, args.manifest, root, wheels=not args.no_wheels)
        tar = Path(tmp) / "payload.tar"
        with tarfile.open(tar, "w") as archive:
            archive.add(root, arcname="payload")
        parts = split(tar, args.out, args.part_mib << 20)
    print(f"staged {parts} parts in {args.out}; on the device, one call per part (carry [\"{args.out}/pK\"]):")
    print(f"  mkdir -p /tmp/gpu-stage && cp -r {args.out}/pK /tmp/gpu-stage/")
    print("then, with no carry: bash benchmarks/gpu.sh /tmp/gpu-stage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
