"""fp16 / INT8 variants: valid contract, types kept, head left in float64, decisions close to fp32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from netorigin.calibration.errors import InputDataError
from netorigin.export.build import build_model_bytes
from netorigin.export.onnx_graph import export_embedder
from netorigin.export.precision import Int8Recipe, conv_modules, to_int8
from netorigin.export.smoke import head_record, tiny_embedder
from netorigin.runtime.engines.session import open_session
from netorigin.runtime.model.contract import load_contract

from .helpers import tiny_fitted


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    embedder, info, patches, pipeline = tiny_fitted(96)
    head = head_record(pipeline, 20, info)
    root = tmp_path_factory.mktemp("variants")
    paths = {}
    for precision in ("fp32", "fp16", "int8"):
        model_bytes = build_model_bytes(embedder, info, head, None, precision=precision,
                                           calibration_patches=patches[::4],
                                           calibration_set={"patches": 24, "seed": 0})
        paths[precision] = root / f"{precision}.onnx"
        paths[precision].write_bytes(model_bytes)
    return paths, patches


def test_variants_keep_contract_types_and_float64_head(variants):
    paths, _ = variants
    for precision, path in paths.items():
        contract = load_contract(path)
        assert contract.precision == precision
        assert (contract.meta["netorigin.precision"]["calibration_set"] is not None) == (precision == "int8")
        model = onnx.load(str(path))
        assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
        assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE  # decision, float64
        head_inits = [i for i in model.graph.initializer if i.name.startswith("head_") and i.data_type != 7]
        assert head_inits and all(i.data_type == onnx.TensorProto.DOUBLE for i in head_inits)
    ops = {n.op_type for n in onnx.load(str(paths["int8"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_variant_decisions_track_fp32(variants):
    """Measured against the decision's range over both classes (what a verdict depends on): within one class the
    tiny random embedder's decisions differ by less than INT8's rounding moves them on a CPU without VNNI."""
    paths, patches = variants
    both_classes = np.concatenate([patches[:20], patches[48:68]])
    out = {p: open_session(load_contract(path), "cpu").run(both_classes)[0] for p, path in paths.items()}
    spread = np.ptp(out["fp32"])
    assert spread > 1.0
    assert np.abs(out["fp16"] - out["fp32"]).max() <= 0.02 * spread
    assert np.abs(out["int8"] - out["fp32"]).max() <= 0.1 * spread  # measured 0.064 on an AVX2-only CPU
    assert np.array_equal(out["int8"] > 0, out["fp32"] > 0)  # no patch changes side
    assert not np.array_equal(out["int8"], out["fp32"])  # it really is a different model


def test_the_cpu_session_runs_without_the_memory_pattern_and_its_decisions_do_not_depend_on_the_batch(variants):
    """The CPU settings that halve predict's peak memory (benchmarks/results/memory-predict.md) keep the bits: a
    patch's decision is the same in a batch of 16, of 32 and alone."""
    from netorigin.runtime.engines.session import CPU_BATCH

    paths, patches = variants
    cpu = open_session(load_contract(paths["fp32"]), "cpu")
    assert cpu.session.get_session_options().enable_mem_pattern is False and cpu.batch_size == CPU_BATCH == 16
    rows = patches[:33]
    by_product_batch = np.concatenate([cpu.run(rows[i:i + 16])[0] for i in range(0, 33, 16)])
    by_32 = np.concatenate([cpu.run(rows[:32])[0], cpu.run(rows[32:])[0]])
    alone = np.concatenate([cpu.run(rows[i:i + 1])[0] for i in range(33)])
    np.testing.assert_array_equal(by_product_batch, by_32)
    np.testing.assert_array_equal(by_product_batch, alone)


def test_the_cuda_path_runs_real_rows_through_io_binding(variants):
    """The CUDA path's logic exercised on the CPU provider (CI has no GPU): a short batch runs as it is (no padding
    to a fixed batch), through IO binding, with the plain run's values bit for bit; warm-up runs one full batch."""
    from netorigin.runtime.engines.session import CUDA, CUDA_BATCH, ModelSession

    paths, patches = variants
    cpu = open_session(load_contract(paths["fp32"]), "cpu")
    bound_rows, plain_rows = [], []
    original_bound, original_plain = cpu.session.run_with_iobinding, cpu.session.run

    def spy_bound(binding, *args):
        bound_rows.append(1)
        return original_bound(binding, *args)

    def spy_plain(outputs, feeds):
        plain_rows.append(feeds["patches"].shape[0])
        return original_plain(outputs, feeds)

    cpu.session.run_with_iobinding, cpu.session.run = spy_bound, spy_plain
    bound = ModelSession(session=cpu.session, provider=CUDA, device="cuda", io_binding=True)
    decisions, embeddings = bound.run(patches[:5], with_embeddings=True)
    assert bound_rows == [1] and plain_rows == [] and decisions.shape == (5,) and embeddings.shape == (5, 2048)
    reference, reference_embeddings = ModelSession(session=cpu.session, provider="CPUExecutionProvider",
                                                   device="cpu").run(patches[:5], with_embeddings=True)
    assert plain_rows == [5]  # the CPU path: a plain run of the real rows
    np.testing.assert_array_equal(decisions, reference)
    np.testing.assert_array_equal(embeddings, reference_embeddings)
    plain = ModelSession(session=cpu.session, provider=CUDA, device="cuda", io_binding=False)
    plain.warm_up(patches.shape[1])
    assert plain_rows[-1] == CUDA_BATCH


def test_int8_recipe_keeps_the_named_stages_in_float32(variants):
    embedder, _ = tiny_embedder(seed=1)
    fp32 = export_embedder(embedder)
    modules = conv_modules(fp32)
    assert sorted(modules.values()) == ["trunk.0", "trunk.2"]  # the exporter's scopes name each convolution
    _, patches = variants
    recipes = (Int8Recipe(float_stem=False), Int8Recipe(("trunk.2",), float_stem=False), Int8Recipe())
    quantised = {recipe: to_int8(fp32, patches[::8], recipe) for recipe in recipes}

    def quantised_convs(model: onnx.ModelProto) -> int:
        produced = {n.output[0]: n.op_type for n in model.graph.node}
        return sum(1 for n in model.graph.node
                   if n.op_type == "Conv" and produced.get(n.input[1]) == "DequantizeLinear")

    assert quantised_convs(quantised[recipes[0]]) == 2
    assert quantised_convs(quantised[recipes[1]]) == 1
    stem = next(n for n in fp32.graph.node if n.op_type == "Conv").name
    convs = {n.name: n for n in quantised[recipes[2]].graph.node if n.op_type == "Conv"}
    produced = {n.output[0]: n.op_type for n in quantised[recipes[2]].graph.node}
    assert produced.get(convs[stem].input[1]) != "DequantizeLinear"  # the default keeps the stem float
    assert quantised_convs(quantised[recipes[2]]) == 1
    with pytest.raises(InputDataError, match="names no convolution"):
        to_int8(fp32, patches[::8], Int8Recipe(("trunk.layer9",)))


def test_strided_int8_calibration_gives_the_ranges_of_one_pass(variants, tmp_path):
    """Ranges merged over strides of batches (bounded memory) equal the ranges of all patches at once."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from netorigin.export.precision import _PatchReader

    embedder, _ = tiny_embedder(seed=1)
    fp32 = export_embedder(embedder)
    _, patches = variants
    calibration = patches[:48]  # 6 batches of 8: strides of 3
    strided = to_int8(fp32, calibration, Int8Recipe(float_stem=False))
    onnx.save(fp32, str(tmp_path / "fp32.onnx"))
    quantize_static(str(tmp_path / "fp32.onnx"), str(tmp_path / "one.onnx"), _PatchReader(calibration),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    one_pass = onnx.load(str(tmp_path / "one.onnx"))

    def scales(model: onnx.ModelProto) -> dict:
        return {i.name: onnx.numpy_helper.to_array(i).tolist() for i in model.graph.initializer
                if i.name.endswith("_scale") or i.name.endswith("_zero_point")}

    assert scales(strided) and scales(strided) == scales(one_pass)


def test_int8_calibration_steps_once_per_batch_it_feeds(variants):
    """What `export --precision int8`'s bar counts: every calibration batch, the short last one included, once,
    across the strides."""
    from netorigin.export.precision import calibration_batches

    embedder, _ = tiny_embedder(seed=1)
    _, patches = variants
    steps: list[int] = []
    to_int8(export_embedder(embedder), patches[:44], Int8Recipe(float_stem=False), on_batch=lambda: steps.append(1))
    assert len(steps) == calibration_batches(44) == 6
