"""Head files cannot run code: skops with an explicit trusted-type list and a class allow-list; old joblib pickles
are refused with the command that converts a trusted one."""

from __future__ import annotations

import io
import os
import pickle

import joblib
import numpy as np
import pytest

from netorigin.calibration.errors import InputDataError
from netorigin.export.head_file import load_head, save_head
from netorigin.export.heads import fit_head

from .helpers import run_cli, synthetic_embeddings


@pytest.fixture(scope="module")
def fitted():
    x, y = synthetic_embeddings(40, dim=64)
    return fit_head("reference", x, y), x


class RunsCode:
    """A pickle that runs a command when loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_head_round_trips_bit_for_bit(fitted, tmp_path):
    pipeline, x = fitted
    save_head(tmp_path / "h.skops", pipeline, kind="reference", info={"fit_patients": ["a", "b"]})
    head = load_head(tmp_path / "h.skops")
    assert head["kind"] == "reference" and head["info"] == {"fit_patients": ["a", "b"]}
    assert np.array_equal(head["pipeline"].decision_function(x.astype(np.float64)),
                          pipeline.decision_function(x.astype(np.float64)))


def test_a_pickle_head_is_refused_without_running_it_and_converts_on_request(fitted, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "ran"
    crafted = tmp_path / "crafted.joblib"
    crafted.write_bytes(pickle.dumps({"pipeline": RunsCode(str(marker))}, protocol=4))
    with pytest.raises(InputDataError, match="old pickle .*netorigin convert-head OLD.joblib -o NEW.skops"):
        load_head(crafted)
    assert not marker.exists()
    old = tmp_path / "old.joblib"
    buffer = io.BytesIO()
    joblib.dump({"pipeline": fitted[0], "kind": "reference", "info": {"patches_per_case": 100}}, buffer)
    old.write_bytes(buffer.getvalue())
    code, out, err = run_cli(monkeypatch, capsys, "convert-head", old, "-o", tmp_path / "new.skops")
    assert code == 0, err
    assert load_head(tmp_path / "new.skops")["info"] == {"patches_per_case": 100}


def test_a_skops_file_with_a_foreign_type_is_refused(fitted, tmp_path):
    import skops.io as sio
    from sklearn.neighbors import KNeighborsClassifier

    foreign = tmp_path / "foreign.skops"
    foreign.write_bytes(sio.dumps({"format": "netorigin-head", "version": 1, "kind": "reference", "info_json": "{}",
                                   "pipeline": KNeighborsClassifier()}))
    with pytest.raises(InputDataError, match="types a head never has"):
        load_head(foreign)
    (tmp_path / "junk.skops").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(InputDataError, match="not a netorigin head file"):
        load_head(tmp_path / "junk.skops")
