"""SlaService and ReportService: typed and Arrow-stream evaluation, recompute, reports."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pyarrow as pa
import pyarrow.compute as pc

from effigate.v1 import common_pb2
from effigate.v1 import sla_pb2 as pb
from effigate.v1 import sla_pb2_grpc as rpc
from effigate_engine import sla
from effigate_engine.errors import EffigateError
from effigate_engine.service import Store, evaluations
from effigate_engine.service.evaluations import RulesetCache
from effigate_engine.sla import few
from effigate_engine.sla.screening import evaluate_rows, unmatched_rows
from effigate_server.convert import optional_datetime, read_ipc, timestamp, write_ipc
from effigate_server.errors import guarded
from effigate_server.interceptors import current_principal
from effigate_server.metrics import TICKETS_EVALUATED
from effigate_server.sla_results import metric_messages, metric_statuses, ticket_failures

#: Result chunks of the Arrow stream travel uncompressed: measured on loopback, LZ4 cost more
#: time than the bytes it saved (docs/service.md, *Arrow streams*). A compressed chunk sent by a
#: client is read transparently.
RESULT_COMPRESSION = None
#: Chunks of one stream in flight at once (decoding, evaluating, encoding) besides the one
#: being sent.
STREAM_PIPELINE = 2
#: Typed evaluation is for small batches; bulk goes through EvaluateStream.
MAX_TYPED_TICKETS = 10_000


def tickets_table(inputs: list[pb.TicketInput]) -> pa.Table:
    """The ``sla.TICKETS`` batch of typed ticket inputs."""
    rows = []
    for i, t in enumerate(inputs):
        if not t.HasField("created_at"):
            raise EffigateError(f"tickets[{i}].created_at: is required (ticket {t.ticket_id!r})")
        rows.append(
            {
                "ticket_id": t.ticket_id,
                "priority": t.priority,
                "created_at": optional_datetime(t, "created_at"),
                "first_response_at": optional_datetime(t, "first_response_at"),
                "resolution_plan_at": optional_datetime(t, "resolution_plan_at"),
                "resolved_at": optional_datetime(t, "resolved_at"),
                "pauses": [
                    {
                        "start": optional_datetime(p, "start"),
                        "end": optional_datetime(p, "end"),
                        "status": p.status,
                    }
                    for p in t.pauses
                ],
                "client_id": t.client_id or None,
                "contract_id": t.contract_id or None,
                "support_level": t.support_level or None,
                "job_type": t.job_type or None,
                "after_hours": t.after_hours,
                "assignee": t.assignee or None,
            }
        )
    return pa.Table.from_pylist(rows, schema=sla.TICKETS)


#: Typed evaluations of at most this many tickets go through :mod:`effigate_engine.sla.few`
#: (plain values, no Arrow); larger ones through the Arrow batch path, cheaper per ticket.
FEW_TICKETS = 64


def ticket_values(inputs: list[pb.TicketInput]) -> list[few.TicketValues] | None:
    """The typed ticket inputs as plain values (instants in epoch seconds: a Timestamp's
    ``seconds``, its nanos being checked non-negative at the boundary); ``None`` when there
    are more than :data:`FEW_TICKETS`, or one has no ``created_at`` or a pause no ``start``
    (:func:`tickets_table` refuses those first)."""
    if len(inputs) > FEW_TICKETS:
        return None
    out = []
    for t in inputs:
        if not t.HasField("created_at") or not all(p.HasField("start") for p in t.pauses):
            return None
        out.append(
            few.TicketValues(
                t.ticket_id,
                t.priority,
                t.created_at.seconds,
                t.first_response_at.seconds if t.HasField("first_response_at") else None,
                t.resolution_plan_at.seconds if t.HasField("resolution_plan_at") else None,
                t.resolved_at.seconds if t.HasField("resolved_at") else None,
                [
                    (
                        p.start.seconds,
                        p.end.seconds if p.HasField("end") else None,
                        p.status,
                    )
                    for p in t.pauses
                ],
                t.client_id or None,
                t.support_level or None,
                t.job_type or None,
                t.after_hours,
            )
        )
    return out


def row_errors(rejected: pa.Table, offset: int = 0) -> list[common_pb2.RowError]:
    """Typed messages of rejected rows (``REJECTED_ROWS``), positions shifted by ``offset``."""
    return [
        common_pb2.RowError(
            row=offset + r["row"], id=r["ticket_id"] or "", field=r["field"], message=r["message"]
        )
        for r in rejected.to_pylist()
    ]


def _now(message: object) -> datetime:
    return optional_datetime(message, "now") or datetime.now(UTC).replace(microsecond=0)


class SlaServicer(rpc.SlaServiceServicer):
    def __init__(self, store: Store, cache: RulesetCache) -> None:
        self.store = store
        self.cache = cache

    @guarded
    async def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvaluateResponse:
        if len(request.tickets) > MAX_TYPED_TICKETS:
            raise EffigateError(
                f"tickets: {len(request.tickets)} tickets is more than {MAX_TYPED_TICKETS};"
                " use EvaluateStream for bulk"
            )
        principal = current_principal()
        principal.require_staff("evaluate tickets it does not store")
        now = _now(request)
        inputs = list(request.tickets)
        values = ticket_values(inputs)
        if values is None:
            table = tickets_table(inputs)  # raises for a ticket without created_at
        rules = await evaluations.ruleset_for(self.store, self.cache, principal, request.policy_id)
        if values is not None:
            rows = few.evaluate_values(values, rules.policy, rules.calendars, few.seconds(now))
            if rows is not None:
                TICKETS_EVALUATED.inc(len(values))
                response = pb.EvaluateResponse(now=timestamp(now))
                metric_messages(
                    rows, rules.policy_version, rules.calendar_versions, response.results
                )
                return response
            table = tickets_table(inputs)
        evaluation = rules.stamp(sla.evaluate(table, rules.policy, rules.calendars, now))
        TICKETS_EVALUATED.inc(table.num_rows)
        unmatched = [
            pb.Unmatched(ticket_id=r["ticket_id"], reason=r["reason"])
            for r in evaluation.unmatched.to_pylist()
        ]
        return pb.EvaluateResponse(
            results=metric_statuses(evaluation.results), unmatched=unmatched, now=timestamp(now)
        )

    @guarded
    async def EvaluateStream(
        self, request_iterator: AsyncIterator[pb.EvaluateChunk], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EvaluateChunk]:
        principal = current_principal()
        principal.require_staff("evaluate tickets it does not store")
        rules: evaluations.Ruleset | None = None
        now: datetime | None = None
        position = 0
        answered_rows = 0  # rows of the chunks answered so far: the next chunk's first row
        pending: deque[asyncio.Future[tuple[bytes, pa.Table, int]]] = deque()
        sequences: deque[int] = deque()

        def evaluate(
            table_bytes: bytes, where: str, ruleset: evaluations.Ruleset
        ) -> tuple[bytes, pa.Table, int]:
            table = read_ipc(where, table_bytes)
            # rows that cannot be evaluated are set aside and reported, the rest evaluated
            screened = evaluate_rows(
                table, ruleset.policy, ruleset.calendars, now, check_priority=True
            )
            TICKETS_EVALUATED.inc(screened.evaluation.tickets.num_rows)
            rejected = pa.concat_tables([screened.rejected, unmatched_rows(screened)])
            payload = write_ipc(ruleset.stamp(screened.evaluation).results, RESULT_COMPRESSION)
            return payload, rejected.sort_by("row"), table.num_rows

        async def answer() -> pb.EvaluateChunk:
            nonlocal answered_rows
            payload, rejected, rows = await pending.popleft()
            reply = pb.EvaluateChunk(
                arrow_ipc=payload,
                sequence=sequences.popleft(),
                rejected=row_errors(rejected, answered_rows),
            )
            answered_rows += rows
            return reply

        try:
            async for chunk in request_iterator:
                if rules is None:
                    if not chunk.policy_id:
                        raise EffigateError("chunk[0].policy_id: is required in the first chunk")
                    rules = await evaluations.ruleset_for(
                        self.store, self.cache, principal, chunk.policy_id
                    )
                    now = _now(chunk)
                # chunks are decoded, evaluated and encoded in worker threads (the kernels and
                # Arrow release the GIL) while earlier results are sent and later chunks arrive
                work = asyncio.to_thread(
                    evaluate, chunk.arrow_ipc, f"chunk[{position}].arrow_ipc", rules
                )
                pending.append(asyncio.ensure_future(work))
                sequences.append(chunk.sequence)
                position += 1
                while len(pending) > STREAM_PIPELINE or (pending and pending[0].done()):
                    yield await answer()
            while pending:
                yield await answer()
        finally:
            for future in pending:
                future.cancel()

    @guarded
    async def Recompute(
        self, request: pb.RecomputeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecomputeResponse:
        outcome = await evaluations.recompute(
            self.store,
            self.cache,
            current_principal(),
            request.policy_id,
            optional_datetime(request, "now"),
            request.client_id if request.HasField("client_id") else None,
        )
        TICKETS_EVALUATED.inc(outcome.tickets)
        return pb.RecomputeResponse(
            tickets=outcome.tickets,
            counts=[pb.StatusCount(metric=m, status=s, count=c) for m, s, c in outcome.counts],
            new_breaches=outcome.new_breaches,
            now=timestamp(outcome.now),
            failed_count=outcome.failures.num_rows,
            failed=ticket_failures(outcome.failures),
        )


def _report(report: evaluations.StoredReport) -> common_pb2.ReportTable:
    # dictionary columns become plain strings: reports are small and read by any Arrow reader
    table = report.table
    columns = [
        pc.cast(c, pa.string()) if pa.types.is_dictionary(c.type) else c for c in table.columns
    ]
    return common_pb2.ReportTable(
        arrow_ipc=write_ipc(pa.table(columns, names=table.column_names)),
        failed_count=report.failures.num_rows,
        failed=ticket_failures(report.failures),
    )


class ReportServicer(rpc.ReportServiceServicer):
    def __init__(self, store: Store, cache: RulesetCache) -> None:
        self.store = store
        self.cache = cache

    def _client(self, request: pb.ReportRequest | pb.ReplayRequest) -> int | None:
        return request.client_id if request.HasField("client_id") else None

    @guarded
    async def Compliance(
        self, request: pb.ReportRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ReportTable:
        table = await evaluations.compliance(
            self.store,
            self.cache,
            current_principal(),
            request.policy_id,
            list(request.group_by) or ["priority"],
            request.period or None,
            optional_datetime(request, "now"),
            self._client(request),
        )
        return _report(table)

    @guarded
    async def Percentiles(
        self, request: pb.ReportRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ReportTable:
        table = await evaluations.percentiles(
            self.store,
            self.cache,
            current_principal(),
            request.policy_id,
            list(request.group_by) or ["priority"],
            optional_datetime(request, "now"),
            self._client(request),
        )
        return _report(table)

    @guarded
    async def RecommendedTargets(
        self, request: pb.ReportRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ReportTable:
        table = await evaluations.recommended_targets(
            self.store,
            self.cache,
            current_principal(),
            request.policy_id,
            request.days or 90,
            optional_datetime(request, "now"),
            self._client(request),
        )
        return _report(table)

    @guarded
    async def Replay(
        self, request: pb.ReplayRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ReportTable:
        if request.HasField("proposed_policy_id"):
            proposed: int | dict = request.proposed_policy_id
        else:
            try:
                proposed = json.loads(request.proposed_policy_json or "null")
            except json.JSONDecodeError as exc:
                raise EffigateError(f"proposed_policy_json: is not valid JSON ({exc.msg})") from exc
            if not isinstance(proposed, dict):
                raise EffigateError(
                    "proposed_policy_id / proposed_policy_json: one is required (a stored policy"
                    " id or a policy JSON object)"
                )
        table = await evaluations.replay(
            self.store,
            self.cache,
            current_principal(),
            request.current_policy_id,
            proposed,
            list(request.group_by) or ["priority"],
            optional_datetime(request, "now"),
            self._client(request),
        )
        return _report(table)
