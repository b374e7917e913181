"""``effigate calendar FILE [questions…]`` compiles a calendar from its JSON file and answers
business-time questions about it::

    effigate calendar samples/calendars/sydney-business-hours.json \\
        --deadline 2026-12-23T16:00+11:00 4h \\
        --elapsed 2026-12-21T09:00+11:00 2026-12-24T09:00+11:00 \\
        --is-open now --next-open now --next-close now

Instants are ISO 8601 with an offset (or ``Z``), or ``now``; a naive instant is refused.
Durations are business seconds given as ``3600``, ``90m``, ``4h`` or ``1h30m`` (no days: a
"day" of business time is ambiguous, so say hours).
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from effigate_engine import clock
from effigate_engine.calendar import Calendar, format_time_of_day
from effigate_engine.calendar_set import CalendarSet

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def parse_instant(text: str) -> datetime:
    """An aware datetime from ISO 8601 text with an offset, or ``now``."""
    if text == "now":
        return datetime.now(UTC).replace(microsecond=0)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 instant") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; add one (e.g. {text}+00:00) so its meaning is not a guess"
        )
    return value


def parse_duration(text: str) -> int:
    """Seconds from ``3600``, ``90m``, ``4h``, ``1h30m`` or ``45s``."""
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if not text or match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (seconds, or like 4h, 90m, 1h30m; days are ambiguous)"
        )
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}h{minutes:02d}m" + (f"{secs:02d}s" if secs else "")


def _show(value: datetime | None, zone: ZoneInfo) -> str:
    if value is None:
        return "none before the horizon ends"
    here = value.astimezone(zone)
    return f"{here:%a %Y-%m-%d %H:%M:%S%z} local ({value.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ})"


def _summary(calendar: Calendar, compiled: CalendarSet, seconds: float) -> list[str]:
    lines = [f"calendar  {calendar.name or '(unnamed)'} in {calendar.timezone}"]
    by_day: dict[int, list[str]] = {}
    for e in calendar.weekly:
        by_day.setdefault(e.weekday, []).append(
            f"{format_time_of_day(e.start)}–{format_time_of_day(e.end)}"
            + (" (overnight)" if e.overnight else "")
        )
    for day in range(7):
        lines.append(f"  {_WEEKDAYS[day]}  {', '.join(by_day.get(day, [])) or 'closed'}")
    regions = ", ".join(
        f"{r.country}{'-' + r.subdivision if r.subdivision else ''}"
        for r in calendar.holiday_regions
    )
    lines.append(
        f"  holidays: {len(calendar.holidays)} explicit"
        + (f", generated for {regions}" if regions else "")
    )
    lines.append(
        f"  closures: {len(calendar.closures)}, extra openings: {len(calendar.extra_openings)}"
    )
    compiled_one = compiled.compiled[0]
    lines.append(
        f"compiled  {compiled_one.opens.size:,} open intervals over {compiled.horizon} "
        f"in {seconds * 1000:.0f} ms"
    )
    return lines


def run_calendar(args: argparse.Namespace) -> int:
    """Compile the calendar file and answer each question given on the command line."""
    calendar = Calendar.load(args.file)
    started = time.perf_counter()
    compiled = CalendarSet([calendar])
    took = time.perf_counter() - started
    zone = calendar.zone
    out = _summary(calendar, compiled, took)
    for start, duration in args.deadline or []:
        due = clock.deadline(compiled, 0, start, duration)
        out.append(
            f"deadline    {format_duration(duration)} from {_show(start, zone)}\n"
            f"            -> {_show(due, zone)}"
        )
    for a, b in args.elapsed or []:
        spent = clock.elapsed(compiled, 0, a, b)
        out.append(
            f"elapsed     {_show(a, zone)}\n            -> {_show(b, zone)}: "
            f"{format_duration(spent)} of business time"
        )
    for t in args.is_open or []:
        state = "open" if clock.is_open(compiled, 0, t) else "closed"
        out.append(f"is-open     {_show(t, zone)}: {state}")
    for t in args.next_open or []:
        out.append(
            f"next-open   after {_show(t, zone)}\n            -> "
            f"{_show(clock.next_open(compiled, 0, t), zone)}"
        )
    for t in args.next_close or []:
        out.append(
            f"next-close  after {_show(t, zone)}\n            -> "
            f"{_show(clock.next_close(compiled, 0, t), zone)}"
        )
    print("\n".join(out))
    return 0


def add_commands(commands: Any) -> None:
    """Register ``calendar`` on the ``effigate`` subparsers."""
    cal = commands.add_parser(
        "calendar",
        help="compile a calendar JSON file and answer business-time questions",
        description="Compile a calendar and answer business-time questions about it.",
    )
    cal.add_argument("file", help="calendar JSON file")
    cal.add_argument(
        "--deadline",
        nargs=2,
        action="append",
        metavar=("START", "DURATION"),
        type=_instant_or_duration,
        help="when DURATION of business time after START is used up",
    )
    cal.add_argument(
        "--elapsed",
        nargs=2,
        action="append",
        metavar=("START", "END"),
        type=parse_instant,
        help="business time between two instants",
    )
    cal.add_argument("--is-open", action="append", metavar="AT", type=parse_instant)
    cal.add_argument("--next-open", action="append", metavar="AT", type=parse_instant)
    cal.add_argument("--next-close", action="append", metavar="AT", type=parse_instant)
    cal.set_defaults(handler=run_calendar)


def _instant_or_duration(text: str) -> datetime | int:
    # argparse applies one type to both values of --deadline; tell them apart by shape.
    try:
        return parse_duration(text)
    except argparse.ArgumentTypeError:
        return parse_instant(text)


def check_deadlines(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse ``--deadline`` pairs given in the wrong order (argparse types both alike)."""
    if getattr(args, "deadline", None):
        for start, duration in args.deadline:
            if not isinstance(start, datetime) or not isinstance(duration, int):
                parser.error("--deadline takes START (an instant) then DURATION (e.g. 4h)")
