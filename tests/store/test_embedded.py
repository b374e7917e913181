"""The embedded server: started from the wheel, reused across runs, stopped cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from effigate_engine.store import dsn as dsn_module
from effigate_engine.store.embedded import ENV_DATA_DIR, data_dir, start_embedded


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
    finally:
        server.stop()
    assert not (pgdata / "postmaster.pid").exists()
    initialised = (pgdata / "PG_VERSION").stat().st_mtime_ns
    again = start_embedded(pgdata)
    try:
        assert asyncio.run(_query(again.dsn(), "SELECT to_regclass('kept') IS NOT NULL"))
    finally:
        again.stop()
    assert (pgdata / "PG_VERSION").stat().st_mtime_ns == initialised
    assert not (pgdata / "postmaster.pid").exists()


def test_data_directory_defaults_to_dot_effigate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    assert data_dir() == (Path.cwd() / ".effigate" / "pgdata").resolve()
    monkeypatch.setenv(ENV_DATA_DIR, "/srv/effigate/pg")
    assert data_dir() == Path("/srv/effigate/pg")


def test_dsn_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dsn_module.ENV_DSN, "postgresql://svc@db.internal:5432/effigate")
    assert dsn_module.resolve_dsn() == "postgresql://svc@db.internal:5432/effigate"
    monkeypatch.setenv(dsn_module.ENV_TEST_DSN, "postgresql://ci@ci-db/effigate")
    assert dsn_module.resolve_test_dsn() == "postgresql://ci@ci-db/effigate"
    monkeypatch.delenv(dsn_module.ENV_TEST_DSN)
    monkeypatch.setattr(dsn_module, "local_server_answers", lambda: True)
    assert dsn_module.resolve_test_dsn() == dsn_module.LOCAL_DSN


def test_dsn_rewriting_keeps_the_socket_directory() -> None:
    socket_dsn = "postgresql://postgres:@/postgres?host=/srv/pg"
    app = dsn_module.with_user(dsn_module.with_database(socket_dsn, "effigate"), "effigate_app")
    assert app == "postgresql://effigate_app@/effigate?host=%2Fsrv%2Fpg"
    assert dsn_module.database_of(app) == "effigate"
