"""Arrow schemas of invoices and billing runs. The schema is the contract: tests pin it.

Money is ``int64`` minor units of the line's currency, rates ``int64`` minor units per hour (or
per unit for unit lines). The time-log and time-line schemas billing reads are classification's
(:mod:`effigate_engine.ratecard.schemas`).
"""

from __future__ import annotations

import pyarrow as pa

from effigate_engine.sla.schemas import BREACH_RECORDS as SLA_BREACH_RECORDS

#: Invoice lines. ``kind``: ``TIME`` | ``MILESTONE`` | ``DELIVERABLE`` | ``RECURRING_BASE`` |
#: ``RECURRING_UNITS`` | ``SLA_CREDIT`` | ``CREDIT_BALANCE``. ``quantity`` is billed seconds for
#: time lines, a unit count for unit lines (the change in the count for a prorated change
#: line, negative for a decrease), 1 otherwise; ``rate`` is per hour for time, per unit for
#: units. Evidence: ``log_ids`` (time), ``breach_ids`` (credits), ``item_ids`` (milestones,
#: deliverables, unit types, ``cycle:<ordinal>`` for base fees); ``rate_card_version`` /
#: ``rate_card_hash`` of the frozen card. ``service_start`` / ``service_end``: the service
#: period ``[start, end)`` in local dates of a recurring line (null on other kinds).
INVOICE_LINES = pa.schema(
    [
        pa.field("line_no", pa.int32(), nullable=False),
        pa.field("contract_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("description", pa.string(), nullable=False),
        pa.field("condition", pa.string()),
        pa.field("support_level", pa.string()),
        pa.field("job_type", pa.string()),
        pa.field("quantity", pa.int64(), nullable=False),
        pa.field("rate", pa.int64()),
        pa.field("amount", pa.int64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("taxable", pa.bool_(), nullable=False),
        pa.field("rate_card_version", pa.int32()),
        pa.field("rate_card_hash", pa.string()),
        pa.field("log_ids", pa.list_(pa.string()), nullable=False),
        pa.field("breach_ids", pa.list_(pa.string()), nullable=False),
        pa.field("item_ids", pa.list_(pa.string()), nullable=False),
        pa.field("service_start", pa.date32()),
        pa.field("service_end", pa.date32()),
    ]
)

#: The invoice lines of a billing run: :data:`INVOICE_LINES` after ``invoice``, the row of the
#: invoice in :data:`RUN_INVOICES`; ordered by invoice, then line number.
RUN_LINES = pa.schema([pa.field("invoice", pa.int32(), nullable=False), *INVOICE_LINES])

#: A tax component's amount on an invoice (minor units; ``ppm`` parts per million).
TAX_LINE = pa.struct(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("ppm", pa.int64(), nullable=False),
        pa.field("base", pa.int64(), nullable=False),
        pa.field("amount", pa.int64(), nullable=False),
    ]
)

#: The invoices of a billing run, one row each, ordered by contract id: the period (ordinal and
#: local dates ``[start, end)``), the number of lines, the totals (minor units:
#: ``total = subtotal − credits_applied + Σ taxes.amount``; ``credit_balance_out`` is carried to
#: the next invoice), the exemption and the breach ids the SLA credits settle or forfeit.
RUN_INVOICES = pa.schema(
    [
        pa.field("invoice", pa.int32(), nullable=False),
        pa.field("contract_id", pa.string(), nullable=False),
        pa.field("period", pa.int32(), nullable=False),
        pa.field("period_start", pa.date32(), nullable=False),
        pa.field("period_end", pa.date32(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("lines", pa.int32(), nullable=False),
        pa.field("subtotal", pa.int64(), nullable=False),
        pa.field("credits_available", pa.int64(), nullable=False),
        pa.field("credits_applied", pa.int64(), nullable=False),
        pa.field("credit_balance_out", pa.int64(), nullable=False),
        pa.field("taxable_base", pa.int64(), nullable=False),
        pa.field("taxes", pa.list_(TAX_LINE), nullable=False),
        pa.field("total", pa.int64(), nullable=False),
        pa.field("exemption", pa.string()),
        pa.field("settled_breach_ids", pa.list_(pa.string()), nullable=False),
        pa.field("forfeited_breach_ids", pa.list_(pa.string()), nullable=False),
    ]
)

#: SLA breach records produced by the SLA engine; billing turns them into credit lines.
# SLA breach records are the SLA engine's output; billing reads them as they are.
BREACH_RECORDS = SLA_BREACH_RECORDS
