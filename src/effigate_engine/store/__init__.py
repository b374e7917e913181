"""PostgreSQL store: migrations, tenant isolation, money invariants, bulk Arrow I/O.

The database is the system of record and enforces the invariants that protect money (see
``docs/store.md``). Money is integer minor units (bigint), instants are ``timestamptz``,
durations are whole seconds (bigint).
"""

from effigate_engine.store.arrow_reads import read_arrow, read_arrow_adbc, read_arrow_asyncpg
from effigate_engine.store.batches import (
    STORED_TICKET_EVENTS,
    STORED_TICKETS,
    STORED_TIME_LOGS,
    BulkTable,
    IngestResult,
    prepare_batch,
)
from effigate_engine.store.bulk import connect_adbc, ingest, ingest_adbc, ingest_asyncpg
from effigate_engine.store.dsn import APP_ROLE
from effigate_engine.store.errors import InvariantViolation, MigrationError, StoreError
from effigate_engine.store.migrate import load_migrations, migrate
from effigate_engine.store.settings import resolve_admin_dsn, resolve_dsn, resolve_test_dsn
from effigate_engine.store.tenant import TenantKey, TenantPool, bind, tenant_transaction

__all__ = [
    "APP_ROLE",
    "STORED_TICKETS",
    "STORED_TICKET_EVENTS",
    "STORED_TIME_LOGS",
    "BulkTable",
    "IngestResult",
    "InvariantViolation",
    "MigrationError",
    "StoreError",
    "TenantKey",
    "TenantPool",
    "bind",
    "connect_adbc",
    "ingest",
    "ingest_adbc",
    "ingest_asyncpg",
    "load_migrations",
    "migrate",
    "prepare_batch",
    "read_arrow",
    "read_arrow_adbc",
    "read_arrow_asyncpg",
    "resolve_admin_dsn",
    "resolve_dsn",
    "resolve_test_dsn",
    "tenant_transaction",
]
