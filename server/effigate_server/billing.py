"""RateCardService, ContractService, TimeLogService and BillingService."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pyarrow as pa

from effigate.v1 import billing_pb2 as pb
from effigate.v1 import billing_pb2_grpc as rpc
from effigate.v1 import common_pb2
from effigate_engine.billing.invoice import Invoice
from effigate_engine.errors import EffigateError
from effigate_engine.service import (
    Store,
    billing_replay,
    buckets,
    contracts,
    invoicing,
    payments,
    timelogs,
)
from effigate_engine.service.buckets import BucketBalance
from effigate_engine.service.contracts import ContractRecord
from effigate_engine.service.invoicing import InvoiceRecord
from effigate_engine.service.timelogs import SUBMITTED_TIME_LOGS, PeriodRecord
from effigate_server.convert import (
    body,
    optional_datetime,
    read_ipc,
    timestamp,
    to_date,
    write_ipc,
)
from effigate_server.errors import guarded
from effigate_server.interceptors import current_principal
from effigate_server.metrics import TIME_LOGS_CLASSIFIED, TIME_LOGS_INGESTED
from effigate_server.streams import gather_stream, ingest_summary


def _optional(request: object, name: str) -> int | None:
    return getattr(request, name) if request.HasField(name) else None  # type: ignore[attr-defined]


def contract_message(record: ContractRecord) -> pb.Contract:
    """The proto of a stored contract."""
    message = pb.Contract(
        id=record.id,
        client_id=record.client_id,
        contract_type=record.contract_type,
        status=record.status,
        currency=record.currency,
        time_zone=record.time_zone,
        starts_on=record.starts_on.isoformat(),
        ends_on=record.ends_on.isoformat() if record.ends_on else "",
        frozen_rate_card_sha256=record.frozen_rate_card_sha256 or "",
        terms_json=json.dumps(record.terms, sort_keys=True),
    )
    for name in ("calendar_id", "sla_policy_id", "rate_card_id", "frozen_rate_card_version"):
        value = getattr(record, name)
        if value is not None:
            setattr(message, name, value)
    if record.activated_at is not None:
        message.activated_at.CopyFrom(timestamp(record.activated_at))
    return message


def invoice_message(record: InvoiceRecord) -> pb.Invoice:
    """The proto of a stored invoice, with its lines and tax components."""
    message = pb.Invoice(
        id=record.id,
        contract_id=record.contract_id,
        number=record.number or 0,
        status=record.status,
        currency=record.currency,
        subtotal_minor=record.subtotal_minor,
        tax_minor=record.tax_minor,
        total_minor=record.total_minor,
        period_start=record.period_start.isoformat(),
        period_end=record.period_end.isoformat(),
        credit_balance_minor=record.credit_balance_minor,
        paid_minor=record.paid_minor,
        text=record.text,
        lines=[
            pb.InvoiceLine(
                id=line.id,
                position=line.position,
                kind=line.kind,
                description=line.description,
                time_condition=line.time_condition or "",
                support_level=line.support_level or "",
                job_type=line.job_type or "",
                rate_minor_per_hour=line.rate_minor_per_hour or 0,
                rate_card_version=line.rate_card_version or 0,
                actual_seconds=line.actual_seconds or 0,
                billed_seconds=line.billed_seconds or 0,
                amount_minor=line.amount_minor,
                time_log_ids=list(line.time_log_ids),
                evidence_json=json.dumps(line.evidence, sort_keys=True, default=str),
            )
            for line in record.lines
        ],
        taxes=[
            pb.TaxAmount(name=t.name, rate_ppm=t.ppm, amount_minor=t.amount) for t in record.taxes
        ],
    )
    if record.issued_at is not None:
        message.issued_at.CopyFrom(timestamp(record.issued_at))
    if record.due_at is not None:
        message.due_at.CopyFrom(timestamp(record.due_at))
    return message


def preview_message(invoice: Invoice) -> pb.Invoice:
    """The proto of an assembled, unstored invoice (id 0, status ``PREVIEW``)."""
    return pb.Invoice(
        contract_id=int(invoice.contract_id),
        status="PREVIEW",
        currency=invoice.currency,
        subtotal_minor=invoice.subtotal,
        tax_minor=invoice.tax_total,
        total_minor=invoice.total,
        period_start=invoice.period.start.isoformat(),
        period_end=invoice.period.end.isoformat(),
        credit_balance_minor=invoice.credit_balance_out,
        text=invoice.format(),
        lines=[
            pb.InvoiceLine(
                position=line.line_no,
                kind=str(line.kind),
                description=line.description,
                time_condition=line.condition or "",
                support_level=line.support_level or "",
                job_type=line.job_type or "",
                rate_minor_per_hour=line.rate or 0,
                rate_card_version=line.rate_card_version or 0,
                billed_seconds=line.quantity if line.log_ids else 0,
                amount_minor=line.amount,
                time_log_ids=list(line.log_ids),
                evidence_json=json.dumps(
                    {"breach_ids": list(line.breach_ids), "item_ids": list(line.item_ids)}
                ),
            )
            for line in invoice.lines
        ],
        taxes=[
            pb.TaxAmount(name=t.name, rate_ppm=t.ppm, amount_minor=t.amount) for t in invoice.taxes
        ],
    )


def period_message(record: PeriodRecord) -> pb.BillingPeriod:
    """The proto of a billing period."""
    return pb.BillingPeriod(
        id=record.id or 0,
        contract_id=record.contract_id,
        starts_at=timestamp(record.starts_at),
        ends_at=timestamp(record.ends_at),
        status=record.status,
    )


def balance_message(balance: BucketBalance) -> pb.BucketBalance:
    """The proto of a bucket balance."""
    return pb.BucketBalance(
        contract_id=balance.contract_id,
        purchased_seconds=balance.purchased_seconds,
        top_up_seconds=balance.top_up_seconds,
        burned_seconds=balance.burned_seconds,
        remaining_seconds=balance.remaining_seconds,
        alerts_seconds=[a.threshold_seconds for a in balance.alerts],
    )


def time_log_table(logs: list[pb.TimeLog]) -> pa.Table:
    """The store's time-log batch of typed time logs (no ``approval_state`` column)."""
    columns: dict[str, list[object]] = {f.name: [] for f in SUBMITTED_TIME_LOGS}
    for i, log in enumerate(logs):
        for name in ("started_at", "ended_at"):
            if not log.HasField(name):
                raise EffigateError(f"logs[{i}].{name}: is required (log {log.id!r})")
        kind = pb.BillableType.Name(log.billable_type)
        columns["id"].append(log.id)
        columns["contract_id"].append(log.contract_id)
        columns["ticket_id"].append(log.ticket_id or None)
        columns["task_ref"].append(log.task_ref or None)
        columns["agent"].append(log.agent)
        columns["support_level"].append(log.support_level)
        columns["job_type"].append(log.job_type)
        columns["priority"].append(log.priority or None)
        columns["started_at"].append(optional_datetime(log, "started_at"))
        columns["ended_at"].append(optional_datetime(log, "ended_at"))
        columns["billable_type"].append("BILLABLE" if kind == "BILLABLE_TYPE_UNSPECIFIED" else kind)
    return pa.Table.from_pydict(columns, schema=SUBMITTED_TIME_LOGS)


def _summary(result: object) -> common_pb2.IngestSummary:
    return common_pb2.IngestSummary(
        received=result.received,  # type: ignore[attr-defined]
        inserted=result.inserted,  # type: ignore[attr-defined]
        updated=result.updated,  # type: ignore[attr-defined]
        unchanged=result.unchanged,  # type: ignore[attr-defined]
    )


class RateCardServicer(rpc.RateCardServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    @guarded
    async def CreateRateCard(
        self, request: pb.CreateRateCardRequest, context: grpc.aio.ServicerContext
    ) -> pb.RateCardInfo:
        if not request.name:
            raise EffigateError("name: '' is empty")
        card_id = await contracts.create_rate_card(self.store, current_principal(), request.name)
        return pb.RateCardInfo(id=card_id, name=request.name)

    @guarded
    async def PublishRateCard(
        self, request: pb.PublishRateCardRequest, context: grpc.aio.ServicerContext
    ) -> pb.RateCardVersionInfo:
        record = await contracts.publish_rate_card(
            self.store,
            current_principal(),
            request.rate_card_id,
            body("body_json", request.body_json),
        )
        return pb.RateCardVersionInfo(
            rate_card_id=record.rate_card_id,
            version=record.version,
            currency=record.currency,
            content_sha256=record.content_sha256,
        )


class ContractServicer(rpc.ContractServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    @guarded
    async def CreateContract(
        self, request: pb.CreateContractRequest, context: grpc.aio.ServicerContext
    ) -> pb.Contract:
        record = await contracts.create_contract(
            self.store,
            current_principal(),
            client_id=request.client_id,
            contract_type=request.contract_type,
            currency=request.currency,
            starts_on=to_date("starts_on", request.starts_on),
            ends_on=to_date("ends_on", request.ends_on, required=False),
            calendar_id=_optional(request, "calendar_id"),
            sla_policy_id=_optional(request, "sla_policy_id"),
            rate_card_id=_optional(request, "rate_card_id"),
            time_zone=request.time_zone or None,
            terms=body("terms_json", request.terms_json) if request.terms_json else None,
        )
        return contract_message(record)

    @guarded
    async def ActivateContract(
        self, request: pb.ActivateContractRequest, context: grpc.aio.ServicerContext
    ) -> pb.Contract:
        record = await contracts.activate_contract(
            self.store,
            current_principal(),
            request.contract_id,
            _optional(request, "rate_card_version"),
        )
        return contract_message(record)

    @guarded
    async def AmendContract(
        self, request: pb.AmendContractRequest, context: grpc.aio.ServicerContext
    ) -> pb.AmendContractResponse:
        amendment = await contracts.amend_contract(
            self.store,
            current_principal(),
            request.contract_id,
            kind=request.kind,
            effective_on=to_date("effective_on", request.effective_on),
            body=body("body_json", request.body_json) if request.body_json else {},
        )
        return pb.AmendContractResponse(amendment_id=amendment)

    @guarded
    async def GetContract(
        self, request: pb.GetContractRequest, context: grpc.aio.ServicerContext
    ) -> pb.Contract:
        record = await contracts.get_contract(self.store, current_principal(), request.contract_id)
        return contract_message(record)

    @guarded
    async def ListContracts(
        self, request: pb.ListContractsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContractsResponse:
        records = await contracts.list_contracts(
            self.store, current_principal(), _optional(request, "client_id")
        )
        return pb.ListContractsResponse(contracts=[contract_message(r) for r in records])

    @guarded
    async def AddMilestone(
        self, request: pb.AddItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.ItemId:
        item = await contracts.add_milestone(
            self.store, current_principal(), request.contract_id, request.name, request.amount_minor
        )
        return pb.ItemId(id=item)

    @guarded
    async def ApproveMilestone(
        self, request: pb.CompleteItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.ItemId:
        await contracts.approve_milestone(
            self.store, current_principal(), request.id, to_date("on", request.on)
        )
        return pb.ItemId(id=request.id)

    @guarded
    async def AddDeliverable(
        self, request: pb.AddItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.ItemId:
        item = await contracts.add_deliverable(
            self.store, current_principal(), request.contract_id, request.name, request.amount_minor
        )
        return pb.ItemId(id=item)

    @guarded
    async def SignOffDeliverable(
        self, request: pb.CompleteItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.ItemId:
        await contracts.sign_off_deliverable(
            self.store, current_principal(), request.id, to_date("on", request.on)
        )
        return pb.ItemId(id=request.id)

    @guarded
    async def RecordUnitCount(
        self, request: pb.RecordUnitCountRequest, context: grpc.aio.ServicerContext
    ) -> pb.ItemId:
        item = await contracts.record_unit_count(
            self.store,
            current_principal(),
            request.contract_id,
            request.unit_type,
            request.count,
            effective_on=to_date("effective_on", request.effective_on, required=False),
            cycle_end=optional_datetime(request, "cycle_end"),
        )
        return pb.ItemId(id=item)


class TimeLogServicer(rpc.TimeLogServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    @guarded
    async def IngestTimeLogs(
        self, request: pb.IngestTimeLogsRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.IngestSummary:
        table = time_log_table(list(request.logs))
        TIME_LOGS_INGESTED.inc(table.num_rows)
        result = await timelogs.ingest_time_logs(self.store, current_principal(), table)
        return _summary(result)

    @guarded
    async def IngestTimeLogStream(
        self,
        request_iterator: AsyncIterator[common_pb2.ArrowChunk],
        context: grpc.aio.ServicerContext,
    ) -> common_pb2.IngestSummary:
        principal = current_principal()
        principal.require_staff("ingest time logs")
        table, skip = await gather_stream(request_iterator)
        TIME_LOGS_INGESTED.inc(table.num_rows)
        result = await timelogs.ingest_time_logs(self.store, principal, table, skip)
        return ingest_summary(result)

    @guarded
    async def ApproveTimeLogs(
        self, request: pb.ApproveTimeLogsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApproveTimeLogsResponse:
        changed = await timelogs.set_approval(
            self.store, current_principal(), list(request.log_ids), request.state or "APPROVED"
        )
        return pb.ApproveTimeLogsResponse(changed=changed)

    @guarded
    async def ClosePeriod(
        self, request: pb.ClosePeriodRequest, context: grpc.aio.ServicerContext
    ) -> pb.BillingPeriod:
        record = await timelogs.close_period(
            self.store,
            current_principal(),
            request.contract_id,
            to_date("period_start", request.period_start),
        )
        return period_message(record)


class BillingServicer(rpc.BillingServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    @guarded
    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ArrowChunk:
        logs = read_ipc("arrow_ipc", request.arrow_ipc)
        results = await buckets.classify_logs(
            self.store, current_principal(), request.contract_id, logs
        )
        TIME_LOGS_CLASSIFIED.inc(logs.num_rows)
        return common_pb2.ArrowChunk(arrow_ipc=await asyncio.to_thread(write_ipc, results))

    @guarded
    async def PreviewInvoice(
        self, request: pb.PeriodRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        invoice = await invoicing.preview_invoice(
            self.store,
            current_principal(),
            request.contract_id,
            to_date("period_start", request.period_start),
        )
        return preview_message(invoice)

    @guarded
    async def GenerateInvoice(
        self, request: pb.PeriodRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        record = await invoicing.generate_invoice(
            self.store,
            current_principal(),
            request.contract_id,
            to_date("period_start", request.period_start),
        )
        return invoice_message(record)

    @guarded
    async def ReviewInvoice(
        self, request: pb.InvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        return invoice_message(
            await invoicing.review_invoice(self.store, current_principal(), request.invoice_id)
        )

    @guarded
    async def IssueInvoice(
        self, request: pb.IssueInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        record = await invoicing.issue_invoice(
            self.store, current_principal(), request.invoice_id, due_days=request.due_days or 30
        )
        return invoice_message(record)

    @guarded
    async def VoidInvoice(
        self, request: pb.InvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        return invoice_message(
            await invoicing.void_invoice(self.store, current_principal(), request.invoice_id)
        )

    @guarded
    async def RecordPayment(
        self, request: pb.RecordPaymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        principal = current_principal()
        received = optional_datetime(request, "received_at") or datetime.now(UTC)
        await payments.record_payment(
            self.store,
            principal,
            request.invoice_id,
            request.amount_minor,
            received,
            request.reference,
        )
        return invoice_message(
            await invoicing.get_invoice(self.store, principal, request.invoice_id)
        )

    @guarded
    async def CreateCreditNote(
        self, request: pb.CreateCreditNoteRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreditNote:
        amounts: dict[int, int] = {}
        for i, item in enumerate(request.amounts):
            if item.line_id in amounts:
                raise EffigateError(f"amounts[{i}].line_id: {item.line_id} is given twice")
            amounts[item.line_id] = item.amount_minor
        note = await payments.create_credit_note(
            self.store, current_principal(), request.invoice_id, amounts, request.reason
        )
        return pb.CreditNote(
            id=note.id,
            invoice_id=note.invoice_id,
            subtotal_minor=note.subtotal_minor,
            tax_minor=note.tax_minor,
            total_minor=note.total_minor,
        )

    @guarded
    async def GetInvoice(
        self, request: pb.InvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Invoice:
        return invoice_message(
            await invoicing.get_invoice(self.store, current_principal(), request.invoice_id)
        )

    @guarded
    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInvoicesResponse:
        records = await invoicing.list_invoices(
            self.store, current_principal(), _optional(request, "contract_id")
        )
        return pb.ListInvoicesResponse(invoices=[invoice_message(r) for r in records])

    @guarded
    async def MarkOverdue(
        self, request: pb.MarkOverdueRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInvoicesResponse:
        records = await invoicing.mark_overdue(
            self.store, current_principal(), optional_datetime(request, "as_of")
        )
        return pb.ListInvoicesResponse(invoices=[invoice_message(r) for r in records])

    @guarded
    async def GetBucketBalance(
        self, request: pb.BucketBalanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.BucketBalance:
        balance = await buckets.bucket_balance(
            self.store, current_principal(), request.contract_id, optional_datetime(request, "at")
        )
        return balance_message(balance)

    @guarded
    async def ReplayBilling(
        self, request: pb.ReplayBillingRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayBillingResponse:
        replay = await billing_replay.replay_billing(
            self.store,
            current_principal(),
            day_from=to_date("period_from", request.period_from),
            day_to=to_date("period_to", request.period_to),
            contract_ids=list(request.contract_ids),
            proposed_rate_card=request.proposed_rate_card_json,
            proposed_terms=request.proposed_terms_json,
        )
        totals, lines, by_client = await asyncio.to_thread(
            lambda: [write_ipc(t) for t in (replay.totals, replay.lines, replay.by_client)]
        )
        return pb.ReplayBillingResponse(
            totals_arrow_ipc=totals, lines_arrow_ipc=lines, by_client_arrow_ipc=by_client
        )
