"""The JSON commands of Flight calls: a ``DoExchange``/``DoPut`` descriptor's ``command`` and a
``DoGet`` ticket, each a UTF-8 JSON object naming its ``op`` and that operation's fields.

A command that is not a JSON object, names an unknown ``op``, lacks a required field, carries
a field of the wrong type or a field the operation does not know is refused with
``INVALID_ARGUMENT`` naming the field (``descriptor.command.policy_id: ...``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from effigate_engine.errors import EffigateError

#: Each operation's fields: name -> (kind, required). Kinds: ``int`` (a positive integer),
#: ``instant`` (ISO 8601 text with an offset), ``text``, ``texts`` (a list of text), ``bool``.
OPERATIONS: dict[str, dict[str, dict[str, tuple[str, bool]]]] = {
    "exchange": {
        "evaluate": {"policy_id": ("int", True), "now": ("instant", False)},
    },
    "put": {
        "tickets": {"skip_invalid_rows": ("bool", False)},
        "ticket_events": {"skip_invalid_rows": ("bool", False)},
        "time_logs": {"skip_invalid_rows": ("bool", False)},
    },
    "get": {
        "sla_results": {
            "policy_id": ("int", True),
            "now": ("instant", False),
            "client_id": ("int", False),
        },
        "invoice_lines": {"invoice_id": ("int", True)},
        "compliance": {
            "policy_id": ("int", True),
            "group_by": ("texts", False),
            "period": ("text", False),
            "now": ("instant", False),
            "client_id": ("int", False),
        },
        "percentiles": {
            "policy_id": ("int", True),
            "group_by": ("texts", False),
            "now": ("instant", False),
            "client_id": ("int", False),
        },
        "recommended_targets": {
            "policy_id": ("int", True),
            "days": ("int", False),
            "now": ("instant", False),
            "client_id": ("int", False),
        },
    },
}


@dataclass(frozen=True)
class Command:
    """A parsed command: its operation and its fields (absent optional fields are absent)."""

    op: str
    fields: dict[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        """The field ``name`` (``default`` when absent)."""
        return self.fields.get(name, default)


def _value(where: str, name: str, kind: str, value: Any) -> Any:
    path = f"{where}.{name}"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise EffigateError(f"{path}: {value!r} is not a positive integer")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise EffigateError(f"{path}: {value!r} is not true or false")
        return value
    if kind == "text":
        if not isinstance(value, str):
            raise EffigateError(f"{path}: {value!r} is not text")
        return value
    if kind == "texts":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise EffigateError(f"{path}: {value!r} is not a list of text")
        return value
    # an instant
    if not isinstance(value, str):
        raise EffigateError(f"{path}: {value!r} is not an ISO 8601 instant")
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise EffigateError(
            f"{path}: {value!r} is not an ISO 8601 instant (2026-11-19T14:00:00+00:00)"
        ) from None
    if instant.tzinfo is None:
        raise EffigateError(f"{path}: {value!r} has no UTC offset (add +00:00 or Z)")
    return instant.astimezone(UTC)


def parse(where: str, data: bytes, call: str) -> Command:
    """The command of a ``call`` (``exchange``, ``put``, ``get``) from the JSON bytes found at
    ``where`` (``descriptor.command`` or ``ticket``)."""
    operations = OPERATIONS[call]
    known = ", ".join(sorted(operations))
    try:
        body = json.loads(data.decode("utf-8")) if data else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EffigateError(
            f'{where}: is not a UTF-8 JSON object ({exc}); send e.g. {{"op": ...}}'
        ) from None
    if not isinstance(body, dict):
        raise EffigateError(f"{where}: {data[:60]!r} is not a JSON object with an op ({known})")
    op = body.get("op")
    if op not in operations:
        raise EffigateError(f"{where}.op: {op!r} is not one of {known}")
    spec = operations[op]
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if name == "op":
            continue
        if name not in spec:
            raise EffigateError(
                f"{where}.{name}: is not a field of {op!r} (fields: {', '.join(spec) or 'none'})"
            )
        if value is not None:
            fields[name] = _value(where, name, spec[name][0], value)
    for name, (_, required) in spec.items():
        if required and name not in fields:
            raise EffigateError(f"{where}.{name}: is required for {op!r}")
    return Command(op, fields)
