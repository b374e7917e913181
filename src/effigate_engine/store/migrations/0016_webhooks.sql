-- Effigate Engine schema, version 16: outbound webhooks — a tenant's endpoints (where events
-- are POSTed, signed per the Standard Webhooks specification) and one delivery per (endpoint,
-- event), created by a trigger in the transaction that writes the event. See docs/webhooks.md.
--
-- Both tables are tenant-bound exactly like the others (0001/0006): row-level security forced,
-- tenant_id defaulting to the claimed tenant (verified by the policies' WITH CHECK), keys
-- leading with tenant_id, no column statistics, column-level privileges for the service role.
-- The one exception is the delivery worker of a server process: it works for every tenant at
-- once, without any tenant's token, through three narrow functions (section 4) that run as the
-- owner and touch nothing but due deliveries.

-- 1. Endpoints -----------------------------------------------------------------------------

CREATE TABLE webhook_endpoints (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    id bigint NOT NULL,
    -- http(s) only; which hosts are allowed is the server's setting (docs/webhooks.md)
    url text NOT NULL CHECK (url ~* '^https?://[^/?#@\s]+' AND length(url) <= 2048),
    -- the signing secret, `whsec_` + base64 of 24 to 64 random bytes; the service role may
    -- write it but never read it back (shown once, on creation or rotation)
    secret text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/]{32,88}={0,2}$'),
    -- the secret before the last rotation, still signed with until previous_expires_at
    previous_secret text CHECK (previous_secret ~ '^whsec_[A-Za-z0-9+/]{32,88}={0,2}$'),
    previous_expires_at timestamptz,
    format text NOT NULL DEFAULT 'STANDARD' CHECK (format IN ('STANDARD', 'SLACK', 'TEAMS')),
    -- event types delivered; empty: every type
    event_types text[] NOT NULL DEFAULT '{}'
        CHECK (array_position(event_types, NULL) IS NULL
               AND event_types <@ ARRAY['SLA_WARNING', 'SLA_ESCALATION', 'SLA_BREACHED',
                   'SLA_MET', 'BUCKET_LOW_BALANCE', 'BUCKET_EXHAUSTED', 'INVOICE_ISSUED',
                   'INVOICE_PAID', 'INVOICE_OVERDUE']::text[]),
    -- only events of this client; NULL: every client's (and events of no client)
    client_id bigint,
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    active boolean NOT NULL DEFAULT true,
    -- tries of one delivery before it becomes DEAD
    max_attempts integer NOT NULL DEFAULT 8 CHECK (max_attempts BETWEEN 1 AND 50),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients (tenant_id, id),
    CHECK ((previous_secret IS NULL) = (previous_expires_at IS NULL))
);
CREATE TRIGGER assign_id BEFORE INSERT ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION effigate_assign_id();

-- A new secret keeps the old one signing until previous_expires_at (the writer sets it with
-- the secret; NULL: the old secret stops at once). The service role never reads either.
CREATE FUNCTION effigate_webhook_secret_rotation() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
        PERFORM effigate_refuse(TG_TABLE_NAME, 'tenant_id', 'an endpoint keeps its tenant');
    END IF;
    IF NEW.secret IS DISTINCT FROM OLD.secret THEN
        NEW.previous_secret := CASE WHEN NEW.previous_expires_at IS NULL THEN NULL
                                    ELSE OLD.secret END;
    ELSE
        NEW.previous_secret := OLD.previous_secret;
        NEW.previous_expires_at := OLD.previous_expires_at;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER secret_rotation BEFORE UPDATE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION effigate_webhook_secret_rotation();

-- 2. Deliveries ----------------------------------------------------------------------------
--
-- One row per (endpoint, event): the event's id is the webhook-id of every attempt. PENDING
-- rows carry the instant of their next attempt (a claimed row's is the end of its lease);
-- DELIVERED and DEAD rows carry none. Deleting an endpoint deletes its deliveries.

CREATE TABLE webhook_deliveries (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    id bigint NOT NULL,
    endpoint_id bigint NOT NULL,
    event_id uuid NOT NULL,
    state text NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'DELIVERED', 'DEAD')),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz,
    last_attempt_at timestamptz,
    -- the HTTP status of the last attempt (NULL: no answer), and why it failed
    last_status integer CHECK (last_status BETWEEN 100 AND 599),
    last_error text CHECK (length(last_error) <= 1000),
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, endpoint_id, event_id),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id)
        ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, event_id) REFERENCES events (tenant_id, id),
    CHECK ((state = 'PENDING') = (next_attempt_at IS NOT NULL)),
    CHECK (state <> 'DELIVERED' OR delivered_at IS NOT NULL)
);
CREATE TRIGGER assign_id BEFORE INSERT ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION effigate_assign_id();
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (tenant_id, endpoint_id, id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (tenant_id, event_id);
-- The worker's queue: pending rows only (few: those due, leased or waiting to be retried), so
-- the worker's search across tenants reads this small index whole, and it still leads with
-- tenant_id as every index does.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (tenant_id, next_attempt_at)
    WHERE state = 'PENDING';

-- 3. A delivery for every matching active endpoint, in the event's transaction -------------
--
-- Statement-level, over the rows the statement really inserted (an event skipped by ON
-- CONFLICT DO NOTHING has no row in new_events, so a re-sent event is not delivered twice).
-- Runs as the owner so the service role needs no INSERT on deliveries; the join keeps every
-- delivery within its event's tenant. Notifies the worker, which hears it on commit.
CREATE FUNCTION effigate_events_webhook_deliveries() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    created bigint;
BEGIN
    INSERT INTO public.webhook_deliveries (tenant_id, endpoint_id, event_id, next_attempt_at)
    SELECT e.tenant_id, w.id, e.id, now()
    FROM new_events e
    JOIN public.webhook_endpoints w ON w.tenant_id = e.tenant_id
    WHERE w.active
        AND (cardinality(w.event_types) = 0 OR e.type = ANY (w.event_types))
        AND (w.client_id IS NULL OR w.client_id = e.client_id)
    ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING;
    GET DIAGNOSTICS created = ROW_COUNT;
    IF created > 0 THEN
        PERFORM pg_notify('effigate_webhooks', '');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_deliveries AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_events_webhook_deliveries();

-- 4. The delivery worker's functions (all tenants, no token) -------------------------------
--
-- The owner reads these rows only through the functions below; when the owner is not a
-- superuser, FORCE would hide every tenant's rows from them (as for token lookups, 0006).
CREATE POLICY webhook_worker ON webhook_endpoints TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY webhook_worker ON webhook_deliveries TO CURRENT_USER USING (true)
    WITH CHECK (true);
CREATE POLICY webhook_worker ON events FOR SELECT TO CURRENT_USER USING (true);

-- Claim up to `batch` due deliveries of active endpoints, oldest due first, skipping rows
-- another worker holds: each claimed row counts one more attempt and is leased for
-- `lease_seconds` (its next_attempt_at moves there, so a worker that dies mid-attempt leaves
-- it to be tried again once the lease ends). Returns what the attempt needs: the endpoint's
-- url, format and signing secrets (current first; the previous one while it lasts) and the
-- event.
CREATE FUNCTION effigate_claim_webhook_deliveries(batch integer, lease_seconds double precision)
    RETURNS TABLE (tenant_id uuid, delivery_id bigint, endpoint_id bigint, attempt integer,
                   max_attempts integer, url text, format text, secrets text[],
                   event_id uuid, event_type text, subject text, client_id bigint,
                   occurred_at timestamptz, data jsonb)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT d.tenant_id, d.id
        FROM public.webhook_deliveries d
        JOIN public.webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
        WHERE d.state = 'PENDING' AND d.next_attempt_at <= clock_timestamp() AND w.active
        ORDER BY d.next_attempt_at
        LIMIT batch
        FOR UPDATE OF d SKIP LOCKED
    ), claimed AS (
        UPDATE public.webhook_deliveries d
        SET attempts = d.attempts + 1,
            last_attempt_at = clock_timestamp(),
            next_attempt_at = clock_timestamp() + make_interval(secs => lease_seconds)
        FROM due
        WHERE d.tenant_id = due.tenant_id AND d.id = due.id
        RETURNING d.tenant_id, d.id, d.endpoint_id, d.event_id, d.attempts
    )
    SELECT c.tenant_id, c.id, c.endpoint_id, c.attempts, w.max_attempts, w.url, w.format,
        CASE WHEN w.previous_secret IS NOT NULL AND w.previous_expires_at > clock_timestamp()
             THEN ARRAY[w.secret, w.previous_secret] ELSE ARRAY[w.secret] END,
        e.id, e.type, e.subject, e.client_id, e.occurred_at, e.data
    FROM claimed c
    JOIN public.webhook_endpoints w ON w.tenant_id = c.tenant_id AND w.id = c.endpoint_id
    JOIN public.events e ON e.tenant_id = c.tenant_id AND e.id = c.event_id;
END
$$;

-- Record the outcome of attempt number `attempt` of a delivery: DELIVERED, or DEAD once the
-- endpoint's max_attempts are spent, else PENDING again after `retry_seconds`. An outcome for
-- an attempt that is no longer the delivery's latest (its lease ran out and another attempt
-- began, or it was redelivered) changes nothing. Returns the state written, NULL if none.
CREATE FUNCTION effigate_finish_webhook_delivery(
    tenant uuid, delivery bigint, attempt integer, delivered boolean, status integer,
    error text, retry_seconds double precision)
    RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    written text;
BEGIN
    UPDATE public.webhook_deliveries d
    SET state = CASE WHEN delivered THEN 'DELIVERED'
                     WHEN d.attempts >= w.max_attempts THEN 'DEAD' ELSE 'PENDING' END,
        next_attempt_at = CASE WHEN delivered OR d.attempts >= w.max_attempts THEN NULL
                     ELSE clock_timestamp() + make_interval(secs => retry_seconds) END,
        delivered_at = CASE WHEN delivered THEN clock_timestamp() ELSE d.delivered_at END,
        last_status = status,
        last_error = left(error, 1000)
    FROM public.webhook_endpoints w
    WHERE d.tenant_id = tenant AND d.id = delivery AND d.attempts = attempt
        AND d.state = 'PENDING' AND w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
    RETURNING d.state INTO written;
    RETURN written;
END
$$;

-- When the next delivery of an active endpoint falls due (NULL: none pending).
CREATE FUNCTION effigate_next_webhook_due() RETURNS timestamptz
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT min(d.next_attempt_at)
    FROM public.webhook_deliveries d
    JOIN public.webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
    WHERE d.state = 'PENDING' AND w.active
$$;

-- Delete an endpoint of the bound tenant and its deliveries (the service role has no DELETE
-- on any table); whether it existed.
CREATE FUNCTION effigate_delete_webhook_endpoint(endpoint bigint) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    tenant uuid := public.effigate_current_tenant();
BEGIN
    DELETE FROM public.webhook_endpoints w WHERE w.tenant_id = tenant AND w.id = endpoint;
    RETURN FOUND;
END
$$;

REVOKE ALL ON FUNCTION effigate_delete_webhook_endpoint(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_delete_webhook_endpoint(bigint) TO effigate_app;
REVOKE ALL ON FUNCTION effigate_events_webhook_deliveries() FROM PUBLIC;
REVOKE ALL ON FUNCTION effigate_claim_webhook_deliveries(integer, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_claim_webhook_deliveries(integer, double precision)
    TO effigate_app;
REVOKE ALL ON FUNCTION effigate_finish_webhook_delivery(uuid, bigint, integer, boolean, integer,
    text, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_finish_webhook_delivery(uuid, bigint, integer, boolean,
    integer, text, double precision) TO effigate_app;
REVOKE ALL ON FUNCTION effigate_next_webhook_due() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_next_webhook_due() TO effigate_app;

-- 5. Isolation, privileges and statistics as for every table the service reads (0006) ------

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_endpoints', 'webhook_deliveries'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = (SELECT effigate_current_tenant())) '
            'WITH CHECK (tenant_id = (SELECT effigate_current_tenant()))', t);
        EXECUTE format('REVOKE ALL ON %I FROM effigate_app', t);
    END LOOP;
END
$$;

-- Endpoints: every column but the secrets is readable; the secret is written, never read.
GRANT SELECT (tenant_id, id, url, previous_expires_at, format, event_types, client_id,
    description, active, max_attempts, created_at, updated_at) ON webhook_endpoints
    TO effigate_app;
GRANT INSERT (tenant_id, url, secret, format, event_types, client_id, description, active,
    max_attempts) ON webhook_endpoints TO effigate_app;
GRANT UPDATE (url, secret, previous_expires_at, format, event_types, client_id, description,
    active, max_attempts) ON webhook_endpoints TO effigate_app;
-- Deliveries: created by the trigger, advanced by the worker's functions; the service role
-- only reads them and puts one back in the queue (redeliver).
GRANT SELECT ON webhook_deliveries TO effigate_app;
GRANT UPDATE (state, attempts, next_attempt_at) ON webhook_deliveries TO effigate_app;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS tbl, a.attname
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.relname IN ('webhook_endpoints', 'webhook_deliveries')
            AND c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS 0', t.tbl, t.attname);
    END LOOP;
END
$$;
