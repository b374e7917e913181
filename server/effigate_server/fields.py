"""The service's boundary: every field of every request is checked here before any work.

:func:`check_request` walks a request message by its descriptor (nested messages and repeated
fields included) and refuses, as an input error naming the field path and value:

- instants (``google.protobuf.Timestamp``) with nanos outside 0..999,999,999 or outside the
  engine's clock horizon (:data:`INSTANTS`, the engine's one accepted range
  :data:`effigate_engine.clock.HORIZON`, both ends included), and dates (``YYYY-MM-DD`` fields)
  that do not parse or fall outside it;
- enum numbers the API does not define;
- text with NUL or other control characters, or longer than its kind allows (:data:`LIMITS`);
- negative ids, and integers outside their documented range (page limits, day counts,
  amounts, durations);
- repeated fields with more elements than allowed.

Message sizes are checked earlier, when a request is decoded (see ``interceptors``). The
limits are documented in ``docs/service.md`` ("Limits").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from effigate_engine.clock import HORIZON
from effigate_engine.errors import EffigateError

_TIMESTAMP = "google.protobuf.Timestamp"
_NANOS = 1_000_000_000


@dataclass(frozen=True)
class InstantRange:
    """The instants the service accepts: ``[start, end]`` in epoch seconds (UTC), both ends
    included; a date must name a day that starts before ``end``."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{_iso_date(self.start)}..{_iso_date(self.end)}"

    def contains(self, seconds: int, nanos: int = 0) -> bool:
        return self.start <= seconds < self.end or (seconds == self.end and nanos == 0)

    @property
    def first_day(self) -> date:
        return datetime.fromtimestamp(self.start, UTC).date()

    @property
    def end_day(self) -> date:
        return datetime.fromtimestamp(self.end, UTC).date()


def _iso_date(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


#: The one accepted range of instants and dates: the engine's clock horizon (calendars are
#: compiled over it; an instant outside it cannot be evaluated).
INSTANTS = InstantRange(HORIZON.start, HORIZON.end)


@dataclass(frozen=True)
class Limits:
    """Length and count limits of request fields (characters, elements, bytes)."""

    #: ids (``id``, ``*_id``, ``*_ids``) given as text: ticket, event and time-log ids.
    id_chars: int = 200
    #: names, codes and other short text (client names, priorities, statuses, zones, …).
    text_chars: int = 200
    #: free text (a credit note's reason, a payment reference).
    note_chars: int = 2_000
    #: JSON documents (``*_json``: calendars, policies, rate cards, contract terms).
    json_chars: int = 1_048_576
    #: elements of a repeated field unless :data:`REPEATED` says otherwise.
    repeated: int = 10_000
    #: ``ListTickets.limit``: 0 means the default.
    page_default: int = 100
    page_max: int = 10_000
    #: a unary request's serialized size; streams take up to ``stream_message_bytes`` per
    #: message (each chunk), which is also the largest response.
    unary_message_bytes: int = 32 * 1024 * 1024
    stream_message_bytes: int = 256 * 1024 * 1024


LIMITS = Limits()

#: Free-text fields: tabs and line breaks allowed, longer limit.
NOTES = frozenset({"reason", "reference"})
#: Text fields with their own length limit (characters): a ticket's subject and requester.
FIELD_CHARS = {"subject": 1_000, "requester": 320}
#: Per-field element limits of repeated fields (others: ``LIMITS.repeated``).
#: ``log_ids``: approving a period's time logs names all of them (the message size bounds it).
REPEATED = {
    "group_by": 16,
    "pauses": 1_000,
    "amounts": 1_000,
    "log_ids": 1_000_000,
    "tags": 100,
    # event types to watch: each of the nine at most once or twice
    "types": 32,
}
#: Where bulk goes instead, for repeated fields of typed calls that have a streaming twin.
BULK = {"tickets": "use EvaluateStream for bulk", "logs": "use IngestTimeLogStream for bulk"}
#: Date fields (``YYYY-MM-DD`` text).
DATES = frozenset(
    {"starts_on", "ends_on", "effective_on", "on", "period_start", "period_from", "period_to"}
)
#: Integer fields with a range: ``name -> (low, high)``, both included.
_SPAN = INSTANTS.end - INSTANTS.start
RANGES: dict[str, tuple[int, int]] = {
    "limit": (0, LIMITS.page_max),
    "days": (0, 36_500),
    "due_days": (0, 3_650),
    "count": (0, 1_000_000_000),
    "business_seconds": (0, _SPAN),
    "amount_minor": (-(10**15), 10**15),
    "rate_card_version": (0, 2**31 - 1),
    "capacity": (0, 1_000_000),
    "proposed_version": (0, 2**31 - 1),
}

# C0 controls and DEL; free text may carry tab, line feed and carriage return.
_CONTROL = frozenset(chr(c) for c in [*range(0x20), 0x7F])
_NOTE_CONTROL = _CONTROL - {"\t", "\n", "\r"}


def _is_id(name: str) -> bool:
    return name == "id" or name.endswith(("_id", "_ids"))


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 60 else f"{text[:40]!r}… ({len(text):,} characters)"


def check_text(path: str, name: str, value: str) -> None:
    """Refuse control characters and over-long text in the string field ``name`` at ``path``."""
    if name.endswith("_json"):
        limit, bad = LIMITS.json_chars, frozenset({"\x00"})
    elif name in NOTES:
        limit, bad = LIMITS.note_chars, _NOTE_CONTROL
    elif _is_id(name):
        limit, bad = LIMITS.id_chars, _CONTROL
    else:
        limit, bad = FIELD_CHARS.get(name, LIMITS.text_chars), _CONTROL
    if len(value) > limit:
        raise EffigateError(f"{path}: {_shown(value)} is longer than {limit:,} characters")
    if not bad.isdisjoint(value):
        where = next(i for i, c in enumerate(value) if c in bad)
        raise EffigateError(
            f"{path}: {_shown(value)} has a control character (U+{ord(value[where]):04X} at"
            f" {where})"
        )
    if name in DATES and value:
        check_date(path, value)


def check_date(path: str, value: str) -> date:
    """An ISO date within :data:`INSTANTS`; anything else is an input error naming ``path``."""
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise EffigateError(f"{path}: {_shown(value)} is not a date (YYYY-MM-DD)") from exc
    if not INSTANTS.first_day <= day < INSTANTS.end_day:
        raise EffigateError(f"{path}: {value} is outside {INSTANTS}")
    return day


def check_instant(path: str, seconds: int, nanos: int) -> None:
    """Refuse a Timestamp whose nanos are out of range or whose instant is outside
    :data:`INSTANTS` (``seconds`` since the epoch, UTC)."""
    if not 0 <= nanos < _NANOS:
        raise EffigateError(f"{path}.nanos: {nanos} is outside 0..999999999")
    if not INSTANTS.contains(seconds, nanos):
        try:
            shown = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            shown = f"{seconds} seconds since 1970"
        raise EffigateError(f"{path}: {shown} is outside {INSTANTS}")


def check_integer(path: str, name: str, value: int) -> None:
    """Refuse negative ids and integers outside their range (:data:`RANGES`)."""
    bounds = RANGES.get(name)
    if bounds is None and _is_id(name):
        bounds = (0, 2**63 - 1)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        what = "an id (ids are positive)" if _is_id(name) else f"within {bounds[0]}..{bounds[1]}"
        raise EffigateError(f"{path}: {value} is not {what}")


def page_limit(path: str, value: int) -> int:
    """A page size: 0 is the default (:attr:`Limits.page_default`), 1..``page_max`` as given."""
    check_integer(path, "limit", value)
    return value or LIMITS.page_default


def _check_value(path: str, field: FieldDescriptor, value: Any) -> None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        check_message(value, path)
    elif kind == FieldDescriptor.TYPE_STRING:
        check_text(path, field.name, value)
    elif kind == FieldDescriptor.TYPE_ENUM:
        if value not in field.enum_type.values_by_number:
            raise EffigateError(f"{path}: {value} is not a {field.enum_type.name}")
    elif kind in _INTEGERS:
        check_integer(path, field.name, value)


_INTEGERS = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
    }
)


def check_message(message: Message, path: str = "") -> None:
    """Check every set field of ``message`` (recursively); ``path`` prefixes field names."""
    descriptor: Descriptor = message.DESCRIPTOR
    if descriptor.full_name == _TIMESTAMP:
        check_instant(path or "timestamp", message.seconds, message.nanos)  # type: ignore[attr-defined]
        return
    prefix = f"{path}." if path else ""
    for field, value in message.ListFields():
        where = prefix + field.name
        if field.is_repeated:
            limit = REPEATED.get(field.name, LIMITS.repeated)
            if len(value) > limit:
                hint = f"; {BULK[field.name]}" if field.name in BULK else ""
                raise EffigateError(
                    f"{where}: {len(value):,} elements is more than {limit:,}{hint}"
                )
            for i, item in enumerate(value):
                _check_value(f"{where}[{i}]", field, item)
        else:
            _check_value(where, field, value)


# The fast pass: one cached predicate per field, no paths built. Only a request it rejects
# is walked again by check_message, which finds the first bad field and names it.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f]")
_NOTE_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PREDICATES: dict[FieldDescriptor, Callable[[Any], bool]] = {}


def _valid_date(value: str) -> bool:
    try:
        check_date("", value)
    except EffigateError:
        return False
    return True


def _predicate(field: FieldDescriptor) -> Callable[[Any], bool]:
    name, kind = field.name, field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == _TIMESTAMP:
            inside = INSTANTS.contains
            return lambda ts: 0 <= ts.nanos < _NANOS and inside(ts.seconds, ts.nanos)
        return _valid
    if kind == FieldDescriptor.TYPE_STRING:
        if name.endswith("_json"):
            limit, bad = LIMITS.json_chars, re.compile("\x00")
        elif name in NOTES:
            limit, bad = LIMITS.note_chars, _NOTE_CONTROL_RE
        else:
            limit = LIMITS.id_chars if _is_id(name) else FIELD_CHARS.get(name, LIMITS.text_chars)
            bad = _CONTROL_RE
        if name in DATES:
            return lambda v: len(v) <= limit and not bad.search(v) and (not v or _valid_date(v))
        return lambda v: len(v) <= limit and not bad.search(v)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = frozenset(field.enum_type.values_by_number)
        return known.__contains__
    if kind in _INTEGERS:
        bounds = RANGES.get(name) or ((0, 2**63 - 1) if _is_id(name) else None)
        if bounds is not None:
            low, high = bounds
            return lambda v: low <= v <= high
    return lambda v: True


def _valid(message: Message) -> bool:
    for field, value in message.ListFields():
        check = _PREDICATES.get(field)
        if check is None:
            check = _PREDICATES.setdefault(field, _predicate(field))
        if field.is_repeated:
            if len(value) > REPEATED.get(field.name, LIMITS.repeated):
                return False
            if not all(map(check, value)):
                return False
        elif not check(value):
            return False
    return True


def check_request(message: Message) -> None:
    """Check a whole request (see the module docstring); raises :class:`EffigateError`."""
    if message.DESCRIPTOR.full_name == _TIMESTAMP or not _valid(message):
        check_message(message)
