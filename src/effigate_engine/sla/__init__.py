"""SLA engine: policies, ticket timers, breaches and reports over Arrow batches.

evaluation = sla.evaluate(tickets, policy, calendars, now)   # Arrow / Parquet in
evaluation.results                                           # Arrow out (SLA_RESULTS)
sla.breach_records(evaluation)                               # evidence for billing credits
sla.hit_rates(evaluation, by="priority", period="month")
"""

from effigate_engine.sla.breaches import SEVERITIES, breach_records
from effigate_engine.sla.evaluation import Evaluation, TicketError, evaluate
from effigate_engine.sla.policy import (
    METRICS,
    EscalationStep,
    Match,
    MetricTarget,
    Policy,
    PolicyError,
    Rule,
)
from effigate_engine.sla.reports import (
    at_risk,
    hit_rates,
    percentiles,
    recommended_targets,
    replay,
    report_frame,
)
from effigate_engine.sla.schemas import BREACH_RECORDS, SLA_RESULTS, STATUSES, TICKETS

__all__ = [
    "BREACH_RECORDS",
    "METRICS",
    "SEVERITIES",
    "SLA_RESULTS",
    "STATUSES",
    "TICKETS",
    "EscalationStep",
    "Evaluation",
    "Match",
    "MetricTarget",
    "Policy",
    "PolicyError",
    "Rule",
    "TicketError",
    "at_risk",
    "breach_records",
    "evaluate",
    "hit_rates",
    "percentiles",
    "recommended_targets",
    "replay",
    "report_frame",
]
