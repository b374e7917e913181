"""The embedded server: started from the wheel, reused across runs, stopped cleanly, with a
password for every login and the owner and service roles of a deployment."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import asyncpg
import pytest

from effigate_engine.service.context import Principal
from effigate_engine.service.tokens import create_tenant, create_token
from effigate_engine.store import dsn as dsn_module
from effigate_engine.store import settings
from effigate_engine.store.database import Store
from effigate_engine.store.dsn import with_user
from effigate_engine.store.embedded import (
    CREDENTIALS_FILE,
    ENV_DATA_DIR,
    EmbeddedServer,
    data_dir,
    start_embedded,
)
from effigate_engine.store.migrate import migrate


async def _query(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_embedded_server_starts_persists_and_stops(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    server = start_embedded(pgdata)
    try:
        assert int(asyncio.run(_query(server.dsn(), "SHOW server_version_num"))) >= 180000
        asyncio.run(_query(server.dsn(), "CREATE TABLE kept AS SELECT 1 AS x"))
        assert stat.S_IMODE((pgdata / CREDENTIALS_FILE).stat().st_mode) == 0o600
        asyncio.run(_owner_migrates_and_the_service_role_serves(server))
    finally:
        server.stop()
    assert not (pgdata / "postmaster.pid").exists()
    initialised = (pgdata / "PG_VERSION").stat().st_mtime_ns
    again = start_embedded(pgdata)
    try:
        assert asyncio.run(_query(again.dsn(), "SELECT to_regclass('kept') IS NOT NULL"))
        # a restart reads the same credentials
        assert asyncio.run(_query(again.app_dsn(), "SELECT current_user")) == "effigate_app"
    finally:
        again.stop()
    assert (pgdata / "PG_VERSION").stat().st_mtime_ns == initialised
    assert not (pgdata / "postmaster.pid").exists()


async def _owner_migrates_and_the_service_role_serves(server: EmbeddedServer) -> None:
    """Every login needs its password; the owner (not a superuser) migrates and creates a
    tenant and a token; the service role serves it."""
    passwords = json.loads((server.pgdata / CREDENTIALS_FILE).read_text())
    assert set(passwords) == {"postgres", "effigate_owner", "effigate_app"}
    assert len(set(passwords.values())) == 3
    for role in passwords:
        with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InterfaceError)):
            await asyncpg.connect(with_user(server.dsn(), role, "wrong"))
    assert await migrate(server.owner_dsn())
    owner = await asyncpg.connect(server.owner_dsn())
    try:
        roles = await owner.fetch(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles"
            " WHERE rolname IN ('effigate_owner', 'effigate_app') ORDER BY rolname"
        )
        assert [tuple(r) for r in roles] == [
            ("effigate_app", False, False), ("effigate_owner", False, False)
        ]
        assert await owner.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ) == "effigate_owner"
        tenant = await create_tenant(owner, "Embedded MSP")
        token = await create_token(owner, tenant)
    finally:
        await owner.close()
    store = await Store.open(server.app_dsn(), adbc_connections=1)
    try:
        async with store.transaction(Principal(tenant, token=token.secret)) as conn:
            await conn.execute("INSERT INTO clients (name) VALUES ('Acme')")
            assert await conn.fetchval("SELECT count(*) FROM clients") == 1
    finally:
        await store.close()


def test_data_directory_defaults_to_dot_effigate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    assert data_dir() == (Path.cwd() / ".effigate" / "pgdata").resolve()
    monkeypatch.setenv(ENV_DATA_DIR, "/srv/effigate/pg")
    assert data_dir() == Path("/srv/effigate/pg")


def test_dsn_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.ENV_ADMIN_DSN, raising=False)
    monkeypatch.setenv(settings.ENV_DSN, "postgresql://svc@db.internal:5432/effigate")
    assert settings.resolve_dsn() == "postgresql://svc@db.internal:5432/effigate"
    # a service pointed at its own server gets no owner's credentials unless given them
    assert settings.resolve_admin_dsn() is None
    with pytest.raises(SystemExit, match="EFFIGATE_ADMIN_DSN"):
        settings.require_admin_dsn("migrate")
    monkeypatch.setenv(settings.ENV_ADMIN_DSN, "postgresql://owner@db.internal:5432/effigate")
    assert settings.resolve_admin_dsn() == "postgresql://owner@db.internal:5432/effigate"
    monkeypatch.setenv(settings.ENV_TEST_DSN, "postgresql://ci@ci-db/effigate")
    assert settings.resolve_test_dsn() == "postgresql://ci@ci-db/effigate"
    monkeypatch.delenv(settings.ENV_TEST_DSN)
    monkeypatch.setattr(settings, "local_server_answers", lambda: True)
    assert settings.resolve_test_dsn() == settings.LOCAL_DSN


def test_dsn_rewriting_keeps_the_socket_directory() -> None:
    socket_dsn = "postgresql://postgres:@/postgres?host=/srv/pg"
    app = dsn_module.with_user(dsn_module.with_database(socket_dsn, "effigate"), "effigate_app")
    assert app == "postgresql://effigate_app@/effigate?host=%2Fsrv%2Fpg"
    assert dsn_module.database_of(app) == "effigate"
