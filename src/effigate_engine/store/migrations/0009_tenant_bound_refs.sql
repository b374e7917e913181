-- The reference checks of the bulk tables look each reference up by its key, with the tenant
-- a variable rather than the transition table's column.
--
-- These triggers run as the owner, and FORCE binds the owner to the policies like any role but
-- a superuser: every scan of the referenced table carries the policy's own
-- tenant_id = <bound tenant>. Joined to the transition table by t.tenant_id = n.tenant_id as
-- well, the two equalities on tenant_id multiplied their default selectivities (the tables
-- keep no column statistics, 0006), the planner expected one row from any index that leads
-- with tenant_id, and it chose tickets_by_client (tenant_id, client_id) with the ticket id a
-- mere filter: every event of an insert scanned all its tenant's tickets (20,000 tickets,
-- 72,497 events: 41-52 s on the embedded server, 0.6-1.1 s with the checks below).
--
-- Comparing the tenant with a plpgsql variable removes the double count, but the same missing
-- statistics make any tenant's rows look few (0.5% of the table, where one tenant may own them
-- all), and a plan that expects few rows may scan them once per reference (a materialized
-- nested loop, or an anti join under LIMIT 1 that expects to stop at once). So the lookups are
-- fenced into a per-reference shape: a LATERAL sub-select with a row lock (never pulled up:
-- always a nested loop over the references, each one a primary-key lookup) locks the
-- referenced rows and counts them; only when one is missing does a second query look for it
-- (an EXISTS with OFFSET 0 stays a per-reference sub-plan) and for the statement's row to name.
-- The statement's rows are read once, grouped by tenant (one group, unless a superuser writes
-- for several). What is checked, what is locked and the messages are unchanged.

CREATE OR REPLACE FUNCTION effigate_ticket_events_refs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    refs record;
    tenant uuid;
    locked bigint;
    missing text;
    bad record;
BEGIN
    FOR refs IN
        SELECT n.tenant_id, array_agg(DISTINCT n.ticket_id) AS tickets
        FROM new_rows n GROUP BY n.tenant_id
    LOOP
        tenant := refs.tenant_id;
        SELECT count(*) INTO locked FROM unnest(refs.tickets) u(id)
        CROSS JOIN LATERAL (SELECT 1 FROM tickets t WHERE t.tenant_id = tenant AND t.id = u.id
                            FOR KEY SHARE) r;
        CONTINUE WHEN locked = cardinality(refs.tickets);
        SELECT u.id INTO missing FROM unnest(refs.tickets) u(id)
        WHERE NOT EXISTS (SELECT 1 FROM tickets t WHERE t.tenant_id = tenant AND t.id = u.id
                          OFFSET 0)
        LIMIT 1;
        SELECT n.id, n.ticket_id INTO bad FROM new_rows n
        WHERE n.tenant_id = tenant AND n.ticket_id = missing
        LIMIT 1;
        PERFORM effigate_refuse('ticket_events', 'ticket_id', format(
            'ticket event %L: ticket_id %L is not a ticket of this tenant', bad.id,
            bad.ticket_id));
    END LOOP;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION effigate_time_logs_refs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    refs record;
    tenant uuid;
    locked bigint;
    missing bigint;
    bad record;
BEGIN
    FOR refs IN
        SELECT n.tenant_id, array_agg(DISTINCT n.contract_id) AS contracts
        FROM new_rows n GROUP BY n.tenant_id
    LOOP
        tenant := refs.tenant_id;
        SELECT count(*) INTO locked FROM unnest(refs.contracts) u(id)
        CROSS JOIN LATERAL (SELECT 1 FROM contracts c WHERE c.tenant_id = tenant
                            AND c.id = u.id FOR KEY SHARE) r;
        CONTINUE WHEN locked = cardinality(refs.contracts);
        SELECT u.id INTO missing FROM unnest(refs.contracts) u(id)
        WHERE NOT EXISTS (SELECT 1 FROM contracts c WHERE c.tenant_id = tenant AND c.id = u.id
                          OFFSET 0)
        LIMIT 1;
        SELECT n.id, n.contract_id INTO bad FROM new_rows n
        WHERE n.tenant_id = tenant AND n.contract_id = missing
        LIMIT 1;
        PERFORM effigate_refuse('time_logs', 'contract_id', format(
            'time log %L: contract_id %s is not a contract of this tenant', bad.id,
            bad.contract_id));
    END LOOP;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION effigate_tickets_refs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    refs record;
    tenant uuid;
    locked_clients bigint;
    locked_contracts bigint;
    missing bigint;
    bad record;
BEGIN
    FOR refs IN
        SELECT n.tenant_id, array_agg(DISTINCT n.client_id) AS clients,
               coalesce(array_agg(DISTINCT n.contract_id)
                        FILTER (WHERE n.contract_id IS NOT NULL), '{}') AS contracts
        FROM new_rows n GROUP BY n.tenant_id
    LOOP
        tenant := refs.tenant_id;
        SELECT count(*) INTO locked_clients FROM unnest(refs.clients) u(id)
        CROSS JOIN LATERAL (SELECT 1 FROM clients c WHERE c.tenant_id = tenant AND c.id = u.id
                            FOR KEY SHARE) r;
        SELECT count(*) INTO locked_contracts FROM unnest(refs.contracts) u(id)
        CROSS JOIN LATERAL (SELECT 1 FROM contracts c WHERE c.tenant_id = tenant
                            AND c.id = u.id FOR KEY SHARE) r;
        IF locked_clients < cardinality(refs.clients) THEN
            SELECT u.id INTO missing FROM unnest(refs.clients) u(id)
            WHERE NOT EXISTS (SELECT 1 FROM clients c WHERE c.tenant_id = tenant
                              AND c.id = u.id OFFSET 0)
            LIMIT 1;
            SELECT n.id, n.client_id INTO bad FROM new_rows n
            WHERE n.tenant_id = tenant AND n.client_id = missing
            LIMIT 1;
            PERFORM effigate_refuse('tickets', 'client_id', format(
                'ticket %L: client_id %s is not a client of this tenant', bad.id, bad.client_id));
        END IF;
        IF locked_contracts < cardinality(refs.contracts) THEN
            SELECT u.id INTO missing FROM unnest(refs.contracts) u(id)
            WHERE NOT EXISTS (SELECT 1 FROM contracts c WHERE c.tenant_id = tenant
                              AND c.id = u.id OFFSET 0)
            LIMIT 1;
            SELECT n.id, n.contract_id INTO bad FROM new_rows n
            WHERE n.tenant_id = tenant AND n.contract_id = missing
            LIMIT 1;
            PERFORM effigate_refuse('tickets', 'contract_id', format(
                'ticket %L: contract_id %s is not a contract of this tenant', bad.id,
                bad.contract_id));
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
