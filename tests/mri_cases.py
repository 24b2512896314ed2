"""MRI test inputs: a lesion model as `train-mri` exports it but untrained (the mechanics, not the accuracy), and
what a reader's tools write, a DICOM Segmentation of the T2 region as a viewer saves it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netorigin.export.mri_model import build_lesion_net, lesion_model_bytes
from netorigin.runtime.mri.protocol import MODEL_KINDS


def untrained_model(kind: str, path: Path, seed: int, clinical=None):
    """Model `kind` exported untrained to `path` (test_efficientnet); returns the PyTorch network."""
    net, network = build_lesion_net(MODEL_KINDS[kind], "test_efficientnet", None, seed=seed, clinical=clinical)
    path.write_bytes(lesion_model_bytes(net, MODEL_KINDS[kind], clinical, {
        "demo": True, "network": network, "trained_on_patients_sha256": []}, {}))
    return net


def write_segmentation(t2_folder, mask, path, segments=1):
    """A DICOM SEG of `mask` ([slices, rows, cols] in the T2 volume's slice order) on the T2 series' instances,
    written by highdicom as a viewer would; with `segments` 2 the mask is split between two segments."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(p) for p in sorted(t2_folder.iterdir())]
    sources.sort(key=lambda ds: float(np.dot(ds.ImagePositionPatient, np.cross(
        ds.ImageOrientationPatient[:3], ds.ImageOrientationPatient[3:]))))  # the volume's slice order
    labels = np.zeros(mask.shape, np.uint8)
    labels[mask] = 1
    if segments == 2:
        labels[mask & (np.arange(mask.shape[2]) < mask.shape[2] // 2)] = 2
    descriptions = [hd.seg.SegmentDescription(
        segment_number=k, segment_label=f"lesion part {k}",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for k in range(1, segments + 1)]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=100,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="netorigin tests",
        manufacturer_model_name="tests", software_versions="1", device_serial_number="1")
    seg.save_as(path)
