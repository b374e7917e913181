"""Zones come from the bundled ``tzdata`` package only, whatever the host has."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pickle
import re
import subprocess
import sys
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from effigate_engine import Calendar, EffigateError
from effigate_engine.errors import CalendarError
from effigate_engine.zone import TZDATA_VERSION, zone

ROOT = Path(__file__).resolve().parent.parent

#: Run with PYTHONTZPATH pointing at a folder whose ``Europe/London`` is Tokyo's rules.
_PROBE = """
import json, zoneinfo
from datetime import UTC, date, datetime
from effigate_engine import Calendar, CalendarSet, Horizon, WeeklyEntry, clock, sla
from effigate_engine.billing.terms_json import contract_zone

monday = datetime(2025, 1, 6, tzinfo=UTC)
host = monday.astimezone(zoneinfo.ZoneInfo("Europe/London")).utcoffset().total_seconds()
office = Calendar("Europe/London", tuple(WeeklyEntry(d, 9 * 3600, 17 * 3600) for d in range(5)))
calendars = CalendarSet([office], Horizon.of(date(2025, 1, 1), date(2025, 2, 1)))
summer = datetime(2025, 7, 1, 12, tzinfo=UTC)
print(json.dumps({
    "host_offset": host,
    "opens": clock.next_open(calendars, 0, monday).isoformat(),
    "open_at_midnight": clock.is_open(calendars, 0, monday.replace(hour=1)),
    "zone": str(office.zone),
    "contract_offset": summer.astimezone(contract_zone({"time_zone": "Europe/London"}))
        .utcoffset().total_seconds(),
    "sla_tzdata": sla.evaluation._tzdata_version(),
}))
"""


def test_host_zone_files_are_never_read(tmp_path: Path) -> None:
    """A host folder whose Europe/London is Tokyo: a London office still opens at 09:00 London
    (09:00Z in January), and the recorded tzdata release is the package's."""
    fake = tmp_path / "zoneinfo"
    (fake / "Europe").mkdir(parents=True)
    tokyo = resources.files("tzdata").joinpath("zoneinfo", "Asia", "Tokyo").read_bytes()
    (fake / "Europe" / "London").write_bytes(tokyo)
    env = dict(os.environ, PYTHONTZPATH=str(fake))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["host_offset"] == 9 * 3600  # the trap is set: zoneinfo alone reads Tokyo
    assert got["opens"] == "2025-01-06T09:00:00+00:00"
    assert got["open_at_midnight"] is False
    assert got["zone"] == "Europe/London"
    assert got["contract_offset"] == 3600
    assert got["sla_tzdata"] == importlib.metadata.version("tzdata") == TZDATA_VERSION


def test_one_object_per_name_keeping_its_name() -> None:
    london = zone("Europe/London")
    assert london is zone("Europe/London")
    assert london.key == str(london) == "Europe/London"
    assert pickle.loads(pickle.dumps(london)) is london
    assert Calendar.always_open("Europe/London").zone is london
    summer = datetime(2025, 7, 1, 12, tzinfo=UTC).astimezone(london)
    assert summer.utcoffset().total_seconds() == 3600
    assert summer.tzname() == "BST"


@pytest.mark.parametrize(
    "name",
    [
        "Nowhere/City",
        "",
        "../tzdata/zoneinfo/UTC",
        "Europe/../Europe/London",
        "/etc/localtime",
        "Europe//London",
        "Europe/London/",
        "America",  # a folder
        "zone.tab",  # a file of the package that is not a zone
        "__init__.py",
        "Europe\\London",
    ],
)
def test_unknown_names_and_paths_are_refused_naming_the_value(name: str) -> None:
    with pytest.raises(EffigateError) as refused:
        zone(name)
    assert str(refused.value) == (
        f"time zone {name!r} is not a known IANA time zone (tzdata {TZDATA_VERSION})"
    )


def test_calendar_with_an_unknown_zone_names_the_field() -> None:
    with pytest.raises(CalendarError) as refused:
        Calendar.always_open("../../etc/passwd")
    assert refused.value.field == "timezone"
    assert "'../../etc/passwd' is not a known IANA time zone" in str(refused.value)


#: Building a zone any other way than effigate_engine.zone.zone() reads the host's files.
_DIRECT = re.compile(r"\bZoneInfo\s*(\(|\.no_cache\b|\.from_file\b)|\bzoneinfo\.ZoneInfo\b\s*\(")


def test_no_zone_is_built_outside_the_helper() -> None:
    helper = ROOT / "src" / "effigate_engine" / "zone.py"
    offenders = []
    for top in ("src", "server", "clients", "bench", "tests"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in {".py", ".pyx", ".pxd"} or path in {helper, Path(__file__)}:
                continue
            if "_pb2" in path.name:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _DIRECT.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "build zones with effigate_engine.zone.zone():\n" + "\n".join(offenders)
