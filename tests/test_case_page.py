"""Case pages and the batch index, rendered in a real browser (headless Chromium driven by Playwright).

`tests/install-system-packages.sh` (run by the README's test command and `.ci/run`) installs Chromium when missing.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from netorigin.runtime.model.bands import BandTable
from netorigin.runtime.model.contract import load_contract
from netorigin.runtime.reports.case_page import band_axis
from netorigin.runtime.reports.html import diverging_colour

from .helpers import rebanded, run_cli, run_cli_outside_a_test

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("Chromium is not installed: run `bash tests/install-system-packages.sh` (the README's test command "
                    "does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def open_page(browser, path, width=900):
    """Load a file page; collect every request it makes and every script or console error."""
    page = browser.new_page(viewport={"width": width, "height": 1200})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, requests, errors


@pytest.fixture(scope="module")
def case_dir(tiny_model, slides, tmp_path_factory):
    """A two-slide case predicted through the CLI (`predict --out`), and a batch with a failing case."""
    out = tmp_path_factory.mktemp("pages")
    a, b = slides["svs20x"], slides["svs40x"]
    code, _, err = run_cli_outside_a_test("predict", a.slide, b.slide, "-a", a.annotations, "-a", b.annotations,
                                          "--specimen", "A", "--specimen", "B", "-m", tiny_model, "--device", "cpu",
                                          "--case-id", "case-1", "--out", out / "case")
    assert code == 0, err
    return out


def test_case_page_shows_what_was_decided_from_where_by_which_model(browser, case_dir, tmp_path):
    report = json.loads((case_dir / "case" / "case-1.json").read_text())
    path = case_dir / "case" / "case-1.html"
    page, requests, errors = open_page(browser, path)
    assert errors == []
    assert [u for u in requests if not u.startswith(("data:", "file:"))] == []
    assert page.get_attribute("#verdict", "data-verdict") == report["verdict"]
    assert page.inner_text("#verdict .verdict") == report["verdict"].replace("_", " ").upper()
    assert page.inner_text("#patient-sum") == f"{report['patient_sum']:.4f}"
    assert page.inner_text("#band") == f"({report['band']['lower']:.3f}, {report['band']['upper']:.3f})"
    assert page.inner_text("#confidence") == f"{report['confidence']:.4g}"
    assert page.inner_text("#demo-notice") == "DEMO MODEL, NOT FOR DIAGNOSIS"
    # every slide's picture is inline and decodes
    images = page.query_selector_all("figure.slide-figure img")
    assert len(images) == len(report["slides"]) == 2
    assert all(img.get_attribute("src").startswith("data:image/jpeg;base64,") for img in images)
    assert all(img.evaluate("i => i.complete && i.naturalWidth > 0") for img in images)
    # S on the band axis, between the band's drawn edges exactly when it is inside the band
    s_x = float(page.get_attribute("#s-marker", "x1"))
    band = page.query_selector("#band-axis rect.band")
    left, width = float(band.get_attribute("x")), float(band.get_attribute("width"))
    assert (left < s_x < left + width) == report["in_band"]
    cohort = list(load_contract(report["model"]["path"]).record.calibration.sums)
    assert len(page.query_selector_all("#band-axis .cohort")) == len(cohort) > 0
    assert report["model"]["verdict_sha256"] in page.inner_text("#run")
    assert report["provider"] in page.inner_text("#run")
    page.screenshot(path=tmp_path / "case.png", full_page=True)
    assert (tmp_path / "case.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = page.pdf(format="A4", print_background=True)
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1  # prints on one A4 page
    assert path.stat().st_size < 1.5e6


def test_research_notice_for_in_sample_bands(browser, tiny_model, slides, tmp_path, monkeypatch, capsys):
    contract = load_contract(tiny_model)
    in_sample = tmp_path / "in-sample.onnx"
    calibration = contract.record.calibration
    table = BandTable(tuple(contract.bands), calibration.n_pi, calibration.n_other)
    rebanded(contract, table, in_sample, in_sample=True, in_sample_patients=3)
    s = slides["svs20x"]
    code, _, err = run_cli(monkeypatch, capsys, "predict", s.slide, "-a", s.annotations, "-m", in_sample,
                           "--device", "cpu", "--out", tmp_path / "out")
    assert code == 0, err
    page, _, errors = open_page(browser, tmp_path / "out" / "svs20x.html")
    assert errors == []
    assert "RESEARCH ONLY" in page.inner_text(".research-notice")


def test_batch_index_lists_counts_links_and_failures_and_sorts(browser, tiny_model, slides, tmp_path, monkeypatch,
                                                               capsys):
    rows = [("c1", slides["svs20x"]), ("c2", slides["svs40x"]), ("c3", slides["tiff20x"])]
    manifest = tmp_path / "m.csv"
    manifest.write_text("case,slide,annotations\n" + "".join(f"{c},{s.slide},{s.annotations}\n" for c, s in rows)
                        + f"bad,{tmp_path / 'missing.svs'},\n")
    out = tmp_path / "out"
    code, _, _ = run_cli(monkeypatch, capsys, "batch", manifest, "-m", tiny_model, "--device", "cpu", "-o", out)
    assert code == 1
    reports = {c: json.loads((out / f"{c}.json").read_text()) for c, _ in rows}
    page, requests, errors = open_page(browser, out / "index.html", width=1100)
    assert errors == [] and [u for u in requests if not u.startswith(("data:", "file:"))] == []
    for verdict in ("small_intestine", "pancreas", "uncertain"):
        expected = sum(r["verdict"] == verdict for r in reports.values())
        assert page.inner_text(f'#counts [data-verdict="{verdict}"]').endswith(f": {expected}")
    assert page.inner_text('#counts [data-status="failed"]').endswith(": 1")
    assert [a.get_attribute("href") for a in page.query_selector_all("#cases a")] == ["c1.html", "c2.html",
                                                                                      "c3.html"]
    assert "missing.svs: slide file not found" in page.inner_text("#failures")
    page.click("#cases th:nth-child(3)")  # sort by S, ascending; the failed case (no S) last
    order = [row.get_attribute("data-case") for row in page.query_selector_all("#cases tbody tr")]
    assert order == sorted(reports, key=lambda c: reports[c]["patient_sum"]) + ["bad"]
    page.click("#cases th:nth-child(3)")
    order = [row.get_attribute("data-case") for row in page.query_selector_all("#cases tbody tr")]
    assert order == sorted(reports, key=lambda c: -reports[c]["patient_sum"]) + ["bad"]
    page.screenshot(path=tmp_path / "index.png", full_page=True)


def test_insufficient_tissue_page_gives_no_verdict(browser, tiny_model, slides, tmp_path, monkeypatch, capsys):
    s = slides["svs20x"]
    glass = tmp_path / "glass.geojson"
    glass.write_text(json.dumps([{"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
                                  "geometry": {"type": "Polygon", "coordinates": [[[5, 5], [60, 5], [60, 60],
                                                                                   [5, 60], [5, 5]]]}}]))
    code, _, _ = run_cli(monkeypatch, capsys, "predict", s.slide, "-a", glass, "-m", tiny_model, "--device",
                         "cpu", "--out", tmp_path / "out")
    assert code == 3
    page, _, errors = open_page(browser, tmp_path / "out" / "svs20x.html")
    assert errors == []
    assert page.get_attribute("#verdict", "data-verdict") == "none"
    assert "insufficient tissue" in page.inner_text("#problem")
    assert page.query_selector("#patient-sum") is None


def test_names_from_files_are_escaped(tmp_path):
    from netorigin.runtime.reports.case_page import case_html

    report = json.loads(json.dumps({
        "status": "insufficient_tissue", "case": "c1", "verdict": None, "problem": "<script>alert(1)</script>",
        "patches_possible": 0, "patches_required": 20, "seed": 0, "confidence": None,
        "region_rules": {"include": ["<b>Tumor</b>"], "exclude": [], "object_types": ["annotation"]},
        "model": {"path": "m.onnx", "embedder": "e", "head": "h", "precision": "fp32", "patches_per_case": 20,
                  "field_of_view_um": 497.0, "graph_sha256": "0" * 64, "verdict_sha256": "1" * 64,
                  "signature": {"state": "unsigned", "key_id": None}},
        "versions": {"netorigin": "0", "onnxruntime": "1", "onnxruntime_dist": "x", "openslide": "4",
                     "numpy": "2", "python": "3"}, "created": "now", "warning": None}))
    html = case_html(report, [], [], 0.0)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>Tumor</b>" not in html


def test_diverging_colours_are_symmetric_and_clipped():
    assert diverging_colour(0.0, 2.0) == (247, 247, 247)
    assert diverging_colour(-2.0, 2.0) == (127, 59, 8) == diverging_colour(-9.0, 2.0)
    assert diverging_colour(2.0, 2.0) == (45, 0, 75) == diverging_colour(9.0, 2.0)
    assert diverging_colour(1.0, 2.0) != diverging_colour(-1.0, 2.0)


def test_band_axis_places_everything_inside_its_width():
    axis = band_axis(3.0, {"lower": -5.0, "upper": 2.0}, [{"label": "other", "s": -40.0}, {"label": "pancreas",
                                                                                          "s": 60.0}])
    xs = [axis.x(v) for v in (3.0, -5.0, 2.0, -40.0, 60.0)]
    assert all(20 < x < 680 for x in xs)
    assert axis.x(-5.0) < axis.x(2.0) < axis.x(3.0)
    assert all(20 <= axis.x(t) <= 680 for t, _ in axis.ticks) and len(axis.ticks) >= 3


@pytest.mark.parametrize("n_slides", [1, 4, 8])
def test_a_case_page_prints_on_one_a4_page_whatever_the_slide_count(browser, tiny_model, slides, tmp_path, n_slides):
    from netorigin.runtime.reports.report import write_case_outputs
    from netorigin.runtime.slide.predictor import Predictor

    pool = [slides[name] for name in ("svs20x", "svs40x", "tiff20x")]
    chosen = [pool[i % 3] for i in range(n_slides)]
    result = Predictor(tiny_model, device="cpu").predict_case(
        [s.slide for s in chosen], [s.annotations for s in chosen], case_id=f"n{n_slides}",
        specimens=[f"S{i}" for i in range(n_slides)])
    write_case_outputs(result, tmp_path)
    page, _, errors = open_page(browser, tmp_path / f"n{n_slides}.html")
    assert errors == [] and len(page.query_selector_all("figure.slide-figure img")) == n_slides
    for background in (True, False):  # browsers print without background graphics by default
        pdf = page.pdf(format="A4", print_background=background)
        assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1
    assert page.evaluate("getComputedStyle(document.querySelector('#verdict')).printColorAdjust") == "exact"
    assert (tmp_path / f"n{n_slides}.html").stat().st_size < 1.5e6


@pytest.mark.parametrize("where", [0.0, 0.2, 0.5, 1.0])
def test_the_s_label_never_covers_the_legend_and_stays_inside_the_axis(browser, case_dir, tmp_path, where):
    """S anywhere on the axis (demo case oth008 lay in its left third, where the label covered the legend)."""
    from netorigin.runtime.reports.case_page import case_html

    report = json.loads((case_dir / "case" / "case-1.json").read_text())
    cohort = list(load_contract(report["model"]["path"]).record.calibration.sums)
    values = [row["s"] for row in cohort] + [report["band"]["lower"], report["band"]["upper"]]
    report["patient_sum"] = min(values) + where * (max(values) - min(values))
    path = tmp_path / "page.html"
    path.write_text(case_html(report, [], cohort, 0.0))
    page, _, errors = open_page(browser, path)
    assert errors == []
    label = page.evaluate("() => { const b = document.querySelector('#s-label').getBBox(); "
                          "return [b.x, b.y, b.x + b.width, b.y + b.height]; }")
    legend = page.evaluate("() => { const b = document.querySelector('#axis-legend').getBBox(); "
                           "return [b.x, b.y, b.x + b.width, b.y + b.height]; }")
    overlap = label[0] < legend[2] and legend[0] < label[2] and label[1] < legend[3] and legend[1] < label[3]
    assert not overlap and 0 <= label[0] and label[2] <= 700
