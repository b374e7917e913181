"""The operations dashboard of a staff token: the tenant's SLA standing at one instant, the
at-risk tickets, compliance, agents' workload, prepaid buckets and invoices (docs/screens.md).

The page only translates: every number comes from a service-layer function the API uses too.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from effigate_engine.errors import EffigateError
from effigate_engine.service import catalog, evaluations, routing, screens
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import NotFound
from effigate_server.web import charts
from effigate_server.web.context import WebContext
from effigate_server.web.render import page
from effigate_server.web.session import signed_in

#: Rows of the at-risk list shown (the total is always given).
AT_RISK_ROWS = 50
#: Days of the compliance period when none is asked for (ending on the dashboard's date).
DEFAULT_DAYS = 30


def parse_at(text: str | None, default: datetime) -> datetime:
    """The ``at`` query parameter (ISO 8601 with a zone, e.g. ``2026-12-07T10:00:00Z``), or
    ``default``; a bad value is an :class:`EffigateError` naming ``at`` and the value."""
    if text is None or text == "":
        return default
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "+"))
    except ValueError:
        raise EffigateError(
            f"at: {text!r} is not an ISO 8601 instant (e.g. 2026-12-07T10:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise EffigateError(f"at: {text!r} has no time zone (add Z or an offset such as +10:00)")
    return value.astimezone(UTC).replace(microsecond=0)


def _policy(text: str | None) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise EffigateError(f"policy: {text!r} is not a policy id (a whole number)")
    return int(text)


async def _view(ctx: WebContext, request: Request, principal: Principal) -> dict[str, Any]:
    params = request.query_params
    pinned = params.get("at")
    at = parse_at(pinned, ctx.clock.now().astimezone(UTC).replace(microsecond=0))
    start, end = screens.parse_dates(params.get("from"), params.get("to"), at, DEFAULT_DAYS)
    await screens.check_instant(ctx.store, ctx.cache, principal, at)
    policy_id = _policy(params.get("policy")) or await screens.default_policy(ctx.store, principal)
    standings, names, workload, burns, invoices, compliance, policies = await asyncio.gather(
        screens.open_standings(ctx.store, ctx.cache, principal, at),
        screens.client_names(ctx.store, principal),
        routing.agent_workload(ctx.store, ctx.cache, principal, at),
        screens.burn_downs(ctx.store, principal, at),
        screens.invoice_states(ctx.store, principal),
        _compliance(ctx, principal, policy_id, start, end, at),
        catalog.list_policies(ctx.store, principal),
    )
    risky = standings.at_risk()
    agents, _, workload_failures = workload
    compliance_charts = {}
    if compliance is not None:
        compliance_charts = {
            "priority": charts.bar_chart(
                "chart-priority",
                f"SLA compliance by priority, {start} to {end}",
                [_bar(r.key, r) for r in compliance.by_priority],
            ),
            "client": charts.bar_chart(
                "chart-client",
                f"SLA compliance by client, {start} to {end}",
                [_bar(names.get(int(r.key), r.key), r) for r in compliance.by_client],
            ),
        }
    bucket_charts = [
        (
            b,
            charts.step_chart(
                f"chart-bucket-{b.contract_id}",
                f"Prepaid bucket of contract {b.contract_id}"
                f" ({names.get(b.client_id, b.client_id)}): remaining hours over time",
                b.points,
                b.funded_seconds,
            ),
        )
        for b in burns
    ]
    return {
        "principal": principal,
        "live": True,
        "at": at,
        "pinned": bool(pinned),
        "start": start,
        "end": end,
        "policy_id": policy_id,
        "policies": [(p.id, p.name) for p in policies],
        "standings": standings,
        "counts": standings.counts(),
        "at_risk": risky[:AT_RISK_ROWS],
        "at_risk_total": len(risky),
        "names": names,
        "agents": [a for a in agents if a.open_tickets or a.active],
        "workload_failures": workload_failures.num_rows,
        "compliance": compliance,
        "compliance_charts": compliance_charts,
        "buckets": bucket_charts,
        "invoices": invoices,
    }


def _bar(label: str, row: screens.ComplianceRow) -> charts.Bar:
    rate = "no metric decided" if row.hit_rate is None else f"{row.hit_rate * 100:.1f}% met"
    return charts.Bar(
        label, row.hit_rate, f"{label}: {rate} ({row.met} met, {row.breached} breached)"
    )


async def _compliance(
    ctx: WebContext, principal: Principal, policy_id: int | None, start: Any, end: Any, at: datetime
) -> screens.Compliance | None:
    if policy_id is None:
        return None
    return await screens.compliance(ctx.store, ctx.cache, principal, policy_id, start, end, at)


def _refused(request: Request, principal: Principal, exc: EffigateError, status: int) -> Response:
    return page(
        request, "dashboard_error.html", status_code=status, principal=principal, error=str(exc)
    )


def routes(ctx: WebContext) -> list[BaseRoute]:
    """``/dashboard`` and ``/dashboard/tickets/{ticket_id}`` (staff tokens only)."""

    @signed_in(ctx, portal=False)
    async def dashboard(request: Request, principal: Principal) -> Response:
        try:
            values = await _view(ctx, request, principal)
        except NotFound as exc:
            return _refused(request, principal, exc, 404)
        except EffigateError as exc:
            return _refused(request, principal, exc, 400)
        return page(request, "dashboard.html", **values)

    @signed_in(ctx, portal=False)
    async def ticket(request: Request, principal: Principal) -> Response:
        ticket_id = request.path_params["ticket_id"]
        try:
            at = parse_at(
                request.query_params.get("at"),
                ctx.clock.now().astimezone(UTC).replace(microsecond=0),
            )
            record, evaluation = await evaluations.ticket_status(
                ctx.store, ctx.cache, principal, ticket_id, None, at
            )
            names = await screens.client_names(ctx.store, principal)
        except NotFound as exc:
            return _refused(request, principal, exc, 404)
        except EffigateError as exc:
            return _refused(request, principal, exc, 400)
        return page(
            request,
            "dashboard_ticket.html",
            principal=principal,
            live=True,
            at=at,
            ticket=record,
            client=names.get(record.client_id, str(record.client_id)),
            metrics=evaluation.results.to_pylist(),
        )

    return [
        Route("/dashboard", dashboard),
        Route("/dashboard/tickets/{ticket_id:path}", ticket),
    ]
