"""Arrow schemas billing consumes and produces. The schema is the contract: tests pin it.

Instants are ``timestamp[s, tz=UTC]`` (inputs of any unit and zone are accepted and floored to
the second), durations ``duration[s]``, money ``int64`` minor units of the line's currency, rates
``int64`` minor units per hour (or per unit for unit lines). Categorical text columns are
``dictionary<int32, string>`` on output (``dictionary<int8, string>`` for the fixed vocabularies
of the per-part results: status, billable type, condition labels) and may be plain ``string``
on input.
"""

from __future__ import annotations

import pyarrow as pa

from effigate_engine.sla.schemas import BREACH_RECORDS as SLA_BREACH_RECORDS

UTC_SECONDS = pa.timestamp("s", tz="UTC")
SECONDS = pa.duration("s")
CATEGORY = pa.dictionary(pa.int32(), pa.string())
#: A categorical column of a fixed, small vocabulary (statuses, billable types, conditions):
#: one byte per row.
CODE = pa.dictionary(pa.int8(), pa.string())

#: Time logs: one row per log (``log_id`` is the idempotency key, unique in a batch).
#: ``billable_type`` is ``BILLABLE`` | ``NON_BILLABLE`` | ``WARRANTY``; ``priority`` is
#: ``CRITICAL`` | ``HIGH`` | ``MEDIUM`` | ``LOW`` (or P1–P4); ``approved`` false = unbilled WIP.
TIME_LOGS = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("contract_id", CATEGORY, nullable=False),
        pa.field("ticket_id", pa.string()),
        pa.field("task_id", pa.string()),
        pa.field("agent_id", pa.string()),
        pa.field("support_level", CATEGORY, nullable=False),
        pa.field("job_type", CATEGORY, nullable=False),
        pa.field("priority", CATEGORY, nullable=False),
        pa.field("start", UTC_SECONDS, nullable=False),
        pa.field("end", UTC_SECONDS, nullable=False),
        pa.field("billable_type", CATEGORY, nullable=False),
        pa.field("approved", pa.bool_(), nullable=False),
    ]
)

#: Columns a time-log batch must carry (the others are evidence only and may be absent).
TIME_LOGS_REQUIRED = (
    "log_id",
    "contract_id",
    "support_level",
    "job_type",
    "priority",
    "start",
    "end",
    "billable_type",
    "approved",
)

#: Per-log results: one row per log part. Row ``i`` is the first part of input log ``i``; a log
#: crossing period boundaries has later parts (``part`` 1, 2, … in time order), appended after
#: the first parts in log order. ``status``: ``PRICED`` | ``UNAPPROVED`` |
#: ``REJECTED`` (out of scope under a reject policy). Per time condition: actual and billed
#: seconds, the resolved rate and the line label (``HIGH_PRIORITY`` when priority won under
#: ``max``). ``covered_seconds`` is drawn from a bucket / included hours / fixed price (weighted
#: by burn factors), ``overage_seconds`` the weighted seconds beyond it.
#: ``amount_numerator`` = Σ seconds × rate (minor units × seconds per hour): amount × 3600.
LOG_RESULTS = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("part", pa.int8(), nullable=False),
        pa.field("contract_id", CATEGORY, nullable=False),
        pa.field("period", pa.int32(), nullable=False),
        pa.field("rate_card_version", pa.int32(), nullable=False),
        pa.field("start", UTC_SECONDS, nullable=False),
        pa.field("end", UTC_SECONDS, nullable=False),
        pa.field("status", CODE, nullable=False),
        pa.field("billable_type", CODE, nullable=False),
        pa.field("out_of_scope", pa.bool_(), nullable=False),
        pa.field("high_priority", pa.bool_(), nullable=False),
        *(
            pa.field(f"actual_{c}", SECONDS, nullable=False)
            for c in ("regular", "after_hours", "weekend", "holiday")
        ),
        *(
            pa.field(f"billed_{c}", SECONDS, nullable=False)
            for c in ("regular", "after_hours", "weekend", "holiday")
        ),
        pa.field("billed_total", SECONDS, nullable=False),
        *(
            pa.field(f"rate_{c}", pa.int64(), nullable=False)
            for c in ("regular", "after_hours", "weekend", "holiday")
        ),
        *(
            pa.field(f"label_{c}", CODE, nullable=False)
            for c in ("regular", "after_hours", "weekend", "holiday")
        ),
        pa.field("covered_seconds", SECONDS, nullable=False),
        pa.field("overage_seconds", SECONDS, nullable=False),
        pa.field("amount_numerator", pa.int64(), nullable=False),
    ]
)

#: Time-line aggregates (text columns dictionary-encoded), grouped by (contract, period, frozen
#: version, condition, support level, job type, priority applied);
#: ``amount = round_half_up(billed_seconds × rate / 3600)``.
TIME_LINES = pa.schema(
    [
        pa.field("contract_id", CATEGORY, nullable=False),
        pa.field("period", pa.int32(), nullable=False),
        pa.field("period_start", pa.date32(), nullable=False),
        pa.field("period_end", pa.date32(), nullable=False),
        pa.field("rate_card_version", pa.int32(), nullable=False),
        pa.field("rate_card_hash", CATEGORY, nullable=False),
        pa.field("condition", CATEGORY, nullable=False),
        pa.field("support_level", CATEGORY, nullable=False),
        pa.field("job_type", CATEGORY, nullable=False),
        pa.field("high_priority", pa.bool_(), nullable=False),
        pa.field("billed_seconds", SECONDS, nullable=False),
        pa.field("rate", pa.int64(), nullable=False),
        pa.field("amount", pa.int64(), nullable=False),
        pa.field("currency", CATEGORY, nullable=False),
    ]
)

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
