"""Band calibration (method.md) and the verdict rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netorigin.calibration.bands import MARGIN, calibrate_bands
from netorigin.calibration.bands_io import read_sums
from netorigin.calibration.errors import InputDataError
from netorigin.runtime.slide.verdict import patient_verdict, verdict_from_sum

# The reference implementation's published per-patient sums and band table (a copy lives in the repository, so a
# plain clone runs the golden test).
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "reference_cohort_imagenet.json"


def _fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def test_reference_cohort_reproduces_expected_table_bit_for_bit():
    doc = _fixture()
    sums = doc["sums"]
    table = calibrate_bands(sums["pancreas"] + sums["small_intestine"], sums["other"])
    expected = {k: v for k, v in doc["expected_bands"].items() if k != "note"}
    assert len(table.bands) == len(expected)
    for band in table.bands:
        key = "0" if band.c == 0 else repr(band.c)
        pi_inside, lower, upper = expected[key]
        assert band.pi_inside == pi_inside
        assert band.lower == lower and band.upper == upper  # exact, to the last bit
    assert table.default_confidence == 0.875


def test_reference_cohort_verdicts_use_majority_vote_not_sign():
    doc = _fixture()
    table = calibrate_bands(doc["sums"]["pancreas"] + doc["sums"]["small_intestine"], doc["sums"]["other"])
    band = table.at(0.875)
    bounds = (band.lower, band.upper)
    # Outside the band the majority vote decides, even against the sign of S.
    assert verdict_from_sum(-80.0, 51, 100, bounds) == "small_intestine"
    assert verdict_from_sum(23.879060504592648, 62, 100, bounds) == "small_intestine"
    assert verdict_from_sum(-29.87002062299295, 45, 100, bounds) == "uncertain"
    assert verdict_from_sum(band.upper, 10, 100, bounds) == "pancreas"  # a bound itself is outside


sums_lists = st.lists(st.floats(-200, 200, allow_nan=False, allow_infinity=False), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(pi=sums_lists, others=sums_lists)
def test_chosen_band_holds_k_others_and_is_optimal(pi, others):
    table = calibrate_bands(pi, others)
    pi_arr, o_arr = np.array(pi), np.sort(np.array(others))
    o = len(others)
    assert [round(b.c * o) for b in table.bands] == list(range(o + 1))
    for k in range(1, o + 1):
        band = table.by_k(k)
        inside_others = np.count_nonzero((o_arr > band.lower) & (o_arr < band.upper))
        # Exactly k consecutive sorted others, unless ties put more equal values inside.
        runs = [(o_arr[i] - MARGIN, o_arr[i + k - 1] + MARGIN) for i in range(o - k + 1)]
        assert (band.lower, band.upper) in runs
        assert inside_others >= k
        counts = [np.count_nonzero((pi_arr > lo) & (pi_arr < hi)) for lo, hi in runs]
        assert band.pi_inside == min(counts)
        # Among the minimal runs the band is the one closest to the decision boundary, then the first.
        best = min((c, abs(lo + hi), i) for i, ((lo, hi), c) in enumerate(zip(runs, counts)))
        assert runs[best[2]] == (band.lower, band.upper)


@settings(max_examples=50, deadline=None)
@given(ints=st.lists(st.integers(-500, 500), min_size=2, max_size=8, unique=True))
def test_distinct_others_give_exactly_k_inside(ints):
    values = [i / 10 for i in ints]  # distinct by more than the 1e-7 margin
    table = calibrate_bands([1000.0], values)
    o_arr = np.array(values)
    for k in range(1, len(values) + 1):
        band = table.by_k(k)
        assert np.count_nonzero((o_arr > band.lower) & (o_arr < band.upper)) == k


def test_tie_break_prefers_band_nearest_boundary_then_smallest_index():
    # Both single-other bands hold no pi patient; -1 and +1 are equally near 0 -> the first (i = 0).
    table = calibrate_bands([100.0], [-1.0, 1.0])
    assert table.by_k(1).lower == -1.0 - MARGIN
    table = calibrate_bands([100.0], [-3.0, 0.5, 2.0])
    assert table.by_k(1).lower == 0.5 - MARGIN
    # Fewer pi inside wins over nearness to the boundary.
    table = calibrate_bands([0.2, 0.3], [0.0, 0.5, 10.0])
    assert table.by_k(2).lower == 0.5 - MARGIN and table.by_k(2).pi_inside == 0


@pytest.mark.parametrize("pi, others, message", [
    ([1.0], [], "at least one other-origin"),
    ([], [1.0], "at least one labelled"),
    ([float("nan")], [1.0], "NaN or infinite"),
    ([1.0], [float("inf")], "NaN or infinite"),
])
def test_bad_calibration_inputs_are_refused(pi, others, message):
    with pytest.raises(InputDataError, match=message):
        calibrate_bands(pi, others)


def test_sums_table_refuses_duplicates_and_nan(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("patient,label,sum\na,pancreas,1\na,other,2\n")
    with pytest.raises(InputDataError, match="duplicate patient id 'a'"):
        read_sums(dup)
    nan = tmp_path / "nan.csv"
    nan.write_text("patient,label,sum\na,pancreas,nan\n")
    with pytest.raises(InputDataError, match="NaN or infinite"):
        read_sums(nan)


def test_verdict_strict_band_and_tie_to_pancreas():
    d = np.array([1.0] * 50 + [-1.0] * 50)
    assert patient_verdict(d, None).verdict == "pancreas"  # 50/50 -> pancreas
    d51 = np.array([0.1] * 51 + [-1.0] * 49)
    v = patient_verdict(d51, None)
    assert v.verdict == "small_intestine" and v.patient_sum < 0  # vote, not the sign of S
    assert patient_verdict(d51, (v.patient_sum, 10.0)).verdict == "small_intestine"  # S == lower: outside
    assert patient_verdict(d51, (v.patient_sum - 1e-9, 10.0)).verdict == "uncertain"
