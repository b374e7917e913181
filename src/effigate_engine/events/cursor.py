"""A position in a tenant's event stream, and the opaque cursor text callers hold.

Events are read in ``(xid, seq)`` order: ``xid`` is the transaction that wrote the event (a
64-bit transaction id, ``xid8``), ``seq`` its insert number. ``seq`` alone is insert order, not
commit order: a transaction that inserted first may commit last, so a reader that resumed
after the largest ``seq`` it saw would skip that transaction's events. Ordered by ``xid``
first, and reading only transactions older than every one still running, a reader never sees
a position appear behind one it has already passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from effigate_engine.errors import EffigateError

_TEXT = re.compile(r"^([0-9]{1,20})\.([0-9]{1,19})$")
_MAX_XID: Final = 2**64 - 1
_MAX_SEQ: Final = 2**63 - 1


class CursorError(EffigateError):
    """A cursor text that is not ``<xid>.<seq>`` (two non-negative decimal integers)."""


@dataclass(frozen=True, order=True)
class Cursor:
    """The position of one event: the writing transaction ``xid`` (``xid8``), then ``seq``.
    ``Cursor.START`` precedes every event."""

    xid: int
    seq: int

    def __post_init__(self) -> None:
        if not 0 <= self.xid <= _MAX_XID:
            raise CursorError(f"cursor xid {self.xid} is outside 0..{_MAX_XID}")
        if not 0 <= self.seq <= _MAX_SEQ:
            raise CursorError(f"cursor seq {self.seq} is outside 0..{_MAX_SEQ}")

    def __str__(self) -> str:
        return f"{self.xid}.{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """The cursor of ``text`` (``"<xid>.<seq>"``; ``""`` is :attr:`START`); raises
        :class:`CursorError` naming the text otherwise."""
        if text == "":
            return START
        match = _TEXT.match(text)
        if match is None:
            raise CursorError(f"cursor {text!r} is not of the form '<xid>.<seq>'")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def before_transaction(cls, xid: int) -> Cursor:
        """The cursor after every event of transactions older than ``xid`` and before every
        event of ``xid`` and younger ones (``xid`` >= 1)."""
        return cls(xid - 1, _MAX_SEQ)


#: Before every event.
START: Final = Cursor(0, 0)
