"""MRI cases (seed 002): DICOM series on their own grids and a T2 region become image groups on one 0.7 x 0.7 x 7
mm grid; what cannot be aligned, or a clinical record that is incomplete, is one line, never a result."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from netorigin.export.synthetic_mri import GRIDS, make_mri_cohort, write_series
from netorigin.runtime.errors import ManifestError, MriInputError
from netorigin.runtime.mri.clinical import (
    CLINICAL_FIELDS,
    DEFAULT_ENCODING,
    encode_record,
    encoded_width,
    read_clinical,
)
from netorigin.runtime.mri.groups import image_groups, read_series
from netorigin.runtime.mri.protocol import SEQUENCES, SPACING_MM
from netorigin.runtime.mri.roi import read_roi

from .mri_cases import write_segmentation


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("mri")
    make_mri_cohort(root, {"cyst": 1, "hcc": 1, "metastasis": 1}, seed=4)
    return root


def groups_of(folder, sequences=SEQUENCES, roi_name="roi-t2.nii.gz"):
    series = [read_series(folder / s, s) for s in sequences]
    return image_groups(series, read_roi(folder / roi_name, series[0]), folder / roi_name)


def test_groups_are_the_sections_the_region_touches_one_channel_per_sequence(cohort):
    groups = groups_of(cohort / "hcc-00")
    roi = sitk.ReadImage(str(cohort / "hcc-00" / "roi-t2.nii.gz"))
    extent_mm = np.ptp(np.argwhere(sitk.GetArrayFromImage(roi))[:, 0]) * roi.GetSpacing()[2]
    assert groups.pixels.shape[1:] == (6, 299, 299) and groups.pixels.dtype == np.float32
    assert 1 <= len(groups.sections) <= extent_mm / SPACING_MM[2] + 2  # 7-mm sections across the lesion
    assert groups.pixels.min() >= 0 and groups.pixels.max() <= 4
    assert groups.roi.shape == (len(groups.sections), 299, 299) and groups.roi.any(axis=(1, 2)).all()
    unenhanced = groups_of(cohort / "hcc-00", SEQUENCES[:3])
    np.testing.assert_array_equal(unenhanced.pixels, groups.pixels[:, :3])


@pytest.mark.parametrize("sequence", ["dwi_b800", "arterial"])
def test_the_t2_region_lands_on_the_lesion_in_sequences_on_other_grids(cohort, sequence):
    """HCC is bright on diffusion and in the arterial phase; both sequences have other spacing and origin than the
    T2, so only geometry-based propagation puts the region on the lesion there."""
    assert GRIDS[sequence] != GRIDS["t2"]
    groups = groups_of(cohort / "hcc-00")
    channel = groups.pixels[:, SEQUENCES.index(sequence)]
    inside = channel[groups.roi].mean()
    liver_ring = np.mean([channel[g][_ring(groups.roi[g])].mean() for g in range(len(groups.sections))])
    assert inside > liver_ring + 0.1


def test_a_region_on_any_single_t2_slice_gives_a_group(cohort, tmp_path):
    """A 7-mm section is kept when the region touches it anywhere, not only at its centre: a lesion drawn on one
    6-mm T2 slice is never dropped."""
    roi = sitk.ReadImage(str(cohort / "hcc-00" / "roi-t2.nii.gz"))
    full = sitk.GetArrayFromImage(roi)
    series = [read_series(cohort / "hcc-00" / s, s) for s in SEQUENCES[:3]]
    for k in np.flatnonzero(full.any(axis=(1, 2))):
        one = np.zeros_like(full)
        one[k] = full[k]
        thin = sitk.GetImageFromArray(one)
        thin.CopyInformation(roi)
        assert len(image_groups(series, thin).sections) >= 1


def _ring(mask: np.ndarray, width: int = 12) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=width) & ~binary_dilation(mask, iterations=4)


def copy_case(cohort, tmp_path, name="case"):
    target = tmp_path / name
    shutil.copytree(cohort / "hcc-00", target)
    return target


def test_a_missing_sequence_is_one_line(cohort, tmp_path):
    case = copy_case(cohort, tmp_path)
    shutil.rmtree(case / "portal")
    with pytest.raises(MriInputError, match="portal venous series folder not found") as refused:
        read_series(case / "portal", "portal")
    assert "\n" not in str(refused.value)


def test_two_series_in_one_folder_are_refused(cohort, tmp_path):
    case = copy_case(cohort, tmp_path)
    for path in (case / "t1_pre").iterdir():
        shutil.copy(path, case / "arterial" / f"t1-{path.name}")
    with pytest.raises(MriInputError, match="2 DICOM series in one folder"):
        read_series(case / "arterial", "arterial")


def test_another_frame_of_reference_cannot_be_aligned(cohort, tmp_path):
    import pydicom

    case = copy_case(cohort, tmp_path)
    for path in (case / "dwi_b800").iterdir():
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = "1.2.3.4.5"
        ds.save_as(path)
    with pytest.raises(MriInputError, match="diffusion b=800 series has another frame of reference"):
        groups_of(case)


def test_a_region_outside_a_sequence_volume_is_refused(cohort, tmp_path):
    case = copy_case(cohort, tmp_path)
    shutil.rmtree(case / "equilibrium")
    origin = np.array([-100.0, -100.0, 40.0])  # a short stack above the liver
    write_series(case / "equilibrium", np.zeros((3, 40, 40), np.uint16), origin, (5.0, 5.0, 5.0), "x", "1.2.3",
                 read_series(case / "t2", "t2").frame_of_reference, "equilibrium", 6)
    with pytest.raises(MriInputError, match="region of interest lies outside the equilibrium volume"):
        groups_of(case)


def test_a_region_not_on_the_t2_grid_or_empty_is_refused(cohort, tmp_path):
    case = copy_case(cohort, tmp_path)
    roi = sitk.ReadImage(str(case / "roi-t2.nii.gz"))
    roi.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(roi, str(case / "roi-t2.nii.gz"))
    with pytest.raises(MriInputError, match="not on the T2 series' grid"):
        groups_of(case)
    empty = sitk.ReadImage(str(cohort / "hcc-00" / "roi-t2.nii.gz")) * 0
    sitk.WriteImage(empty, str(case / "roi-t2.nii.gz"))
    with pytest.raises(MriInputError, match="region of interest is empty"):
        groups_of(case)


@pytest.mark.parametrize("segments", [1, 2])
def test_a_dicom_segmentation_on_the_t2_gives_the_groups_of_the_same_mask(cohort, tmp_path, segments):
    case = copy_case(cohort, tmp_path)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "roi-t2.nii.gz"))) != 0
    write_segmentation(case / "t2", mask, case / "roi-t2.dcm", segments)
    from_seg, from_nifti = groups_of(case, roi_name="roi-t2.dcm"), groups_of(case)
    assert from_seg.sections == from_nifti.sections
    assert np.array_equal(from_seg.pixels, from_nifti.pixels) and np.array_equal(from_seg.roi, from_nifti.roi)


def test_a_dicom_segmentation_of_another_series_or_not_a_seg_is_one_line(cohort, tmp_path):
    case = copy_case(cohort, tmp_path)
    dwi = sitk.GetArrayFromImage(read_series(case / "dwi_b800", "dwi_b800").image)
    write_segmentation(case / "dwi_b800", np.ones(dwi.shape, bool), case / "roi-t2.dcm")
    with pytest.raises(MriInputError, match="does not reference the T2 series' instances") as exc:
        groups_of(case, roi_name="roi-t2.dcm")
    assert str(case / "roi-t2.dcm") in str(exc.value)
    (case / "roi-t2.dcm").write_bytes(next((case / "t2").iterdir()).read_bytes())  # a T2 slice, not a SEG
    with pytest.raises(MriInputError, match="not a DICOM Segmentation highdicom reads"):
        groups_of(case, roi_name="roi-t2.dcm")


def test_clinical_records_encode_by_the_table_and_refuse_gaps(cohort):
    records = read_clinical(cohort / "clinical.csv")
    record = records["hcc-00"]
    vector = encode_record(record, DEFAULT_ENCODING, "hcc-00")
    assert vector.shape == (encoded_width(DEFAULT_ENCODING),) and vector.dtype == np.float32
    assert vector[0] == pytest.approx(int(record["age"]) / 100)
    raised = encode_record(record | {"afp": "500"}, DEFAULT_ENCODING, "p")
    normal = encode_record(record | {"afp": "3"}, DEFAULT_ENCODING, "p")
    assert not np.array_equal(raised, normal)
    with pytest.raises(MriInputError, match="patient p: clinical field cea is missing"):
        encode_record(record | {"cea": ""}, DEFAULT_ENCODING, "p")
    with pytest.raises(MriInputError, match="patient p: sex 'unknown' is not one of female, male"):
        encode_record(record | {"sex": "unknown"}, DEFAULT_ENCODING, "p")
    with pytest.raises(MriInputError, match="patient p: albumin 'low' is not a number"):
        encode_record(record | {"albumin": "low"}, DEFAULT_ENCODING, "p")


def test_an_unknown_clinical_column_is_refused(tmp_path):
    path = tmp_path / "clinical.csv"
    path.write_text("patient," + ",".join(CLINICAL_FIELDS) + ",alt\n")
    with pytest.raises(ManifestError, match="clinical.csv: bad columns: missing none, unknown alt"):
        read_clinical(path)
