-- Effigate Engine schema, version 15: the SLA transition schedule — for every open ticket metric
-- the next instant at which it warns, escalates a step or breaches. See docs/events-scheduler.md.
--
-- One row per (ticket, metric) the ticket's policy defines. `next_at` NULL: nothing pending
-- (paused, stopped, or every transition fired). The row is rewritten in the transaction of every
-- change that can move it (ticket events, policy and calendar changes, Recompute) and in the
-- transaction that fires a transition (with the events it appends). `fired_through`: the instant
-- up to which transitions were announced (a reschedule never skips a due transition before it).
--
-- Tenant-bound exactly like the other tables (0001/0006/0013). The firing loop of a server finds
-- the tenants with due rows through effigate_sla_due() (instants and tenants only, no ticket of
-- any tenant) and then works in a transaction bound to one tenant (effigate_bind_scheduled).

CREATE TABLE sla_schedule (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    ticket_id text NOT NULL,
    metric text NOT NULL CHECK (metric IN ('FIRST_RESPONSE', 'RESOLUTION_PLAN', 'RESOLUTION')),
    next_at timestamptz,
    next_kind text CHECK (next_kind IN ('WARNING', 'ESCALATION', 'BREACHED')),
    -- the 1-based ladder step of an ESCALATION
    step integer CHECK (step >= 1),
    fired_through timestamptz,
    -- the metric was running (not stopped) when last scheduled: its stop is announced (SLA_MET)
    running boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, ticket_id, metric),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id),
    CHECK ((next_at IS NULL) = (next_kind IS NULL)),
    CHECK ((next_kind IS NOT DISTINCT FROM 'ESCALATION') = (step IS NOT NULL))
);
-- What the firing loop reads: a tenant's pending rows by instant (every index leads with the
-- tenant, as everywhere; effigate_sla_due walks it tenant by tenant).
CREATE INDEX sla_schedule_due ON sla_schedule (tenant_id, next_at)
    WHERE next_at IS NOT NULL;

ALTER TABLE sla_schedule ENABLE ROW LEVEL SECURITY;
ALTER TABLE sla_schedule FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sla_schedule
    USING (tenant_id = (SELECT effigate_current_tenant()))
    WITH CHECK (tenant_id = (SELECT effigate_current_tenant()));
REVOKE ALL ON sla_schedule FROM effigate_app;
GRANT SELECT ON sla_schedule TO effigate_app;
GRANT INSERT (tenant_id, ticket_id, metric, next_at, next_kind, step, fired_through, running,
    updated_at) ON sla_schedule TO effigate_app;
GRANT UPDATE (next_at, next_kind, step, fired_through, running, updated_at) ON sla_schedule
    TO effigate_app;
-- no DELETE: a metric the ticket's policy no longer defines keeps its row, with nothing pending

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT a.attname FROM pg_attribute a
        WHERE a.attrelid = 'sla_schedule'::regclass AND a.attnum > 0 AND NOT a.attisdropped
    LOOP
        EXECUTE format('ALTER TABLE sla_schedule ALTER COLUMN %I SET STATISTICS 0', t.attname);
    END LOOP;
END
$$;

-- The instants at which some tenant has a transition due, up to `until`, earliest first, at most
-- `max_rows` (tenant, instant) pairs: what a firing loop needs to know when to wake and for whom.
-- No ticket id, metric or count of any tenant leaves it.
CREATE FUNCTION effigate_sla_due(until timestamptz, max_rows integer)
    RETURNS TABLE (tenant_id uuid, next_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT t.id, d.next_at FROM public.tenants t
        CROSS JOIN LATERAL (
            SELECT DISTINCT s.next_at FROM public.sla_schedule s
            WHERE s.tenant_id = t.id AND s.next_at IS NOT NULL AND s.next_at <= until
            ORDER BY s.next_at
            LIMIT greatest(max_rows, 0)
        ) d
        ORDER BY d.next_at
        LIMIT greatest(max_rows, 0)
    $$;
REVOKE ALL ON FUNCTION effigate_sla_due(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_sla_due(timestamptz, integer) TO effigate_app;

-- The tenants with an issued invoice past due at `at` and not settled (the overdue sweep's
-- work list): tenant ids only.
CREATE FUNCTION effigate_overdue_tenants(at timestamptz) RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT t.id FROM public.tenants t
        WHERE EXISTS (SELECT 1 FROM public.invoices i
                      WHERE i.tenant_id = t.id AND i.status = 'ISSUED' AND i.due_at < at
                        AND i.total_minor > i.paid_minor + i.credited_minor)
        ORDER BY t.id
    $$;
REVOKE ALL ON FUNCTION effigate_overdue_tenants(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_overdue_tenants(timestamptz) TO effigate_app;

-- The firing loop's binding: the current transaction is bound to `tenant` only when the tenant
-- has a pending SLA transition or an issued invoice past due and unsettled (the work the loop
-- does for it); otherwise SQLSTATE 28000 and nothing is bound. Lasts until the transaction
-- ends, like effigate_bind.
CREATE FUNCTION effigate_bind_scheduled(tenant uuid) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.sla_schedule s
                   WHERE s.tenant_id = tenant AND s.next_at IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM public.invoices i
                       WHERE i.tenant_id = tenant AND i.status = 'ISSUED' AND i.due_at < now()
                         AND i.total_minor > i.paid_minor + i.credited_minor) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_authorization_specification',
            MESSAGE = 'the tenant has no pending SLA transition or overdue invoice: nothing is bound';
    END IF;
    PERFORM set_config('effigate.tenant_id', tenant::text, true),
        set_config('effigate.tenant_proof', effigate_private.binding_proof(tenant), true);
    RETURN tenant;
END
$$;
REVOKE ALL ON FUNCTION effigate_bind_scheduled(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_bind_scheduled(uuid) TO effigate_app;

-- A change of the schedule wakes the firing loops (payload: the tenant id), so a transition
-- that became due sooner than the loop's next wake-up is not waited for.
CREATE FUNCTION effigate_sla_schedule_notify() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM pg_notify('effigate_sla_schedule', t.tenant_id::text)
    FROM (SELECT DISTINCT tenant_id FROM changed) t;
    RETURN NULL;
END
$$;
CREATE TRIGGER schedule_notify_insert AFTER INSERT ON sla_schedule
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_sla_schedule_notify();
CREATE TRIGGER schedule_notify_update AFTER UPDATE ON sla_schedule
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_sla_schedule_notify();
REVOKE ALL ON FUNCTION effigate_sla_schedule_notify() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_sla_schedule_notify() TO effigate_app;
