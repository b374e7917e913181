"""The descriptive fields of a ticket and their one normal form.

Every path that stores a ticket (create, events, bulk rows) normalises through these functions,
so a value is compared and matched the same way everywhere (SLA rules, routing, contract scope):

- ``support_level``: ``L1``/``L2``/``L3``/``SA`` (:data:`SUPPORT_LEVELS`), upper-cased;
- ``job_type``: free text, trimmed, 1..64 characters, compared exactly;
- ``channel``: ``EMAIL``/``PORTAL``/``PHONE``/``CHAT``/``MONITORING``/``API``, upper-cased;
- ``subject``: up to 1,000 characters (kept as given);
- ``requester``: an e-mail address ``local@domain`` (trimmed, up to 320 characters);
- ``queue``, ``assignee``: names, trimmed, 1..200 characters;
- ``asset``: free text, trimmed, up to 200 characters;
- ``tags``: each trimmed, 1..64 characters, without commas; sorted (by code point, the
  database's ``COLLATE "C"`` order), duplicates removed.

An empty text (after trimming) is "not set" (``None``); a value that cannot be normalised
raises :class:`~effigate_engine.errors.EffigateError` naming the field and the value. Lengths
are in characters (Unicode code points).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from effigate_engine.errors import EffigateError
from effigate_engine.sla.policy import SUPPORT_LEVELS

CHANNELS = ("EMAIL", "PORTAL", "PHONE", "CHAT", "MONITORING", "API")
JOB_TYPE_CHARS = 64
TAG_CHARS = 64
SUBJECT_CHARS = 1_000
REQUESTER_CHARS = 320
NAME_CHARS = 200
ASSET_CHARS = 200
#: Tags of one ticket at most.
MAX_TAGS = 100
#: What a normal requester matches (the database's check is the same).
REQUESTER_PATTERN = r"^\S+@[^@\s]+$"
_CONTROL = frozenset(chr(c) for c in [*range(0x20), 0x7F])


class FieldError(EffigateError):
    """A ticket field's value has no normal form: ``field`` names it, ``problem`` says why."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {value!r} {problem}")


def _text(field: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if len(text) > limit:
        raise FieldError(field, _Shown(text), f"is longer than {limit:,} characters")
    if not _CONTROL.isdisjoint(text):
        raise FieldError(field, _Shown(text), "has a control character")
    return text


class _Shown(str):
    """A long text shown by its start and length."""

    def __repr__(self) -> str:
        text = str(self)
        if len(text) <= 60:
            return repr(text)
        return f"{text[:40]!r}… ({len(text):,} characters)"


def support_level(value: str | None, field: str = "support_level") -> str | None:
    """``L1``/``L2``/``L3``/``SA`` (case-insensitive on input), or ``None`` when empty."""
    text = _text(field, value, 8)
    if text is None:
        return None
    level = text.upper()
    if level not in SUPPORT_LEVELS:
        raise FieldError(field, text, f"is not one of {', '.join(SUPPORT_LEVELS)}")
    return level


def job_type(value: str | None, field: str = "job_type") -> str | None:
    """A job type, trimmed (1..64 characters), or ``None`` when empty."""
    return _text(field, value, JOB_TYPE_CHARS)


def channel(value: str | None, field: str = "channel") -> str | None:
    """One of :data:`CHANNELS` (case-insensitive on input), or ``None`` when empty."""
    text = _text(field, value, 16)
    if text is None:
        return None
    name = text.upper()
    if name not in CHANNELS:
        raise FieldError(field, text, f"is not one of {', '.join(CHANNELS)}")
    return name


def subject(value: str | None, field: str = "subject") -> str | None:
    """A subject line of up to 1,000 characters (line breaks and tabs refused), or ``None``."""
    return _text(field, value, SUBJECT_CHARS)


def requester(value: str | None, field: str = "requester") -> str | None:
    """An e-mail address ``local@domain`` (up to 320 characters), or ``None`` when empty."""
    text = _text(field, value, REQUESTER_CHARS)
    if text is None:
        return None
    if not re.match(REQUESTER_PATTERN, text, re.ASCII):
        raise FieldError(field, text, "is not an e-mail address (local@domain)")
    return text


def name(value: str | None, field: str) -> str | None:
    """A queue or agent name, trimmed (1..200 characters), or ``None`` when empty."""
    return _text(field, value, NAME_CHARS)


def asset(value: str | None, field: str = "asset") -> str | None:
    """An asset reference (free text, up to 200 characters), or ``None`` when empty."""
    return _text(field, value, ASSET_CHARS)


def tags(values: Iterable[str] | None, field: str = "tags") -> list[str]:
    """The tag set: each trimmed (1..64 characters, no comma), sorted, duplicates removed."""
    found: set[str] = set()
    for i, value in enumerate(values or ()):
        tag = _text(f"{field}[{i}]", value, TAG_CHARS)
        if tag is None:
            raise FieldError(f"{field}[{i}]", value, "is empty")
        if "," in tag:
            raise FieldError(f"{field}[{i}]", tag, "has a comma (tags are comma-joined)")
        found.add(tag)
    if len(found) > MAX_TAGS:
        raise FieldError(field, len(found), f"tags is more than {MAX_TAGS}")
    return sorted(found)


def tags_detail(values: Iterable[str]) -> str:
    """A tag set (normal form) as a ``TAGS_CHANGED`` event's detail: comma-joined."""
    return ",".join(values)


def tags_of_detail(detail: str | None) -> list[str]:
    """The tag set a ``TAGS_CHANGED`` detail names (empty detail: no tags)."""
    return sorted({t for t in (detail or "").split(",") if t})
