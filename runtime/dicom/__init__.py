"""DICOM whole-slide input (instance files, folders, DICOMweb) and DICOM results (SR, bulk annotations)."""
