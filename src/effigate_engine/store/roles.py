"""The two roles of a deployment: the owner, who migrates, and the service role, which serves.

The owner (or a superuser) owns the schema and runs ``effigate migrate`` with
``EFFIGATE_ADMIN_DSN``; the service connects with ``EFFIGATE_DSN`` as ``effigate_app``, a role
row-level security binds, which owns nothing and holds no privilege to lock, truncate or alter
a table. A service DSN logging in as anything more powerful is refused at start, since
row-level security would not bind it.
"""

from __future__ import annotations

import asyncpg

from effigate_engine.store.errors import StoreError

_ROLE_SQL = """
    SELECT r.rolname, r.rolsuper, r.rolbypassrls,
        EXISTS (SELECT 1 FROM pg_class c
                WHERE c.relowner = r.oid AND c.relnamespace = 'public'::regnamespace) AS owns
    FROM pg_roles r WHERE r.rolname = current_user
"""


async def require_service_role(conn: asyncpg.Connection) -> None:
    """Refuse a connection whose role row-level security would not bind: a superuser, a role
    with ``BYPASSRLS``, or the owner of the schema's tables (:class:`StoreError`)."""
    role = await conn.fetchrow(_ROLE_SQL)
    if role["rolsuper"] or role["rolbypassrls"] or role["owns"]:
        what = (
            "a superuser"
            if role["rolsuper"]
            else "a role that bypasses row-level security"
            if role["rolbypassrls"]
            else "the owner of the tables"
        )
        raise StoreError(
            "EFFIGATE_DSN",
            role["rolname"],
            f"is {what}, which row-level security does not bind: connect the service as "
            "effigate_app (EFFIGATE_DSN) and give the owner's DSN as EFFIGATE_ADMIN_DSN",
        )
