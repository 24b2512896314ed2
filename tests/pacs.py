"""Orthanc, started for the tests as a real DICOMweb peer, and what the tests do with it (upload, find)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PLUGIN_FOLDERS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# An archive that takes slides but refuses results (Orthanc's own Lua hook): what a failed store looks like.
REFUSE_RESULTS = """
function ReceivedInstanceFilter(dicom, origin, info)
  return dicom.Modality ~= 'SR' and dicom.Modality ~= 'ANN'
end
"""


@contextmanager
def start_orthanc(folder: Path, lua: str | None = None) -> Iterator[dict[str, str]]:
    binary = shutil.which("Orthanc")
    plugins = [p for d in PLUGIN_FOLDERS for p in Path(d).glob("libOrthancDicomWeb.so*")] if binary else []
    if not plugins:
        pytest.fail("Orthanc with its DICOMweb plugin is not installed: run `bash tests/install-system-packages.sh` "
                    "(the README's test command does)")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "orthanc.json"
    scripts = []
    if lua is not None:
        (folder / "filter.lua").write_text(lua)
        scripts = [str(folder / "filter.lua")]
    config.write_text(json.dumps({
        "LuaScripts": scripts,
        "Name": "netorigin-tests", "HttpPort": port, "HttpBindAddress": "127.0.0.1", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomServerEnabled": False, "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"), "Plugins": [str(plugins[0])],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}))
    log = (folder / "orthanc.log").open("w")
    process = subprocess.Popen([binary, str(config)], stdout=log, stderr=subprocess.STDOUT)
    rest = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{rest}/system", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Orthanc did not start: {(folder / 'orthanc.log').read_text()[-500:]}")
                time.sleep(0.2)
        yield {"rest": rest, "dicomweb": f"{rest}/dicom-web"}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def upload(rest: str, folder: Path) -> None:
    """Every DICOM file of the folder into Orthanc (its REST API, as an archive's import would)."""
    for path in sorted(folder.glob("*.dcm")):
        request = urllib.request.Request(f"{rest}/instances", data=path.read_bytes(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200


def series_count(rest: str) -> int:
    with urllib.request.urlopen(f"{rest}/series", timeout=10) as answer:
        return len(json.loads(answer.read()))


def orthanc_instances(rest: str, study_uid: str) -> dict[str, dict[str, str]]:
    """The study's instances as Orthanc's own REST API lists them: SOP instance UID -> Orthanc id and modality."""
    query = json.dumps({"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True,
                        "RequestedTags": ["Modality"]}).encode()
    request = urllib.request.Request(f"{rest}/tools/find", data=query, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        found = json.loads(answer.read())
    return {item["MainDicomTags"]["SOPInstanceUID"]: {"ID": item["ID"], "Modality": _modality(rest, item["ID"])}
            for item in found}


def _modality(rest: str, instance: str) -> str:
    with urllib.request.urlopen(f"{rest}/instances/{instance}/simplified-tags", timeout=30) as answer:
        return json.loads(answer.read()).get("Modality", "")


def orthanc_file(rest: str, instance: str) -> bytes:
    with urllib.request.urlopen(f"{rest}/instances/{instance}/file", timeout=30) as answer:
        return answer.read()
