"""What every HTTP route needs: the store, the token resolver, the call accounting, the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from effigate_engine.service import Store, wall_clock
from effigate_engine.service.evaluations import RulesetCache
from effigate_engine.service.tokens import TokenResolver


@dataclass
class WebContext:
    """Shared by the HTTP routes of one server.

    ``servicers`` maps a gRPC service's full name (``effigate.v1.TicketService``) to the
    servicer instance the gRPC port uses, so the Connect API runs the very same code.
    ``cors_origins``: origins allowed to call the Connect API from a browser (empty: none).
    """

    store: Store
    resolver: TokenResolver
    calls: Any
    cache: RulesetCache
    clock: wall_clock.WallClock
    servicers: dict[str, Any] = field(default_factory=dict)
    cors_origins: tuple[str, ...] = ()
    stopping: Any = None
