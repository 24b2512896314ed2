"""`netorigin predict` / `batch` / `inspect` on slides the tests write themselves."""

from __future__ import annotations

import json
import subprocess
import sys

from netorigin.runtime.model.contract import load_contract

from .helpers import run_cli


def _predict(monkeypatch, capsys, model, slide, *extra):
    return run_cli(monkeypatch, capsys, "predict", slide.slide, "-a", slide.annotations, "-m", model,
                   "--device", "cpu", *extra)


def test_predict_prints_verdict_and_writes_reports(monkeypatch, capsys, tiny_model, slides, tmp_path):
    code, out, err = _predict(monkeypatch, capsys, tiny_model, slides["svs20x"], "--out", tmp_path, "--geojson",
                              "--thumbnail")
    assert code == 0, err
    assert "DEMO MODEL, NOT FOR DIAGNOSIS" in out and "case svs20x:" in out
    report = json.loads((tmp_path / "svs20x.json").read_text())
    # The verdict is the one the README's rule gives, recomputed here from the per-patch decisions and the band
    # stored in the model: uncertain iff L < S < R, else small intestine iff more than half the patches vote for
    # it (decision > 0), else pancreas.
    decisions = [p["decision"] for p in report["patches"]]
    band = load_contract(tiny_model).band(None)
    assert report["band"] == {"c": band.c, "pi_inside": band.pi_inside, "lower": band.lower, "upper": band.upper}
    s, votes = report["patient_sum"], sum(d > 0 for d in decisions)
    majority = "small_intestine" if 2 * votes > len(decisions) else "pancreas"
    inside = band.lower < s < band.upper
    assert report["votes"] == {"small_intestine": votes, "pancreas": len(decisions) - votes, "n_patches": 20}
    assert (report["majority_vote"], report["in_band"]) == (majority, inside)
    assert report["verdict"] == ("uncertain" if inside else majority)
    text = {"pancreas": "PANCREAS", "small_intestine": "SMALL INTESTINE", "uncertain": "UNCERTAIN"}
    assert f"case svs20x: {text[report['verdict']]}\n" in out
    assert report["provider"] == "CPUExecutionProvider"
    assert report["seed"] == 0 and len(report["model"]["graph_sha256"]) == 64
    assert report["slides"][0]["fingerprint"]["quickhash"]
    assert len(report["patches"]) == report["votes"]["n_patches"] == 20
    s = 0.0
    for p in report["patches"]:
        s += p["decision"]
    assert s == report["patient_sum"]
    assert set(report["timings_s"]) >= {"open", "regions", "read_and_sample", "inference", "verdict"}
    detections = json.loads((tmp_path / "svs20x.slide0.patches.geojson").read_text())
    assert len(detections["features"]) == 20
    assert "decision" in detections["features"][0]["properties"]["measurements"]
    assert (tmp_path / "svs20x.slide0.thumbnail.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_case_twice_gives_identical_reports(monkeypatch, capsys, tiny_model, slides, tmp_path):
    reports = []
    for run in ("a", "b"):
        code, out, _ = _predict(monkeypatch, capsys, tiny_model, slides["svs40x"], "--json", "--out", tmp_path / run)
        assert code == 0
        report = json.loads(out)
        report.pop("timings_s"), report.pop("created")
        reports.append(report)
    assert reports[0] == reports[1]


def test_confidence_levels_and_json_output(monkeypatch, capsys, tiny_model, slides):
    code, out, _ = _predict(monkeypatch, capsys, tiny_model, slides["svs20x"], "--json", "--confidence", "1/8")
    assert code == 0 and json.loads(out)["confidence"] == 0.125


def test_predict_never_imports_the_training_stack(tiny_model, slides):
    s = slides["svs20x"]
    script = (
        "import sys\n"
        "from netorigin.runtime.cli import main\n"
        f"sys.argv = ['netorigin', 'predict', {str(s.slide)!r}, '-a', {str(s.annotations)!r}, '-m', "
        f"{str(tiny_model)!r}, '--device', 'cpu']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'sklearn', "
        "'matplotlib', 'skl2onnx', 'onnx', 'scipy'})\n"
        "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    out = subprocess.run([sys.executable, "-c", "import sys, netorigin.runtime; print(sorted({m.split('.')[0] "
                          "for m in sys.modules} & {'torch', 'sklearn', 'matplotlib', 'onnx'}))"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_inspect_shows_contract(monkeypatch, capsys, tiny_model):
    code, out, _ = run_cli(monkeypatch, capsys, "inspect", tiny_model)
    contract = load_contract(tiny_model)
    assert code == 0
    assert f"graph sha256 {contract.sha256}" in out and f"verdict sha256 {contract.verdict_sha256}" in out
    assert "DEMO MODEL" in out and "c = 0.875" in out
    code, out, _ = run_cli(monkeypatch, capsys, "inspect", tiny_model, "--json")
    meta = json.loads(out)
    assert meta["netorigin.classes"] == {"0": "pancreas", "1": "small_intestine"}


def _manifest(tmp_path, rows):
    path = tmp_path / "manifest.csv"
    path.write_text("case,slide,annotations,specimen\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_batch_is_resumable_and_isolates_failures(monkeypatch, capsys, tiny_model, slides, tmp_path):
    a, b = slides["svs20x"], slides["tiff20x"]
    manifest = _manifest(tmp_path, [("c1", a.slide, a.annotations, "A"), ("c2", b.slide, b.annotations, "A"),
                                    ("c2", a.slide, a.annotations, "B"),
                                    ("bad", tmp_path / "missing.svs", "", "A")])
    out = tmp_path / "out"
    code, stdout, err = run_cli(monkeypatch, capsys, "batch", manifest, "-m", tiny_model, "--device", "cpu",
                                "-o", out)
    assert code == 1
    assert "2 ok" in stdout and "1 failed" in stdout and "missing.svs: slide file not found" in err
    summary = json.loads((out / "batch-summary.json").read_text())
    assert summary["counts"] == {"ok": 2, "skipped": 0, "insufficient_tissue": 0, "failed": 1}
    assert not (out / "bad.json").exists()
    c2 = json.loads((out / "c2.json").read_text())
    assert [s["patches"] for s in c2["slides"]] == [10, 10]
    before = (out / "c1.json").read_bytes()
    code, stdout, _ = run_cli(monkeypatch, capsys, "batch", manifest, "-m", tiny_model, "--device", "cpu",
                              "-o", out, "--workers", "2")
    assert "2 skipped" in stdout and (out / "c1.json").read_bytes() == before
    assert not list(out.glob("*.part"))


def test_reports_get_ordinary_file_permissions(tmp_path):
    import os

    from netorigin.runtime.atomic import write_text_atomic

    target = tmp_path / "r.json"
    write_text_atomic(target, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask and target.read_text() == "{}"


def test_unexpected_failure_of_one_case_is_recorded_and_the_batch_goes_on(tiny_model, slides, tmp_path):
    from netorigin.runtime.batch.slides import BatchCase, run_batch
    from netorigin.runtime.slide.predictor import Predictor, SlideInput

    predictor = Predictor(tiny_model, device="cpu")
    good = BatchCase("good", (SlideInput(slides["svs20x"].slide, slides["svs20x"].annotations),))
    broken = BatchCase("broken", (SlideInput(slides["svs20x"].slide, slides["svs20x"].annotations),))
    original = predictor.predict_case

    def flaky(slides_, case_id=None, **kwargs):
        if case_id == "broken":
            raise RuntimeError("decoder crashed")
        return original(slides_, case_id=case_id, **kwargs)

    predictor.predict_case = flaky
    outcomes = {o.case_id: o for o in run_batch(predictor, [broken, good], tmp_path)}
    assert outcomes["good"].status == "ok"
    assert outcomes["broken"].status == "failed" and "RuntimeError: decoder crashed" in outcomes["broken"].reason
