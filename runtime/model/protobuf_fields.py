"""Just enough protobuf wire format to read and rewrite an ONNX file's top-level fields.

The runtime must verify a model's content hash and read its metadata without the `onnx` package, and
calibration must replace metadata without re-serialising (and so possibly re-ordering) the graph.
ModelProto field 14 is `metadata_props`, a repeated StringStringEntryProto {1: key, 2: value}.
"""

from __future__ import annotations

from collections.abc import Iterator

METADATA_FIELD = 14
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class WireFormatError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireFormatError("varint too long")


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field number, record start, value start, end) for each top-level field."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        start = pos
        key, pos = _read_varint(view, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise WireFormatError("field number 0")
        if wire == _VARINT:
            value_start = pos
            _, pos = _read_varint(view, pos)
        elif wire == _FIXED64:
            value_start, pos = pos, pos + 8
        elif wire == _FIXED32:
            value_start, pos = pos, pos + 4
        elif wire == _LENGTH_DELIMITED:
            length, value_start = _read_varint(view, pos)
            pos = value_start + length
        else:
            raise WireFormatError(f"unsupported wire type {wire}")
        if pos > len(view):
            raise WireFormatError("truncated field")
        yield field, start, value_start, pos


def length_delimited(field: int, payload: bytes) -> bytes:
    return encode_varint((field << 3) | _LENGTH_DELIMITED) + encode_varint(len(payload)) + payload


def read_metadata(model_bytes: bytes) -> dict[str, str]:
    """The model's metadata_props as a dict; a key stored twice is refused (readers disagree on which wins)."""
    view = memoryview(model_bytes)
    props: dict[str, str] = {}
    for field, _, value_start, value_end in iter_fields(view):
        if field != METADATA_FIELD:
            continue
        entry = {1: "", 2: ""}
        for sub, _, sub_start, sub_end in iter_fields(view[value_start:value_end]):
            if sub in entry:
                entry[sub] = bytes(view[value_start + sub_start:value_start + sub_end]).decode("utf-8")
        if entry[1] in props:
            raise WireFormatError(f"metadata key {entry[1]!r} is stored twice")
        props[entry[1]] = entry[2]
    return props


def content_records(model_bytes: bytes) -> Iterator[memoryview]:
    """Every top-level record except metadata, in file order: what the content hash covers."""
    view = memoryview(model_bytes)
    for field, start, _, end in iter_fields(view):
        if field != METADATA_FIELD:
            yield view[start:end]


def replace_metadata(model_bytes: bytes, props: dict[str, str]) -> bytes:
    """The same model with its metadata_props replaced by `props`; every other byte is kept as is."""
    out = bytearray()
    for record in content_records(model_bytes):
        out += record
    for key, value in props.items():
        entry = length_delimited(1, key.encode("utf-8")) + length_delimited(2, value.encode("utf-8"))
        out += length_delimited(METADATA_FIELD, entry)
    return bytes(out)
