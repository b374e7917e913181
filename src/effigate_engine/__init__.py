"""Effigate Engine: SLA clocks and billing for IT managed-service providers."""

from effigate_engine.calendar import Calendar, HolidayRegion, LocalRange, WeeklyEntry
from effigate_engine.calendar_set import CalendarSet, CompiledCalendar, Horizon, compile_calendar
from effigate_engine.errors import BatchError, CalendarError, EffigateError

__all__ = [
    "BatchError",
    "Calendar",
    "CalendarError",
    "CalendarSet",
    "CompiledCalendar",
    "EffigateError",
    "HolidayRegion",
    "Horizon",
    "LocalRange",
    "WeeklyEntry",
    "compile_calendar",
]
__version__ = "0.1.0"
