-- Effigate Engine schema, version 14: the event outbox. Every event (an SLA warning,
-- escalation, breach or met target; a prepaid bucket running low or exhausted; an invoice
-- issued, paid or overdue) is a row written in the same transaction as the change that causes
-- it, so an event exists exactly when its cause was committed. See docs/events.md.
--
-- Position and cursors: `seq` is insert order within the tenant, not commit order; `xid` is the writing
-- transaction (its top-level id, set by the database, never by the writer). A reader delivers
-- rows ordered by (xid, seq), only those with xid < pg_snapshot_xmin(pg_current_snapshot()):
-- every transaction that could still add a row at a smaller position has then finished. The
-- cursor is the last delivered (xid, seq).
--
-- Exactly once: `dedupe_key` names the transition (`sla:<ticket>:<metric>:BREACHED`,
-- `bucket:<contract>:...`, `invoice:<id>:PAID`, ...), unique per tenant; writers insert with
-- ON CONFLICT (tenant_id, dedupe_key) DO NOTHING, so a re-sent or recomputed change writes
-- nothing new.
--
-- Tenant-bound as every table (0001/0006/0009): row-level security forced, tenant_id defaulting
-- to the claimed tenant (verified by the policy's WITH CHECK), keys leading with tenant_id,
-- no column statistics, column-level privileges for the service role. Append-only.

CREATE TABLE events (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    seq bigint NOT NULL,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    dedupe_key text NOT NULL CHECK (dedupe_key <> '' AND length(dedupe_key) <= 500),
    type text NOT NULL CHECK (type IN ('SLA_WARNING', 'SLA_ESCALATION', 'SLA_BREACHED',
        'SLA_MET', 'BUCKET_LOW_BALANCE', 'BUCKET_EXHAUSTED', 'INVOICE_ISSUED', 'INVOICE_PAID',
        'INVOICE_OVERDUE')),
    client_id bigint,
    subject text NOT NULL CHECK (subject <> '' AND length(subject) <= 500),
    occurred_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    data jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(data) = 'object'),
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, dedupe_key),
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients (tenant_id, id)
);
-- The reading order: (xid, seq) within a tenant.
CREATE INDEX events_by_position ON events (tenant_id, xid, seq);

-- A writer may not choose its position: xid is always the inserting transaction's, seq the
-- next number of the tenant's own counter (as ids are, 0006: (counter << 20) | tag), so the
-- positions a tenant sees count nothing but its own rows.
CREATE FUNCTION effigate_events_position() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    source record;
BEGIN
    NEW.xid := pg_current_xact_id();
    NEW.seq := NULL;
    SELECT t.tag, t.counter INTO source FROM effigate_private.tenant_ids t
    WHERE t.tenant_id = NEW.tenant_id;
    IF FOUND THEN
        NEW.seq := (nextval(source.counter) << 20) | source.tag;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER set_position BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION effigate_events_position();

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION effigate_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_append_only();

-- Readers wake at once: every statement that inserts events notifies channel `effigate_events`
-- with each tenant id it wrote for (as text). PostgreSQL delivers the notification when the
-- transaction commits, never for one rolled back, and sends equal payloads of one transaction
-- once. Statement-level: one notification per tenant per statement, not per row.
CREATE FUNCTION effigate_events_notify() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    t uuid;
BEGIN
    FOR t IN SELECT DISTINCT i.tenant_id FROM inserted i LOOP
        PERFORM pg_notify('effigate_events', t::text);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER notify AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_events_notify();

REVOKE ALL ON FUNCTION effigate_events_position() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_events_position() TO effigate_app;
REVOKE ALL ON FUNCTION effigate_events_notify() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_events_notify() TO effigate_app;

-- Isolation, privileges and statistics as for every table the service reads (0006).
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events
    USING (tenant_id = (SELECT effigate_current_tenant()))
    WITH CHECK (tenant_id = (SELECT effigate_current_tenant()));
REVOKE ALL ON events FROM effigate_app;
GRANT SELECT ON events TO effigate_app;
-- append-only: inserts of what a writer states, never a position or a write time
GRANT INSERT (tenant_id, id, dedupe_key, type, client_id, subject, occurred_at, data)
    ON events TO effigate_app;
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM effigate_app;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT a.attname FROM pg_attribute a
        WHERE a.attrelid = 'public.events'::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
    LOOP
        EXECUTE format('ALTER TABLE events ALTER COLUMN %I SET STATISTICS 0', t.attname);
    END LOOP;
END
$$;
