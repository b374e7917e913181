"""Conversions between protobuf messages and domain values (instants, dates, JSON bodies,
Arrow IPC)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
from google.protobuf.timestamp_pb2 import Timestamp

from effigate_engine.errors import EffigateError


def to_datetime(ts: Timestamp) -> datetime:
    """An aware UTC datetime from a Timestamp (microsecond precision)."""
    return datetime.fromtimestamp(ts.seconds, UTC).replace(microsecond=ts.nanos // 1000)


def optional_datetime(message: object, name: str) -> datetime | None:
    """The Timestamp field ``name`` of ``message`` as a datetime, or None when unset."""
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    return to_datetime(getattr(message, name))


def required_datetime(message: object, name: str) -> datetime:
    """The Timestamp field ``name``; an unset field is an input error naming it."""
    value = optional_datetime(message, name)
    if value is None:
        raise EffigateError(f"{name}: is required (a timestamp)")
    return value


def timestamp(value: datetime | None) -> Timestamp | None:
    """A Timestamp from an aware datetime (None stays None)."""
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def to_date(field: str, value: str, required: bool = True) -> date | None:
    """An ISO date ``YYYY-MM-DD``; empty is None unless required."""
    if not value:
        if required:
            raise EffigateError(f"{field}: is required (YYYY-MM-DD)")
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise EffigateError(f"{field}: {value!r} is not a date (YYYY-MM-DD)") from exc


def read_ipc(field: str, data: bytes) -> pa.Table:
    """An Arrow table from IPC stream bytes; malformed bytes are an input error naming the
    field."""
    if not data:
        raise EffigateError(f"{field}: is empty (an Arrow IPC stream is required)")
    try:
        with pa.ipc.open_stream(data) as reader:
            return reader.read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise EffigateError(f"{field}: is not an Arrow IPC stream ({exc})") from exc


def write_ipc(table: pa.Table, compression: str | None = None) -> bytes:
    """Arrow IPC stream bytes of ``table`` (buffers compressed with ``lz4``/``zstd`` if asked)."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def body(field: str, text: str) -> dict[str, Any]:
    """A JSON object from a ``*_json`` field; anything else is an input error naming it."""
    try:
        value = json.loads(text) if text else None
    except json.JSONDecodeError as exc:
        raise EffigateError(f"{field}: is not valid JSON ({exc.msg} at {exc.pos})") from exc
    if not isinstance(value, dict):
        raise EffigateError(f"{field}: {text[:60]!r} is not a JSON object")
    return value
