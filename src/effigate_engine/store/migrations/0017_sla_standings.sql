-- Effigate Engine schema, version 17: SLA standings loaded back from a scale-out job, the
-- owner's list of tenants for dataset jobs, and tickets by creation for the export. See
-- docs/scale-out.md.
--
-- One row per (ticket, metric): the metric's status, wall-clock deadline, business seconds
-- elapsed and left, stop instant and escalation level under the named policy, as evaluated at
-- `evaluated_at`. Loaded in one transaction per result part (COPY into a temporary table, then
-- an upsert that replaces a row only with one evaluated at the same or a later instant), so a
-- part loaded twice leaves the same rows and an older result never overwrites a newer one.
--
-- Tenant-bound exactly like the other tables (0001/0006/0015): row-level security forced,
-- tenant_id defaulting to the claimed tenant (verified by the policy's WITH CHECK), keys leading
-- with tenant_id, no column statistics, column-level privileges for the service role.

CREATE TABLE sla_standings (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    ticket_id text COLLATE "C" NOT NULL,
    metric text NOT NULL CHECK (metric IN ('FIRST_RESPONSE', 'RESOLUTION_PLAN', 'RESOLUTION')),
    status text NOT NULL
        CHECK (status IN ('ON_TRACK', 'WARNING', 'PAUSED', 'MET', 'BREACHED')),
    -- NULL while paused and not breached
    deadline timestamptz,
    elapsed_seconds bigint NOT NULL CHECK (elapsed_seconds >= 0),
    remaining_seconds bigint NOT NULL,
    stopped_at timestamptz,
    escalation_level integer NOT NULL CHECK (escalation_level >= 0),
    -- the name of the policy the metric was evaluated under
    policy text NOT NULL CHECK (policy <> ''),
    evaluated_at timestamptz NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, ticket_id, metric),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id)
);

ALTER TABLE sla_standings ENABLE ROW LEVEL SECURITY;
ALTER TABLE sla_standings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sla_standings
    USING (tenant_id = (SELECT effigate_current_tenant()))
    WITH CHECK (tenant_id = (SELECT effigate_current_tenant()));
REVOKE ALL ON sla_standings FROM effigate_app;
GRANT SELECT ON sla_standings TO effigate_app;
GRANT INSERT (tenant_id, ticket_id, metric, status, deadline, elapsed_seconds, remaining_seconds,
    stopped_at, escalation_level, policy, evaluated_at, loaded_at) ON sla_standings
    TO effigate_app;
GRANT UPDATE (status, deadline, elapsed_seconds, remaining_seconds, stopped_at,
    escalation_level, policy, evaluated_at, loaded_at) ON sla_standings TO effigate_app;
-- no DELETE: a standing is replaced by a later one, never removed

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT a.attname FROM pg_attribute a
        WHERE a.attrelid = 'sla_standings'::regclass AND a.attnum > 0 AND NOT a.attisdropped
    LOOP
        EXECUTE format('ALTER TABLE sla_standings ALTER COLUMN %I SET STATISTICS 0', t.attname);
    END LOOP;
END
$$;

-- Every tenant's id, for the owner's dataset jobs (export and load-back of all tenants): the
-- owner binds no tenant to list them, and `tenants` shows a bound transaction only its own row.
-- Ids only; not granted to the service role, which learns of no other tenant.
CREATE FUNCTION effigate_tenant_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT i.tenant_id FROM effigate_private.tenant_ids i ORDER BY i.tenant_id $$;
REVOKE ALL ON FUNCTION effigate_tenant_ids() FROM PUBLIC;

-- The export reads a tenant's tickets a month of creation at a time (memory bounded by a
-- month): each month's tickets, and their events through ticket_events_by_ticket, by range.
CREATE INDEX tickets_by_created ON tickets (tenant_id, created_at);
