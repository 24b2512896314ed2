"""A case's result as DICOM objects for the archive the slides came from (highdicom; the `dicom` extra).

`CASE.sr.dcm` is a Comprehensive 3D SR holding a TID 1500 measurement report that says what the JSON report says:
the verdict as a coded evaluation, S, the band (L, R) and c, the votes, the patches used (or insufficient tissue),
the algorithm (name, version, both model digests, signature), and every note as a comment. `CASE.slideN.ann.dcm`
is a Microscopy Bulk Simple Annotations object per slide: the region sampled and the patches as polygons, each
patch with its decision value (and a bag head's attention). Both go into the first slide's study as new series,
with its patient and specimen; they are built from the JSON report, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes_atomic
from ..errors import MissingDependencyError

LOCAL = "99NETO"  # netorigin's own codes, declared in each object's Coding Scheme Identification Sequence
SR_SERIES_NUMBER, ANN_SERIES_NUMBER = 901, 902
MANUFACTURER = "netorigin"
VERDICT_CODES = {"small_intestine": ("30315005", "SCT", "Small intestine"),
                 "pancreas": ("15776009", "SCT", "Pancreas"),
                 "uncertain": ("82334004", "SCT", "Indeterminate")}
LOCAL_CODES = {"verdict": ("NETO001", "Predicted primary tumor site"), "s": ("NETO010", "Decision score S"),
               "lower": ("NETO011", "Decision band lower limit L"), "upper": ("NETO012", "Decision band upper limit R"),
               "c": ("NETO013", "Confidence c"), "status": ("NETO040", "Analysis status"),
               "patches": ("NETO030", "Number of patches used"),
               "possible": ("NETO031", "Number of patches possible"),
               "required": ("NETO032", "Number of patches required"),
               "decision": ("NETO050", "Patch decision value"), "attention": ("NETO051", "Patch attention weight"),
               "patch": ("NETO060", "Analysis patch")}
NEUROENDOCRINE_TUMOR = ("255046005", "SCT", "Neuroendocrine tumor")
INSUFFICIENT_SAMPLE = ("281268007", "SCT", "Insufficient sample")


def _libraries():
    try:
        import highdicom
        import pydicom
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(f"DICOM results need {exc.name}: pip install 'netorigin[dicom]'") from None
    return highdicom, pydicom


def code(key: str):
    from pydicom.sr.coding import Code

    value, meaning = LOCAL_CODES[key]
    return Code(value, LOCAL, meaning)


def _sct(triple: tuple[str, str, str]):
    from pydicom.sr.coding import Code

    return Code(*triple)


def vote_code(name: str):
    from pydicom.sr.coding import Code

    return Code(f"NETO02{sorted(VERDICT_CODES).index(name)}" if name in VERDICT_CODES else f"NETO029-{name}"[:16],
                LOCAL, f"Patch votes {name.replace('_', ' ')}")


def coding_schemes() -> list:
    """The Coding Scheme Identification Sequence: every scheme used, the local one with who is responsible."""
    from pydicom.dataset import Dataset

    items = []
    for designator, uid, name in (("DCM", "1.2.840.10008.2.16.4", "DICOM Controlled Terminology"),
                                  ("SCT", "2.16.840.1.113883.6.96", "SNOMED CT"),
                                  ("UCUM", "2.16.840.1.113883.6.8", "Unified Code for Units of Measure"),
                                  (LOCAL, None, "netorigin codes")):
        item = Dataset()
        item.CodingSchemeDesignator = designator
        if uid:
            item.CodingSchemeUID = uid
        item.CodingSchemeName = name
        if designator == LOCAL:
            item.CodingSchemeResponsibleOrganization = "netorigin"
            item.CodingSchemeVersion = "1"
        items.append(item)
    return items


def _algorithm_parameters(report: dict[str, Any]) -> dict[str, str]:
    model = report["model"]
    signature = model.get("signature") or {}
    return {"graph_sha256": model["graph_sha256"], "verdict_sha256": model["verdict_sha256"],
            "signature": f"{signature.get('state')} {signature.get('key_id') or ''}".strip(),
            "seed": str(report["seed"])}


def case_sr(report: dict[str, Any], sources: list) -> Any:
    """The TID 1500 measurement report of one case (ok or insufficient tissue), evidence: the slides' instances."""
    hd, _ = _libraries()
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    unit, patches_unit, votes_unit = (Code("1", "UCUM", "no units"), Code("{patches}", "UCUM", "patches"),
                                      Code("{votes}", "UCUM", "votes"))
    version = report["versions"]["netorigin"]
    algorithm = hd.sr.AlgorithmIdentification(
        name="netorigin", version=version,
        parameters=[f"{k}={v}" for k, v in _algorithm_parameters(report).items()])
    measurements, evaluations = [], []
    if report["status"] == "ok":
        evaluations.append(hd.sr.QualitativeEvaluation(name=code("verdict"),
                                                       value=_sct(VERDICT_CODES[report["verdict"]])))
        measurements.append(hd.sr.Measurement(name=code("s"), value=float(report["patient_sum"]), unit=unit))
        if report["band"] is not None:
            measurements += [hd.sr.Measurement(name=code("lower"), value=float(report["band"]["lower"]), unit=unit),
                             hd.sr.Measurement(name=code("upper"), value=float(report["band"]["upper"]), unit=unit),
                             hd.sr.Measurement(name=code("c"), value=float(report["confidence"]), unit=unit)]
        measurements += [hd.sr.Measurement(name=vote_code(name), value=int(n), unit=votes_unit)
                         for name, n in report["votes"].items() if name != "n_patches"]
        measurements.append(hd.sr.Measurement(name=code("patches"), value=int(report["votes"]["n_patches"]),
                                              unit=patches_unit))
    else:
        evaluations.append(hd.sr.QualitativeEvaluation(name=code("status"), value=_sct(INSUFFICIENT_SAMPLE)))
        measurements += [hd.sr.Measurement(name=code("possible"), value=int(report["patches_possible"]),
                                           unit=patches_unit),
                         hd.sr.Measurement(name=code("required"), value=int(report["patches_required"]),
                                           unit=patches_unit)]
    first = sources[0]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"netorigin case {report['case']}"),
        finding_type=_sct(NEUROENDOCRINE_TUMOR), algorithm_id=algorithm, measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(s) for s in sources])
    comments = [report["warning"]] if report.get("warning") else []
    comments += list(report["notes"]) + ([report["problem"]] if report["status"] != "ok" else [])
    for text in comments:  # TID 1501 allows TEXT evaluations; highdicom builds coded ones only
        group[0].ContentSequence.append(hd.sr.TextContentItem(
            name=codes.DCM.Comment, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="netorigin", manufacturer_name=MANUFACTURER, model_name=version))
    report_content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer,
                                                     subject_context=_specimen_context(first)),
        procedure_reported=codes.DCM.WholeSlideImaging, imaging_measurements=[group])
    sr = hd.sr.Comprehensive3DSR(
        evidence=sources, content=report_content[0], series_instance_uid=hd.UID(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        is_final=False, is_verified=False, series_description=f"netorigin result, case {report['case']}"[:64])
    sr.CodingSchemeIdentificationSequence = coding_schemes()
    return sr


def _specimen_context(source) -> Any:
    """The SR's subject: the slide's specimen (the SR has no specimen module of its own)."""
    hd, _ = _libraries()
    from pydicom.sr.codedict import codes

    if "SpecimenDescriptionSequence" not in source:
        return None
    specimen = source.SpecimenDescriptionSequence[0]
    kind = specimen.get("SpecimenTypeCodeSequence")
    return hd.sr.SubjectContext(subject_class=codes.DCM.Specimen, subject_class_specific_context=(
        hd.sr.SubjectContextSpecimen(uid=specimen.SpecimenUID, identifier=specimen.SpecimenIdentifier,
                                     container_identifier=source.get("ContainerIdentifier"),
                                     specimen_type=hd.sr.CodedConcept.from_dataset(kind[0]) if kind else None)))


def _polygons(geometry) -> list:
    """Exterior rings of a (multi)polygon, open (the first point not repeated), in level-0 pixels."""
    parts = getattr(geometry, "geoms", [geometry])
    return [np.asarray(p.exterior.coords[:-1], dtype=np.float64) for p in parts if not p.is_empty]


def slide_annotations(report: dict[str, Any], index: int, source, region, series_uid: str) -> Any:
    """The region sampled on slide `index` and its patches (decision value, a bag head's attention) as annotations
    in the slide's 3D coordinate system (mm; from level-0 pixels by the slide's own geometry). 3D, not 2D pixel
    coordinates: dicom3tools' dciodvfy of Debian 12 wrongly flags every 2D annotation object."""
    hd, _ = _libraries()
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    to_slide = hd.spatial.ImageToReferenceTransformer.for_image(source, for_total_pixel_matrix=True)

    def mm(pixels: np.ndarray) -> np.ndarray:  # pixel corners (0, 0 = the image's top-left corner) to mm
        return to_slide(pixels - 0.5)

    patches = [p for p in report["patches"] if p["slide"] == index]
    squares = [mm(np.array([[p["x"], p["y"]], [p["x"] + p["size_level0"], p["y"]],
                            [p["x"] + p["size_level0"], p["y"] + p["size_level0"]],
                            [p["x"], p["y"] + p["size_level0"]]], dtype=np.float64)) for p in patches]
    unit = Code("1", "UCUM", "no units")
    values = [hd.ann.Measurements(name=code("decision"), values=np.array([p["decision"] for p in patches]),
                                  unit=unit)]
    if patches and "attention" in patches[0]:
        values.append(hd.ann.Measurements(name=code("attention"),
                                          values=np.array([p["attention"] for p in patches]), unit=unit))
    algorithm = hd.AlgorithmIdentificationSequence(
        name="netorigin", family=codes.DCM.ArtificialIntelligence, version=report["versions"]["netorigin"],
        parameters=_algorithm_parameters(report))
    summary = report["slides"][index]
    region_kind = (hd.ann.AnnotationGroupGenerationTypeValues.MANUAL if summary["regions"] == "annotations"
                   else hd.ann.AnnotationGroupGenerationTypeValues.AUTOMATIC)
    groups = [hd.ann.AnnotationGroup(
        number=1, uid=hd.UID(), label="region sampled", annotated_property_category=codes.SCT.Tissue,
        annotated_property_type=_sct(NEUROENDOCRINE_TUMOR), graphic_type=hd.ann.GraphicTypeValues.POLYGON,
        graphic_data=[mm(ring) for ring in _polygons(region)], algorithm_type=region_kind,
        algorithm_identification=algorithm if region_kind.value != "MANUAL" else None,
        description=f"region the patches were drawn from ({summary['regions']})")]
    if squares:
        groups.append(hd.ann.AnnotationGroup(
            number=2, uid=hd.UID(), label="patches", annotated_property_category=codes.SCT.Tissue,
            annotated_property_type=code("patch"), graphic_type=hd.ann.GraphicTypeValues.POLYGON,
            graphic_data=squares, algorithm_type=hd.ann.AnnotationGroupGenerationTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, measurements=values,
            description=f"{len(squares)} patches of {summary['field_of_view_um']:.1f} um"))
    annotations = hd.ann.MicroscopyBulkSimpleAnnotations(
        source_images=[source], annotation_coordinate_type=hd.ann.AnnotationCoordinateTypeValues.SCOORD3D,
        annotation_groups=groups, series_instance_uid=series_uid, series_number=ANN_SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=index + 1, manufacturer=MANUFACTURER,
        manufacturer_model_name="netorigin", software_versions=report["versions"]["netorigin"],
        device_serial_number="0", content_label="NETORIGIN",
        content_description=f"netorigin case {report['case']}"[:64],
        series_description=f"netorigin regions and patches, case {report['case']}"[:64])
    annotations.CodingSchemeIdentificationSequence = coding_schemes()
    return annotations


def write_dicom_results(report: dict[str, Any], slides: list[tuple[Any, Any]], sr_path: Path,
                        ann_path: Callable[[int], Path], store_to: str | None = None) -> dict[str, Any]:
    """Write the SR and one annotation object per slide (`slides`: each slide's base-instance header, from
    `Slide.dicom_header`, and the region sampled, None without patches), then, given `store_to` (a DICOMweb service
    root), store them there; returns what the JSON report records of them. A failed store raises (the files
    stay)."""
    hd, _ = _libraries()
    sources = [header for header, _ in slides]
    objects = [case_sr(report, sources)]
    written = {"sr": _write(objects[0], sr_path), "annotations": []}
    if report["status"] == "ok":
        series: dict[str, str] = {}  # one annotation series per study the slides belong to
        for index, ((_, region), source) in enumerate(zip(slides, sources)):
            uid = series.setdefault(str(source.StudyInstanceUID), str(hd.UID()))
            objects.append(slide_annotations(report, index, source, region, uid))
            written["annotations"].append(_write(objects[-1], ann_path(index)))
    if store_to is not None:
        from .dicomweb import store

        store(store_to, objects)
        written["stored_to"] = store_to
    return written


def _write(dataset, path: Path) -> dict[str, str]:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    write_bytes_atomic(path, buffer.getvalue())
    return {"file": path.name, "sop_instance_uid": str(dataset.SOPInstanceUID),
            "series_instance_uid": str(dataset.SeriesInstanceUID)}
