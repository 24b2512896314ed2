"""A synthetic liver-MRI cohort for tests and `netorigin demo --mri`: phantom abdomens with one liver lesion whose
intensities across the six sequences differ by class, written as real DICOM MR series (each sequence on its own
grid: spacing, size and origin differ, as on a scanner), a T2 region of interest as NIfTI, and a clinical CSV
whose tumour markers carry signal for the malignant classes (Models F/G). Not anatomy: a test bed whose classes
are learnable for the reasons the seed names (enhancement pattern, diffusion, markers).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netorigin.runtime.mri.clinical import CLINICAL_FIELDS
from netorigin.runtime.mri.protocol import SEQUENCES, SEVEN_WAY

# Lesion intensity relative to liver, per sequence (t2, dwi_b800, t1_pre, arterial, portal, equilibrium).
LESION_CONTRAST = {
    "cyst": (3.0, 0.5, 0.4, 0.4, 0.4, 0.4),
    "hemangioma": (2.2, 1.1, 0.6, 1.2, 1.6, 1.8),
    "fnh": (1.1, 1.1, 0.9, 2.2, 1.1, 1.0),
    "other_benign": (0.8, 0.9, 1.5, 1.0, 1.0, 1.0),
    "hcc": (1.4, 1.8, 0.7, 1.8, 0.7, 0.6),
    "metastasis": (1.5, 1.9, 0.6, 1.3, 0.8, 0.8),
    "other_primary": (1.5, 1.8, 0.6, 0.9, 1.2, 1.5),
}
# Each sequence's own grid: in-plane spacing, slice spacing (mm) and an origin shift (mm), as scanners differ.
GRIDS = {"t2": (2.0, 6.0, (0.0, 0.0, 0.0)), "dwi_b800": (3.0, 8.0, (15.0, -12.0, 4.0)),
         "t1_pre": (2.5, 5.0, (-1.0, 1.0, -1.5)), "arterial": (2.5, 5.0, (-1.0, 1.0, -1.5)),
         "portal": (2.5, 5.0, (-1.0, 1.0, -1.5)), "equilibrium": (2.5, 5.0, (-1.0, 1.0, -1.5))}
FIELD_MM = (200.0, 200.0, 96.0)
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass(frozen=True)
class SyntheticPatient:
    patient: str
    label: str
    folder: Path
    roi: Path


def _scene(points: np.ndarray, lesion_centre: np.ndarray, lesion_radius: float, label: str, index: int,
           rng: np.random.Generator, scale: float) -> np.ndarray:
    """Intensity at physical points (mm) for sequence `index`: body, liver, lesion, noise."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    body = (x / 95) ** 2 + (y / 75) ** 2 <= 1
    liver = ((x + 30) / 60) ** 2 + ((y + 5) / 45) ** 2 + (z / 45) ** 2 <= 1
    lesion = np.linalg.norm(points - lesion_centre, axis=-1) <= lesion_radius
    liver_level = (300, 250, 350, 420, 480, 430)[index]
    image = np.where(body, 0.6 * liver_level, 0.0)
    image = np.where(liver, liver_level, image)
    image = np.where(lesion, liver_level * LESION_CONTRAST[label][index], image)
    image = image + rng.normal(0, 0.12 * liver_level, image.shape) * body
    return np.clip(image * scale, 0, 4000).astype(np.uint16)


def _grid(sequence: str) -> tuple[np.ndarray, tuple[float, float, float], tuple[int, int, int]]:
    inplane, thickness, shift = GRIDS[sequence]
    spacing = (inplane, inplane, thickness)
    size = tuple(int(round(f / s)) for f, s in zip(FIELD_MM, spacing, strict=True))
    origin = np.array([-FIELD_MM[0] / 2, -FIELD_MM[1] / 2, -FIELD_MM[2] / 2]) + np.array(shift)
    return origin, spacing, size


def _points(origin: np.ndarray, spacing, size) -> np.ndarray:
    """Physical (x, y, z) of every voxel centre, indexed [z, y, x] (identity direction, axial)."""
    zs, ys, xs = (origin[axis] + spacing[axis] * np.arange(size[axis]) for axis in (2, 1, 0))
    grid = np.stack(np.meshgrid(xs, ys, zs, indexing="xy"), axis=-1)  # [y, x, z, 3]
    return np.transpose(grid, (2, 0, 1, 3))


def write_series(folder: Path, volume: np.ndarray, origin: np.ndarray, spacing, patient: str, study_uid: str,
                 frame_uid: str, description: str, series_number: int) -> None:
    """One DICOM MR series, a file per axial slice, with the geometry SimpleITK/GDCM read back."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for k, plane in enumerate(volume):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MR_STORAGE, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MR_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.PatientName, ds.Modality = patient, f"SYNTHETIC^{patient}", "MR"
        # the patient and study modules' type-2 attributes, present (empty where unknown) as scanners write them
        ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName, ds.AccessionNumber = "", "", "", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20260101", "120000", "1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = description, series_number, k + 1
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + k * spacing[2])]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # row spacing (y), column spacing (x)
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(plane, dtype=np.uint16).tobytes()
        ds.save_as(folder / f"{k + 1:04d}.dcm", enforce_file_format=True)


def _write_roi(path: Path, mask: np.ndarray, origin: np.ndarray, spacing) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetSpacing(tuple(float(v) for v in spacing))
    sitk.WriteImage(image, str(path))


def clinical_record(label: str, rng: np.random.Generator) -> dict[str, str]:
    """The seed's clinical fields, with markers that lean towards the malignant class (HCC: AFP and cirrhosis;
    metastasis: CEA, CA19-9 and another cancer; other primary: CA19-9 without cirrhosis)."""
    hcc, metastasis, other = label == "hcc", label == "metastasis", label == "other_primary"
    cirrhosis = rng.random() < (0.8 if hcc else 0.1)
    return {
        "age": str(int(rng.integers(35, 85))), "sex": str(rng.choice(["male", "female"])),
        "cirrhosis": "yes" if cirrhosis else "no",
        "other_cancer": "yes" if rng.random() < (0.85 if metastasis else 0.08) else "no",
        "afp": f"{rng.lognormal(np.log(400 if hcc else 5), 0.8):.1f}",
        "cea": f"{rng.lognormal(np.log(25 if metastasis else 2.5), 0.6):.1f}",
        "ca125": f"{rng.lognormal(np.log(20), 0.5):.1f}",
        "ca199": f"{rng.lognormal(np.log(150 if (metastasis or other) else 15), 0.7):.1f}",
        "psa": f"{rng.lognormal(np.log(1.0), 0.5):.2f}",
        "ferritin": f"{rng.lognormal(np.log(200), 0.5):.0f}",
        "albumin": f"{rng.normal(34 if cirrhosis else 42, 3):.1f}",
        "bilirubin": f"{rng.lognormal(np.log(30 if cirrhosis else 12), 0.3):.1f}",
        "prolonged_pt": "yes" if cirrhosis and rng.random() < 0.5 else "no",
        "encephalopathy": "yes" if cirrhosis and rng.random() < 0.1 else "no",
        "ascites": "yes" if cirrhosis and rng.random() < 0.3 else "no",
    }


def make_mri_cohort(root: str | Path, counts: dict[str, int], seed: int = 0) -> Path:
    """Write `counts[label]` patients per lesion class under `root`; returns the manifest CSV
    (patient,label,<one series folder per sequence>,roi) beside `clinical.csv`."""
    from pydicom.uid import generate_uid

    root = Path(root)
    rng = np.random.default_rng(seed)
    rows, clinical = [], []
    for label in SEVEN_WAY:
        for i in range(counts.get(label, 0)):
            patient = f"{label}-{i:02d}"
            folder = root / patient
            centre = np.array([-30 + rng.uniform(-25, 25), -5 + rng.uniform(-15, 15), rng.uniform(-14, 14)])
            radius = float(rng.uniform(14, 24))
            study, frame = generate_uid(), generate_uid()
            for index, sequence in enumerate(SEQUENCES):
                origin, spacing, size = _grid(sequence)
                points = _points(origin, spacing, size)
                volume = _scene(points, centre, radius, label, index, rng, float(rng.uniform(0.7, 1.3)))
                write_series(folder / sequence, volume, origin, spacing, patient, study, frame, sequence,
                             index + 1)
                if sequence == "t2":
                    roi = folder / "roi-t2.nii.gz"
                    _write_roi(roi, np.linalg.norm(points - centre, axis=-1) <= radius, origin, spacing)
            rows.append({"patient": patient, "label": label, **{s: f"{patient}/{s}" for s in SEQUENCES},
                         "roi": f"{patient}/roi-t2.nii.gz"})
            clinical.append({"patient": patient, **clinical_record(label, rng)})
    manifest = root / "cohort.csv"
    _write_csv(manifest, ["patient", "label", *SEQUENCES, "roi"], rows)
    _write_csv(root / "clinical.csv", ["patient", *CLINICAL_FIELDS], clinical)
    return manifest


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
