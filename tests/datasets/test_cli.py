"""``effigate export`` and ``effigate load-back`` on the test database (the service role and
the owner's DSN from the environment, as a deployment sets them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from effigate_cli.main import main
from effigate_engine.datasets import layout
from tests.datasets.support import AS_OF, Seeded
from tests.datasets.test_load_back import write_results
from tests.store.helpers import Database


@pytest.fixture
def environment(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFIGATE_DSN", db.app)
    monkeypatch.setenv("EFFIGATE_ADMIN_DSN", db.admin)
    monkeypatch.delenv("EFFIGATE_TOKEN", raising=False)


def test_export_then_load_back(
    environment: None, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "ds")
    tenant = str(seeded.principal.tenant_id)
    as_of = AS_OF.isoformat().replace("+00:00", "Z")
    assert main(["export", url, "--tenant", tenant, "--as-of", as_of]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("exported 1 tenant(s) as of 2026-03-20T12:00:00+00:00")
    assert f"{len(seeded.ticket_ids)} tickets in 2 parts" in line
    assert layout.read_manifest(url)["tenants"] == [tenant]
    n = write_results(url, tenant)
    assert main(["load-back", url, "--tenant", tenant]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"loaded 2 part(s) of results/sla from {url}: {n} standings")


def test_bad_input_is_one_line_and_exit_code_2(
    environment: None, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(tmp_path), "--as-of", "2026-03-20T12:00"]) == 2
    assert "--as-of: '2026-03-20T12:00' has no time zone" in capsys.readouterr().err
    assert main(["load-back", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"effigate: {tmp_path / 'none'}: no results/sla parts to load (run the job first)"


def test_export_of_every_tenant(
    environment: None, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "all")
    assert main(["export", url, "--as-of", "2026-03-20T12:00:00Z"]) == 0
    tenants = layout.read_manifest(url)["tenants"]
    assert str(seeded.principal.tenant_id) in tenants and tenants == sorted(tenants)
    assert layout.tenants(url) == tenants
    assert f"exported {len(tenants)} tenant(s)" in capsys.readouterr().out


def test_without_the_owners_credentials_a_staff_token_names_the_tenant(
    db: Database,
    seeded: Seeded,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EFFIGATE_DSN", db.app)
    monkeypatch.delenv("EFFIGATE_ADMIN_DSN", raising=False)
    url = str(tmp_path / "ds")
    monkeypatch.delenv("EFFIGATE_TOKEN", raising=False)
    assert main(["export", url]) == 2
    assert "EFFIGATE_ADMIN_DSN" in capsys.readouterr().err
    assert seeded.principal.token is not None
    monkeypatch.setenv("EFFIGATE_TOKEN", seeded.principal.token)
    assert main(["export", url, "--as-of", "2026-03-20T12:00:00Z"]) == 0
    assert layout.read_manifest(url)["tenants"] == [str(seeded.principal.tenant_id)]
    assert main(["export", url, "--tenant", "00000000-0000-0000-0000-000000000001"]) == 2
    assert "--tenant: EFFIGATE_TOKEN is a token of tenant" in capsys.readouterr().err
