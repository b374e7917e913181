-- Effigate Engine schema, version 12: the whole ticket.
--
-- A ticket carries what SLA rules, routing and contract scope match on: its support level, job
-- type, after-hours cover, channel, subject, requester, queue, assignee, asset and tags. The
-- columns hold the normal form the service writes (effigate_engine.ticket_fields); the checks
-- below keep any other writer (bulk COPY, a superuser) to it. Existing tickets take nulls,
-- false and no tags. The columns are current values, folded from the events like priority
-- (SUPPORT_LEVEL_CHANGED, JOB_TYPE_CHANGED, ASSIGNED, QUEUE_CHANGED, TAGS_CHANGED;
-- docs/store.md, "Tickets").
--
-- Adding a column with a constant default rewrites no row; each check scans the table once.

-- A tag set in normal form: one dimension, at most 100, no null, each 1..64 characters without
-- comma or surrounding space, strictly ascending bytewise (sorted, no duplicates). A loop in
-- plpgsql: the same test as one SQL query over unnest() cost about 23 µs a row in a bulk insert
-- (4.6 s of 200,000 rows), this one about 4 µs. No SET search_path (which costs as much again
-- per call): it reads no table, and the built-in functions and operators it calls resolve in
-- pg_catalog, searched first when the path does not name it.
CREATE FUNCTION effigate_tags_normal(tags text[]) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
DECLARE
    tag text;
    previous text;
BEGIN
    IF cardinality(tags) > 100 OR array_ndims(tags) > 1 THEN
        RETURN false;
    END IF;
    FOREACH tag IN ARRAY tags LOOP
        IF tag IS NULL OR char_length(tag) NOT BETWEEN 1 AND 64 OR tag <> btrim(tag)
                OR strpos(tag, ',') > 0
                OR (previous IS NOT NULL AND NOT previous COLLATE "C" < tag COLLATE "C") THEN
            RETURN false;
        END IF;
        previous := tag;
    END LOOP;
    RETURN true;
END
$$;

ALTER TABLE tickets
    ADD COLUMN support_level text
        CONSTRAINT tickets_support_level CHECK (support_level IN ('L1', 'L2', 'L3', 'SA')),
    ADD COLUMN job_type text
        CONSTRAINT tickets_job_type CHECK (
            char_length(job_type) BETWEEN 1 AND 64 AND job_type = btrim(job_type)),
    ADD COLUMN after_hours boolean NOT NULL DEFAULT false,
    ADD COLUMN channel text
        CONSTRAINT tickets_channel CHECK (
            channel IN ('EMAIL', 'PORTAL', 'PHONE', 'CHAT', 'MONITORING', 'API')),
    ADD COLUMN subject text
        CONSTRAINT tickets_subject CHECK (char_length(subject) BETWEEN 1 AND 1000),
    ADD COLUMN requester text
        CONSTRAINT tickets_requester CHECK (
            char_length(requester) <= 320 AND requester ~ '^[^[:space:]]+@[^@[:space:]]+$'),
    ADD COLUMN queue text
        CONSTRAINT tickets_queue CHECK (
            char_length(queue) BETWEEN 1 AND 200 AND queue = btrim(queue)),
    ADD COLUMN assignee text
        CONSTRAINT tickets_assignee CHECK (
            char_length(assignee) BETWEEN 1 AND 200 AND assignee = btrim(assignee)),
    ADD COLUMN asset text
        CONSTRAINT tickets_asset CHECK (char_length(asset) BETWEEN 1 AND 200),
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}'
        -- most tickets have no tags: those skip the function (a check is evaluated as written)
        CONSTRAINT tickets_tags CHECK (cardinality(tags) = 0 OR effigate_tags_normal(tags));

-- A CREATED event now carries the ticket's initial values as a JSON object; until now its
-- detail was the initial priority alone, and no ticket had any of the new values. Existing
-- CREATED events become {"priority": <detail>}, which says exactly that (a member left out is
-- null), so a fold as of any instant stays exact once the new events arrive. The rewrite reads
-- across tenants: FORCE, when set, is lifted for this transaction only and restored (as in
-- 0006 and 0008).
DO $$
DECLARE
    forced boolean;
BEGIN
    SELECT c.relforcerowsecurity INTO forced FROM pg_class c
    WHERE c.oid = 'ticket_events'::regclass;
    IF forced THEN
        ALTER TABLE ticket_events NO FORCE ROW LEVEL SECURITY;
    END IF;
    UPDATE ticket_events SET detail = json_build_object('priority', detail)::text
    WHERE kind = 'CREATED' AND detail IS NOT NULL AND detail <> '' AND left(detail, 1) <> '{';
    IF forced THEN
        ALTER TABLE ticket_events FORCE ROW LEVEL SECURITY;
    END IF;
END
$$;

-- The queues' unassigned and per-agent open tickets are read by queue and by assignee.
CREATE INDEX tickets_by_queue ON tickets (tenant_id, queue) WHERE queue IS NOT NULL;
CREATE INDEX tickets_by_assignee ON tickets (tenant_id, assignee) WHERE assignee IS NOT NULL;

-- The service role writes the new columns like the others (0006 grants by column).
GRANT INSERT (support_level, job_type, after_hours, channel, subject, requester, queue,
              assignee, asset, tags) ON tickets TO effigate_app;
GRANT UPDATE (support_level, job_type, after_hours, channel, subject, requester, queue,
              assignee, asset, tags) ON tickets TO effigate_app;

REVOKE ALL ON FUNCTION effigate_tags_normal(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_tags_normal(text[]) TO effigate_app;

-- GetTicketStatus's one-statement read (0010) returns the new columns too: its row type
-- changes, so it is dropped and created again (same name, arguments and privileges).
DROP FUNCTION effigate_ticket_status_inputs(text, text, timestamptz, bigint);
CREATE FUNCTION effigate_ticket_status_inputs(
    token text, ticket text, as_of timestamptz, policy bigint)
    RETURNS TABLE (
        tenant_id uuid,
        id text,
        client_id bigint,
        contract_id bigint,
        priority text,
        status text,
        created_at timestamptz,
        first_response_at timestamptz,
        resolved_at timestamptz,
        support_level text,
        job_type text,
        after_hours boolean,
        channel text,
        subject text,
        requester text,
        queue text,
        assignee text,
        asset text,
        tags text[],
        event_ids text[],
        event_kinds text[],
        event_times timestamptz[],
        event_details text[],
        policy_id bigint,
        policy_version integer,
        calendars text)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    bound uuid := public.effigate_bind(token);
BEGIN
    RETURN QUERY
    SELECT bound, t.id, t.client_id, t.contract_id, t.priority, t.status, t.created_at,
        t.first_response_at, t.resolved_at, t.support_level, t.job_type, t.after_hours,
        t.channel, t.subject, t.requester, t.queue, t.assignee, t.asset, t.tags,
        e.ids, e.kinds, e.times, e.details, w.wanted, p.version, k.calendars
    FROM (SELECT 1) AS one
    LEFT JOIN public.tickets t ON t.id = ticket
    LEFT JOIN LATERAL (
        SELECT array_agg(x.id ORDER BY x.occurred_at, x.id) AS ids,
            array_agg(x.kind ORDER BY x.occurred_at, x.id) AS kinds,
            array_agg(x.occurred_at ORDER BY x.occurred_at, x.id) AS times,
            array_agg(x.detail ORDER BY x.occurred_at, x.id) AS details
        FROM public.ticket_events x
        WHERE x.ticket_id = t.id AND (as_of IS NULL OR x.occurred_at <= as_of)
    ) e ON true
    LEFT JOIN LATERAL (
        SELECT coalesce(policy,
            (SELECT c.sla_policy_id FROM public.contracts c WHERE c.id = t.contract_id)) AS wanted
    ) w ON true
    LEFT JOIN public.sla_policies p ON p.id = w.wanted AND p.retired_at IS NULL
    CROSS JOIN LATERAL (
        SELECT coalesce(string_agg(c.id::text || ':' || c.version::text, ',' ORDER BY c.id), '')
        FROM public.calendars c WHERE c.retired_at IS NULL
    ) AS k (calendars);
END
$$;

REVOKE ALL ON FUNCTION effigate_ticket_status_inputs(text, text, timestamptz, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_ticket_status_inputs(text, text, timestamptz, bigint)
    TO effigate_app;
