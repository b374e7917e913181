-- Effigate Engine schema, version 10: one statement for each warm read of the SLA service.
--
-- A transaction of the service costs BEGIN, the binding, its queries and COMMIT, each a round
-- trip. The two reads the service answers most often are each one function here, called as a
-- single statement outside an explicit transaction (the statement is its own transaction): it
-- binds the tenant with effigate_bind(token), exactly as a transaction of the service does,
-- then reads. The binding is transaction-local, so it ends with the statement. Both functions
-- are SECURITY INVOKER: they run as the service role, so row-level security applies to every
-- row they read, and only the service role may execute them. See docs/store.md,
-- "Tenant isolation and binding".

-- The current version of SLA policy `policy` (NULL: no live policy of that id) and the live
-- calendars of the tenant as `id:version` by id (what the service's ruleset cache is keyed by),
-- for the tenant of bearer token `token`, returned with it.
CREATE FUNCTION effigate_policy_versions(token text, policy bigint)
    RETURNS TABLE (tenant_id uuid, policy_version integer, calendars text)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    bound uuid := public.effigate_bind(token);
BEGIN
    RETURN QUERY
    SELECT bound,
        (SELECT p.version FROM public.sla_policies p WHERE p.id = policy AND p.retired_at IS NULL),
        (SELECT coalesce(string_agg(c.id::text || ':' || c.version::text, ',' ORDER BY c.id), '')
         FROM public.calendars c WHERE c.retired_at IS NULL);
END
$$;

-- Everything GetTicketStatus reads, for the tenant of bearer token `token`: the ticket
-- `ticket` (NULLs when there is none), its events at or before `as_of` (all when NULL) as
-- parallel arrays, the SLA policy asked for (`policy`, else the one of the ticket's contract)
-- with its current version (NULL: no live policy of that id), and the tenant's live calendars
-- as `id:version` by id.
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
        t.first_response_at, t.resolved_at, e.ids, e.kinds, e.times, e.details,
        w.wanted, p.version, k.calendars
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

REVOKE ALL ON FUNCTION effigate_policy_versions(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_policy_versions(text, bigint) TO effigate_app;
REVOKE ALL ON FUNCTION effigate_ticket_status_inputs(text, text, timestamptz, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_ticket_status_inputs(text, text, timestamptz, bigint)
    TO effigate_app;
