"""Arrow schemas of time logs and their classification (per-part results, time lines). The
schema is the contract: tests pin it.

Instants are ``timestamp[s, tz=UTC]`` (inputs of any unit and zone are accepted and floored to
the second), durations ``duration[s]``, money ``int64`` minor units of the line's currency, rates
``int64`` minor units per hour (or per unit for unit lines). Categorical text columns are
``dictionary<int32, string>`` on output (``dictionary<int8, string>`` for the fixed vocabularies
of the per-part results: status, billable type, condition labels) and may be plain ``string``
on input.
"""

from __future__ import annotations

import pyarrow as pa

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
