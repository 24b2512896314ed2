#!/usr/bin/env bash
# System packages the tests use, from Debian/Ubuntu packages when missing: headless Chromium (case pages),
# libjpeg-turbo (wsidicomizer writes the DICOM test slides), dicom3tools (dciodvfy checks the DICOM results),
# Orthanc with its DICOMweb plugin (the PACS the DICOMweb tests start on 127.0.0.1; its service is never used).
set -euo pipefail
absent() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || echo chromium
  ldconfig -p 2>/dev/null | grep -q 'libturbojpeg\.so\.0' || echo libturbojpeg0
  command -v dciodvfy >/dev/null 2>&1 || echo dicom3tools
  command -v Orthanc >/dev/null 2>&1 || echo orthanc
  ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 || echo orthanc-dicomweb
}
missing=($(absent))
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # A package's service start may fail where no init system runs (Orthanc's): what counts is absent() after.
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } \
    || true
  $SUDO ldconfig 2>/dev/null || true  # a deferred trigger may not have refreshed the library cache yet
fi
still=($(absent))
[ ${#still[@]} -eq 0 ] || { echo "install with your system's packages: ${still[*]} (the tests need them)" >&2; exit 1; }
