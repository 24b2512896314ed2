"""Can OpenVINO keep chosen layers in f32 under a bf16 inference hint (bf16 that passes its check by keeping the
sensitive layers exact)? Every operation of the fp32 model is marked with each runtime-info key OpenVINO knows for
"keep the original precision"; if the marks were honoured, the fully marked model under the bf16 hint would give
f32's decisions.

    python benchmarks/bf16_keep_f32.py --model FP32.onnx [--patches 32]

Writes results/bf16-keep-f32.{json,md}: max |decision - f32's| for bf16 unmarked and bf16 with every op marked,
per key, on the same random uint8 patches (the question is arithmetic, not pathology).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, table, write_results  # noqa: E402

KEYS = ("disable_fp16_compression_0", "precise_0")


def main() -> None:
    import openvino as ov

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--patches", type=int, default=32)
    args = parser.parse_args()
    core = ov.Core()
    patches = np.random.default_rng(0).integers(0, 256, (args.patches, 224, 224, 3), dtype=np.uint8)

    def decisions(model, hint: str) -> np.ndarray:
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        return compiled.create_infer_request().infer({"patches": patches})[compiled.output("decision")]

    f32 = decisions(core.read_model(str(args.model)), "f32")
    rows = [["bf16, no marks", float(np.abs(decisions(core.read_model(str(args.model)), "bf16") - f32).max())]]
    for key in KEYS:
        marked = core.read_model(str(args.model))
        for op in marked.get_ordered_ops():
            op.get_rt_info()[key] = ""
        rows.append([f"bf16, every op marked {key}", float(np.abs(decisions(marked, "bf16") - f32).max())])
    honoured = any(error < rows[0][1] for _, error in rows[1:])
    env = environment()
    results = {"environment": env, "openvino": ov.__version__, "patches": args.patches,
               "max_abs_error_vs_f32": dict(rows), "marks_honoured": honoured}
    markdown = "\n".join([
        f"# OpenVINO {ov.__version__}: f32 layers under a bf16 hint ({env['cpu']}, {env['cores']} cores)", "",
        f"{args.model.name}, {args.patches} patches; max |decision - f32's|. Marks honoured: "
        f"{'yes' if honoured else 'no (bf16 with chosen layers in f32 cannot be built this way)'}.", "",
        table(["run", "max abs(decision - f32 decision)"], rows)])
    write_results(ROOT / "results", "bf16-keep-f32", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
