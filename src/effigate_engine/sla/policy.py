"""SLA policies: ordered rules, per-metric targets, warning fractions, pauses and escalation.

A policy is an ordered list of rules; the **first rule that matches a ticket applies**. A rule
matches on any of priority (``CRITICAL``/``HIGH``/``MEDIUM``/``LOW``, aliases ``P1``–``P4``),
support level (``L1``/``L2``/``L3``/``SA``), job type, client and the after-hours flag; a field
left out matches everything. Per metric a rule gives the target (business seconds), the
calendar (a name in the :class:`~effigate_engine.CalendarSet` used at evaluation), the warning
fraction, the ticket statuses that pause the metric, and an escalation ladder of steps at a
fraction of the target or at an offset past the deadline, each naming who is notified.

Fractions are exact decimals (``"0.75"``), never binary floats: thresholds are
``ceil(fraction × target)`` whole seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from effigate_engine.errors import EffigateError
from effigate_engine.priority import PRIORITIES, priority_name

METRICS = ("FIRST_RESPONSE", "RESOLUTION_PLAN", "RESOLUTION")
#: The ticket field whose instant stops each metric.
STOP_FIELDS = {
    "FIRST_RESPONSE": "first_response_at",
    "RESOLUTION_PLAN": "resolution_plan_at",
    "RESOLUTION": "resolved_at",
}
SUPPORT_LEVELS = ("L1", "L2", "L3", "SA")
#: A resolved-then-reopened ticket's time between resolution and reopening is a pause with
#: this status; waiting on the client is the usual other one.
RESOLVED = "RESOLVED"
WAITING_ON_CLIENT = "WAITING_ON_CLIENT"
DEFAULT_WARNING = Fraction(3, 4)
DEFAULT_PAUSING = {
    "FIRST_RESPONSE": frozenset(),
    "RESOLUTION_PLAN": frozenset({WAITING_ON_CLIENT, RESOLVED}),
    "RESOLUTION": frozenset({WAITING_ON_CLIENT, RESOLVED}),
}
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class PolicyError(EffigateError):
    """A policy definition is invalid: ``field`` is the path of the bad field."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {value!r} {problem}")


def _seconds(value: object, path: str) -> int:
    if isinstance(value, bool):
        raise PolicyError(path, value, "is not a duration (seconds, or like '4h', '30m')")
    if isinstance(value, int):
        if value < 0:
            raise PolicyError(path, value, "is negative")
        return value
    if isinstance(value, str) and value:
        match = _DURATION.match(value)
        if match and any(match.groups()):
            h, m, s = (int(g) if g else 0 for g in match.groups())
            return h * 3600 + m * 60 + s
    raise PolicyError(path, value, "is not a duration (seconds, or like '4h', '30m')")


def _fraction(value: object, path: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PolicyError(path, value, 'is not an exact decimal fraction (e.g. "0.75")')
    try:
        result = Fraction(value) if isinstance(value, int) else Fraction(value.strip())
    except (ValueError, ZeroDivisionError):
        raise PolicyError(path, value, 'is not an exact decimal fraction (e.g. "0.75")') from None
    if result < 0:
        raise PolicyError(path, value, "is negative")
    return result


def ceil_fraction(fraction: Fraction, seconds: int) -> int:
    """``ceil(fraction × seconds)`` exactly."""
    return -((-fraction.numerator * seconds) // fraction.denominator)


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """A step of the ladder: at ``fraction`` of the target (elapsed business time), or at
    ``offset`` wall-clock seconds past the deadline. ``notify`` names a role, queue or person."""

    notify: str
    fraction: Fraction | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class MetricTarget:
    """What a rule promises for one metric: ``target`` business seconds on ``calendar``."""

    target: int
    calendar: str
    warning: Fraction = DEFAULT_WARNING
    pausing_statuses: frozenset[str] = frozenset()
    escalation: tuple[EscalationStep, ...] = ()

    @property
    def warning_threshold(self) -> int:
        """Elapsed business seconds at which the metric is in warning."""
        return ceil_fraction(self.warning, self.target)


@dataclass(frozen=True, slots=True)
class Match:
    """Which tickets a rule applies to; ``None`` matches everything."""

    priorities: frozenset[str] | None = None
    support_levels: frozenset[str] | None = None
    job_types: frozenset[str] | None = None
    clients: frozenset[str] | None = None
    after_hours: bool | None = None

    def matches(
        self,
        priority: str,
        support_level: str | None,
        job_type: str | None,
        client: str | None,
        after_hours: bool | None,
    ) -> bool:
        """Whether one ticket matches (the slow, obvious form used by references and tools)."""
        return (
            (self.priorities is None or priority_name(priority) in self.priorities)
            and (self.support_levels is None or support_level in self.support_levels)
            and (self.job_types is None or job_type in self.job_types)
            and (self.clients is None or client in self.clients)
            and (self.after_hours is None or bool(after_hours) == self.after_hours)
        )


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule: which tickets (``match``) and per-metric promises (``metrics``)."""

    match: Match
    metrics: Mapping[str, MetricTarget]
    name: str = ""


@dataclass(frozen=True)
class Policy:
    """An ordered list of rules; the first matching rule applies to a ticket."""

    name: str
    rules: tuple[Rule, ...]

    def rule_for(
        self,
        priority: str,
        support_level: str | None = None,
        job_type: str | None = None,
        client: str | None = None,
        after_hours: bool | None = None,
    ) -> int | None:
        """Index of the first rule matching the ticket, or ``None``."""
        for i, rule in enumerate(self.rules):
            if rule.match.matches(priority, support_level, job_type, client, after_hours):
                return i
        return None

    @property
    def calendars(self) -> set[str]:
        """Names of every calendar the policy refers to."""
        return {m.calendar for r in self.rules for m in r.metrics.values()}

    # JSON ---------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        """Build a policy from its JSON object, validating every field."""
        if not isinstance(data, Mapping):
            raise PolicyError("policy", data, "is not a JSON object")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise PolicyError("name", name, "is required (a non-empty string)")
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise PolicyError("rules", raw_rules, "is not a non-empty list of rules")
        rules = tuple(_parse_rule(raw, f"rules[{i}]") for i, raw in enumerate(raw_rules))
        return cls(name, rules)

    def to_json(self) -> dict[str, Any]:
        """The policy as a JSON object that :meth:`from_json` reads back to an equal policy."""
        return {"name": self.name, "rules": [_rule_json(r) for r in self.rules]}

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read a policy from a JSON file."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))

    def save(self, path: str | Path) -> None:
        """Write the policy as JSON."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _string_set(
    value: object, path: str, allowed: Sequence[str] | None = None, normalize: Any = None
) -> frozenset[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise PolicyError(path, value, "is not a string or a non-empty list of strings")
    out = set()
    for i, item in enumerate(items):
        norm = normalize(item) if normalize else item
        if allowed is not None and norm not in allowed:
            raise PolicyError(
                f"{path}[{i}]" if isinstance(value, list) else path,
                item,
                f"is not one of {', '.join(allowed)}",
            )
        out.add(norm)
    return frozenset(out)


def _parse_rule(raw: object, path: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise PolicyError(path, raw, "is not an object {match, metrics}")
    for key in raw:
        if key not in ("name", "match", "metrics"):
            raise PolicyError(
                f"{path}.{key}", raw[key], "is not a rule field (name, match, metrics)"
            )
    match_raw = raw.get("match", {})
    if not isinstance(match_raw, Mapping):
        raise PolicyError(f"{path}.match", match_raw, "is not an object")
    known = {"priority", "support_level", "job_type", "client", "after_hours"}
    for key in match_raw:
        if key not in known:
            raise PolicyError(
                f"{path}.match.{key}",
                match_raw[key],
                f"is not a match field ({', '.join(sorted(known))})",
            )
    after_hours = match_raw.get("after_hours")
    if after_hours is not None and not isinstance(after_hours, bool):
        raise PolicyError(f"{path}.match.after_hours", after_hours, "is not true/false")
    match = Match(
        priorities=_string_set(
            match_raw["priority"], f"{path}.match.priority", PRIORITIES, priority_name
        )
        if "priority" in match_raw
        else None,
        support_levels=_string_set(
            match_raw["support_level"], f"{path}.match.support_level", SUPPORT_LEVELS, str.upper
        )
        if "support_level" in match_raw
        else None,
        job_types=_string_set(match_raw["job_type"], f"{path}.match.job_type")
        if "job_type" in match_raw
        else None,
        clients=_string_set(match_raw["client"], f"{path}.match.client")
        if "client" in match_raw
        else None,
        after_hours=after_hours,
    )
    metrics_raw = raw.get("metrics")
    if not isinstance(metrics_raw, Mapping) or not metrics_raw:
        raise PolicyError(f"{path}.metrics", metrics_raw, "is not a non-empty object of metrics")
    metrics = {}
    for metric, spec in metrics_raw.items():
        if metric not in METRICS:
            raise PolicyError(
                f"{path}.metrics.{metric}", metric, f"is not one of {', '.join(METRICS)}"
            )
        metrics[metric] = _parse_metric(spec, f"{path}.metrics.{metric}", metric)
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise PolicyError(f"{path}.name", name, "is not a string")
    return Rule(match, metrics, name)


def _parse_metric(raw: object, path: str, metric: str) -> MetricTarget:
    if not isinstance(raw, Mapping):
        raise PolicyError(path, raw, "is not an object {target, calendar, …}")
    known = {"target", "calendar", "warning", "pausing_statuses", "escalation"}
    for key in raw:
        if key not in known:
            raise PolicyError(
                f"{path}.{key}", raw[key], f"is not a metric field ({', '.join(sorted(known))})"
            )
    if "target" not in raw:
        raise PolicyError(f"{path}.target", None, "is required (business seconds)")
    target = _seconds(raw["target"], f"{path}.target")
    calendar = raw.get("calendar")
    if not isinstance(calendar, str) or not calendar:
        raise PolicyError(f"{path}.calendar", calendar, "is required (a calendar name)")
    warning = _fraction(raw.get("warning", "0.75"), f"{path}.warning")
    if warning > 1:
        raise PolicyError(f"{path}.warning", raw.get("warning"), "is above 1")
    pausing = raw.get("pausing_statuses")
    statuses = (
        DEFAULT_PAUSING[metric]
        if pausing is None
        else frozenset()
        if pausing == []
        else _string_set(pausing, f"{path}.pausing_statuses")
    )
    steps_raw = raw.get("escalation", [])
    if not isinstance(steps_raw, list):
        raise PolicyError(f"{path}.escalation", steps_raw, "is not a list of steps")
    steps = []
    last_fraction: Fraction | None = None
    last_offset: int | None = None
    for i, step in enumerate(steps_raw):
        spath = f"{path}.escalation[{i}]"
        if not isinstance(step, Mapping) or not isinstance(step.get("notify"), str):
            raise PolicyError(spath, step, "is not {at_fraction | after_deadline, notify}")
        if ("at_fraction" in step) == ("after_deadline" in step):
            raise PolicyError(spath, step, "needs exactly one of at_fraction, after_deadline")
        if "at_fraction" in step:
            frac = _fraction(step["at_fraction"], f"{spath}.at_fraction")
            if (last_fraction is not None and frac <= last_fraction) or last_offset is not None:
                raise PolicyError(
                    f"{spath}.at_fraction",
                    step["at_fraction"],
                    "is out of order (fraction steps ascending, before offset steps)",
                )
            last_fraction = frac
            steps.append(EscalationStep(step["notify"], fraction=frac))
        else:
            offset = _seconds(step["after_deadline"], f"{spath}.after_deadline")
            if last_offset is not None and offset <= last_offset:
                raise PolicyError(
                    f"{spath}.after_deadline",
                    step["after_deadline"],
                    "is out of order (offset steps ascending)",
                )
            last_offset = offset
            steps.append(EscalationStep(step["notify"], offset=offset))
    return MetricTarget(target, calendar, warning, statuses, tuple(steps))


def _rule_json(rule: Rule) -> dict[str, Any]:
    m = rule.match
    match: dict[str, Any] = {}
    if m.priorities is not None:
        match["priority"] = sorted(m.priorities, key=PRIORITIES.index)
    if m.support_levels is not None:
        match["support_level"] = sorted(m.support_levels)
    if m.job_types is not None:
        match["job_type"] = sorted(m.job_types)
    if m.clients is not None:
        match["client"] = sorted(m.clients)
    if m.after_hours is not None:
        match["after_hours"] = m.after_hours
    metrics = {}
    for name, t in rule.metrics.items():
        metrics[name] = {
            "target": t.target,
            "calendar": t.calendar,
            "warning": f"{t.warning.numerator}/{t.warning.denominator}",
            "pausing_statuses": sorted(t.pausing_statuses),
            "escalation": [
                {
                    "at_fraction": f"{s.fraction.numerator}/{s.fraction.denominator}",
                    "notify": s.notify,
                }
                if s.fraction is not None
                else {"after_deadline": s.offset, "notify": s.notify}
                for s in t.escalation
            ],
        }
    out: dict[str, Any] = {"match": match, "metrics": metrics}
    if rule.name:
        out["name"] = rule.name
    return out
