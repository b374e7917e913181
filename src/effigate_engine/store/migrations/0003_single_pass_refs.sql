-- The reference checks of time logs and tickets (0002) read the statement's transition table
-- twice: once to key-share lock the referenced rows, once more to look for a missing one. Here
-- they read it once, collecting the distinct references, and then work on those few values; the
-- transition table is read again only to name the offending row when a reference is missing.
-- What is checked, what is locked and the messages are unchanged.

CREATE OR REPLACE FUNCTION effigate_time_logs_refs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    refs record;
    missing record;
    bad record;
BEGIN
    SELECT array_agg(d.tenant_id) AS tenants, array_agg(d.contract_id) AS contracts INTO refs
    FROM (SELECT DISTINCT n.tenant_id, n.contract_id FROM new_rows n) d;
    PERFORM 1 FROM contracts c
    WHERE (c.tenant_id, c.id) IN (SELECT u.t, u.c FROM unnest(refs.tenants, refs.contracts) u(t, c))
    FOR KEY SHARE;
    SELECT u.t, u.c INTO missing FROM unnest(refs.tenants, refs.contracts) u(t, c)
    WHERE NOT EXISTS (SELECT 1 FROM contracts c WHERE c.tenant_id = u.t AND c.id = u.c)
    LIMIT 1;
    IF FOUND THEN
        SELECT n.id, n.contract_id INTO bad FROM new_rows n
        WHERE n.tenant_id = missing.t AND n.contract_id = missing.c
        LIMIT 1;
        PERFORM effigate_refuse('time_logs', 'contract_id', format(
            'time log %L: contract_id %s is not a contract of this tenant', bad.id,
            bad.contract_id));
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION effigate_tickets_refs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    refs record;
    missing record;
    bad record;
BEGIN
    SELECT array_agg(d.tenant_id) AS tenants, array_agg(d.client_id) AS clients,
           array_agg(d.contract_id) AS contracts
    INTO refs
    FROM (SELECT DISTINCT n.tenant_id, n.client_id, n.contract_id FROM new_rows n) d;
    PERFORM 1 FROM clients c
    WHERE (c.tenant_id, c.id) IN (SELECT u.t, u.c FROM unnest(refs.tenants, refs.clients) u(t, c))
    FOR KEY SHARE;
    PERFORM 1 FROM contracts c
    WHERE (c.tenant_id, c.id) IN
        (SELECT u.t, u.c FROM unnest(refs.tenants, refs.contracts) u(t, c) WHERE u.c IS NOT NULL)
    FOR KEY SHARE;
    SELECT u.t, u.c INTO missing FROM unnest(refs.tenants, refs.clients) u(t, c)
    WHERE NOT EXISTS (SELECT 1 FROM clients c WHERE c.tenant_id = u.t AND c.id = u.c)
    LIMIT 1;
    IF FOUND THEN
        SELECT n.id, n.client_id INTO bad FROM new_rows n
        WHERE n.tenant_id = missing.t AND n.client_id = missing.c
        LIMIT 1;
        PERFORM effigate_refuse('tickets', 'client_id', format(
            'ticket %L: client_id %s is not a client of this tenant', bad.id, bad.client_id));
    END IF;
    SELECT u.t, u.c INTO missing FROM unnest(refs.tenants, refs.contracts) u(t, c)
    WHERE u.c IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM contracts c WHERE c.tenant_id = u.t AND c.id = u.c)
    LIMIT 1;
    IF FOUND THEN
        SELECT n.id, n.contract_id INTO bad FROM new_rows n
        WHERE n.tenant_id = missing.t AND n.contract_id = missing.c
        LIMIT 1;
        PERFORM effigate_refuse('tickets', 'contract_id', format(
            'ticket %L: contract_id %s is not a contract of this tenant', bad.id,
            bad.contract_id));
    END IF;
    RETURN NULL;
END
$$;
