"""Head files that cannot run code: one skops zip per fitted head (a scikit-learn pipeline, or an attention-MIL head
as plain arrays), loaded with an explicit trusted-type list, an allow-list of the classes a head is made of, and a
shape check of every array libsvm reads (it does not bounds-check them). Old joblib pickles are refused with the
command that converts one the user trusts (`netorigin convert-head`)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

from netorigin.calibration.errors import InputDataError
from netorigin.runtime.atomic import write_bytes_atomic

from .mil import MIL_KINDS, MilConfig, MilHead

FORMAT = "netorigin-head"
VERSION = 1
# Types the head file may hold beyond skops' defaults (builtins, numpy arrays/dtypes, every sklearn estimator).
# Measured with skops.io.get_untrusted_types on all four sklearn heads and both MIL heads: nothing else is needed.
TRUSTED: list[str] = []
# Defence in depth: skops trusts every sklearn estimator by default; a head file may hold only these classes
# (checked on schema.json before skops builds anything). Names come from the classes, so a sklearn that moves
# them keeps working.
_ESTIMATORS = (Pipeline, PCA, SVC, LogisticRegression)
HEAD_TYPES = frozenset([f"{c.__module__}.{c.__qualname__}" for c in _ESTIMATORS] + [
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str",  # skops tags every JSON scalar "str"
    "numpy.ndarray", "numpy.float64", "numpy.int64"])
PICKLE_MESSAGE = ("is an old pickle (joblib) head file, which is no longer loaded (it could run code); convert one "
                  "you trust with: netorigin convert-head OLD.joblib -o NEW.skops")


def _mil_to_plain(head: MilHead) -> dict:
    """A MIL head as plain data: kind, config, training record and float32 arrays (no torch objects)."""
    return {"kind": head.kind, "config": asdict(head.config), "training_json": json.dumps(head.training),
            "state": {k: np.ascontiguousarray(v) for k, v in head.state.items()}}


def _mil_from_plain(d: dict) -> MilHead:
    """The MIL head back, sized from weights that match its config (never from what a file merely claims)."""
    defaults = asdict(MilConfig())
    config, state = d["config"], {str(k): np.asarray(v) for k, v in d["state"].items()}
    ok = (d["kind"] in MIL_KINDS and config.keys() == defaults.keys()
          and all(type(config[k]) is type(v) for k, v in defaults.items())
          and all(v.dtype == np.float32 for v in state.values()) and "reduce.weight" in state
          # the module is sized from the config: it must be the weights' size, not whatever a file claims
          and state["reduce.weight"].shape[0] == config["hidden"]
          and state.get("attention.0.weight", np.empty((0,))).shape[:1] == (config["attention"],)
          and (d["kind"] == "abmil" or state.get("patch.0.weight", np.empty((0,))).shape[:1]
               == (config["patch_hidden"],)))
    if not ok:
        raise ValueError("bad MIL head")
    head = MilHead(d["kind"], MilConfig(**config), state, json.loads(d["training_json"]))
    head.module()  # load_state_dict(strict) checks every name and shape now rather than at first use
    return head


def _check_pipeline(p: Pipeline) -> None:
    """libsvm indexes its arrays without bounds checks (a crafted dual_coef_/support_ reads out of bounds):
    every array the decision function reads must have the shape the fit gives it."""
    steps = [s for _, s in p.steps]
    if not (1 <= len(steps) <= 2 and isinstance(steps[-1], (SVC, LogisticRegression))
            and all(type(s) is PCA for s in steps[:-1]) and [n for n, _ in p.steps][-1] == "clf"):
        raise ValueError("unexpected pipeline steps")
    clf = steps[-1]
    if not np.array_equal(clf.classes_, [0, 1]):
        raise ValueError("classes")
    if isinstance(clf, SVC):
        n, d = clf.support_vectors_.shape
        want = {"support_": ((n,), np.int32), "support_vectors_": ((n, d), np.float64),
                "_n_support": ((2,), np.int32), "_dual_coef_": ((1, n), np.float64),
                "dual_coef_": ((1, n), np.float64), "_intercept_": ((1,), np.float64),
                "intercept_": ((1,), np.float64), "_probA": ((0,), np.float64), "_probB": ((0,), np.float64)}
        for name, (shape, dtype) in want.items():
            a = getattr(clf, name)
            if not (type(a) is np.ndarray and a.shape == shape and a.dtype == dtype and a.flags.c_contiguous):
                raise ValueError(name)
        if clf.kernel not in ("rbf", "linear") or clf._sparse or (clf._n_support < 0).any() \
                or clf._n_support.sum() != n or not np.isfinite(clf._gamma) or clf.n_features_in_ != d:
            raise ValueError("svc")
    elif not (clf.coef_.shape == (1, clf.n_features_in_) and clf.intercept_.shape == (1,)
              and clf.coef_.dtype == clf.intercept_.dtype == np.float64):
        raise ValueError("logistic")


def _types_in(node, acc: set[str] | None = None) -> set[str]:
    """Every class a skops schema names."""
    acc = set() if acc is None else acc
    if isinstance(node, dict):
        if "__class__" in node or "__module__" in node:
            acc.add(f"{node.get('__module__')}.{node.get('__class__')}")
        for v in node.values():
            _types_in(v, acc)
    elif isinstance(node, list):
        for v in node:
            _types_in(v, acc)
    return acc


def dumps_head(pipeline: Pipeline | MilHead, *, kind: str, info: dict) -> bytes:
    """One skops zip: format, version, kind, info as JSON, and the pipeline or the MIL head's plain arrays."""
    if isinstance(pipeline, MilHead):
        body = {"mil": _mil_to_plain(pipeline)}
    elif isinstance(pipeline, Pipeline):
        body = {"pipeline": pipeline}
    else:
        raise TypeError(f"cannot save a {type(pipeline).__name__} head")
    import skops.io as sio  # imports all of scikit-learn's estimators: only when a head file is written or read

    return sio.dumps({"format": FORMAT, "version": VERSION, "kind": kind, "info_json": json.dumps(info), **body})


def save_head(path: str | Path, pipeline: Pipeline | MilHead, *, kind: str, info: dict) -> None:
    """The fitted head with what export needs to check and describe it (embedder, cohort, patches/case)."""
    write_bytes_atomic(path, dumps_head(pipeline, kind=kind, info=info))


def load_head(path: str | Path) -> dict:
    """A head file, refused unless it holds exactly what a head holds: skops with an explicit trusted-type list,
    the classes a head is made of, and every array libsvm reads shaped as a fit shapes it."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputDataError("head file not found", path) from None
    if data[:1] == b"\x80":  # pickle protocol >= 2 (what joblib.dump writes uncompressed)
        raise InputDataError(PICKLE_MESSAGE, path)
    if data[:4] != b"PK\x03\x04":
        raise InputDataError("not a netorigin head file", path)
    import skops.io as sio

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            foreign = _types_in(json.loads(z.read("schema.json"))) - HEAD_TYPES
        if foreign:
            raise sio.exceptions.UntrustedTypesFoundException(foreign)
        raw = sio.loads(data, trusted=TRUSTED)
    except sio.exceptions.UntrustedTypesFoundException as exc:
        raise InputDataError(f"head file holds types a head never has ({exc})", path) from None
    except Exception as exc:  # BadZipFile, KeyError, JSONDecodeError, ValueError, TypeError, AttributeError ...
        raise InputDataError(f"not a netorigin head file ({type(exc).__name__})", path) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise InputDataError("not a netorigin head file (format/version)", path)
    try:
        if "mil" in raw:
            pipeline = _mil_from_plain(raw["mil"])
        else:
            pipeline = raw["pipeline"]
            if type(pipeline) is not Pipeline:
                raise ValueError("no pipeline")
            _check_pipeline(pipeline)
        return {"pipeline": pipeline, "kind": str(raw["kind"]), "info": json.loads(raw["info_json"])}
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as exc:  # RuntimeError: load_state_dict
        raise InputDataError(f"not a netorigin head file ({type(exc).__name__}: {str(exc)[:200]})", path) from None
