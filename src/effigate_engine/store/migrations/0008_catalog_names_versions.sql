-- Effigate Engine schema, version 8: calendar and SLA-policy names unique per tenant, numbered
-- immutable versions with their history, and retirement (soft deletion) refused while in use.
--
-- A calendar (or policy) row is the name: its id never changes, `version` is its current
-- version and `body` (for a policy also `calendar_id`) that version's content. Every version
-- is kept, written by the database, in calendar_versions / sla_policy_versions; a version is
-- immutable, an update is a new version. `retired_at` marks a deleted one: it keeps its row
-- and history (contracts and evidence may have named it), frees its name for a new create and
-- never changes again. See docs/store.md, "Names, versions and retirement".

-- The backfill below reads and writes across tenants; a migrating owner that FORCE binds would
-- see no row, so FORCE is lifted for this transaction only and restored at the end.
ALTER TABLE calendars NO FORCE ROW LEVEL SECURITY;
ALTER TABLE sla_policies NO FORCE ROW LEVEL SECURITY;
ALTER TABLE contracts NO FORCE ROW LEVEL SECURITY;

ALTER TABLE calendars
    ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN retired_at timestamptz;
ALTER TABLE sla_policies
    ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN retired_at timestamptz;

CREATE TABLE calendar_versions (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    calendar_id bigint NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, calendar_id, version),
    FOREIGN KEY (tenant_id, calendar_id) REFERENCES calendars (tenant_id, id)
);

CREATE TABLE sla_policy_versions (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    policy_id bigint NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    calendar_id bigint NOT NULL,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, policy_id, version),
    FOREIGN KEY (tenant_id, policy_id) REFERENCES sla_policies (tenant_id, id),
    FOREIGN KEY (tenant_id, calendar_id) REFERENCES calendars (tenant_id, id)
);

-- 1. Names used twice before this migration ------------------------------------------------
--
-- Rows of one tenant sharing a name become successive versions of the first of them (lowest
-- id), in id order: the first keeps its id and gets the last one's content as its current
-- version; the later rows are kept, retired, each with its own content as its version 1; what
-- referred to a later row (policies' default calendar, contracts) now refers to the first,
-- i.e. to the name's current version (a policy's versions included). Nothing is deleted.

CREATE TEMPORARY TABLE calendar_merge ON COMMIT DROP AS
SELECT c.tenant_id, c.id, c.body, c.created_at,
    first_value(c.id) OVER w AS keeper,
    row_number() OVER w AS position,
    count(*) OVER (PARTITION BY c.tenant_id, c.name) AS versions
FROM calendars c
WINDOW w AS (PARTITION BY c.tenant_id, c.name ORDER BY c.id);

INSERT INTO calendar_versions (tenant_id, calendar_id, version, body, created_at)
SELECT m.tenant_id, m.keeper, m.position, m.body, m.created_at FROM calendar_merge m;
INSERT INTO calendar_versions (tenant_id, calendar_id, version, body, created_at)
SELECT m.tenant_id, m.id, 1, m.body, m.created_at FROM calendar_merge m WHERE m.position > 1;

UPDATE calendars c SET version = m.versions, body = last.body
FROM calendar_merge m
JOIN calendar_merge last ON last.tenant_id = m.tenant_id AND last.keeper = m.keeper
    AND last.position = m.versions
WHERE m.tenant_id = c.tenant_id AND m.id = c.id AND m.position = 1 AND m.versions > 1;
UPDATE calendars c SET retired_at = now()
FROM calendar_merge m WHERE m.tenant_id = c.tenant_id AND m.id = c.id AND m.position > 1;

UPDATE sla_policies p SET calendar_id = m.keeper
FROM calendar_merge m
WHERE m.tenant_id = p.tenant_id AND m.id = p.calendar_id AND m.position > 1;

CREATE TEMPORARY TABLE policy_merge ON COMMIT DROP AS
SELECT p.tenant_id, p.id, p.calendar_id, p.body, p.created_at,
    first_value(p.id) OVER w AS keeper,
    row_number() OVER w AS position,
    count(*) OVER (PARTITION BY p.tenant_id, p.name) AS versions
FROM sla_policies p
WINDOW w AS (PARTITION BY p.tenant_id, p.name ORDER BY p.id);

INSERT INTO sla_policy_versions (tenant_id, policy_id, version, calendar_id, body, created_at)
SELECT m.tenant_id, m.keeper, m.position, m.calendar_id, m.body, m.created_at FROM policy_merge m;
INSERT INTO sla_policy_versions (tenant_id, policy_id, version, calendar_id, body, created_at)
SELECT m.tenant_id, m.id, 1, m.calendar_id, m.body, m.created_at
FROM policy_merge m WHERE m.position > 1;

UPDATE sla_policies p SET version = m.versions, body = last.body, calendar_id = last.calendar_id
FROM policy_merge m
JOIN policy_merge last ON last.tenant_id = m.tenant_id AND last.keeper = m.keeper
    AND last.position = m.versions
WHERE m.tenant_id = p.tenant_id AND m.id = p.id AND m.position = 1 AND m.versions > 1;
UPDATE sla_policies p SET retired_at = now()
FROM policy_merge m WHERE m.tenant_id = p.tenant_id AND m.id = p.id AND m.position > 1;

-- contracts may change their calendar and policy in any state; the guard is bypassed only for
-- these two columns, within this transaction
ALTER TABLE contracts DISABLE TRIGGER contracts_guard;
UPDATE contracts k SET calendar_id = m.keeper
FROM calendar_merge m
WHERE m.tenant_id = k.tenant_id AND m.id = k.calendar_id AND m.position > 1;
UPDATE contracts k SET sla_policy_id = m.keeper
FROM policy_merge m
WHERE m.tenant_id = k.tenant_id AND m.id = k.sla_policy_id AND m.position > 1;
ALTER TABLE contracts ENABLE TRIGGER contracts_guard;

-- 2. One live calendar / policy per name and tenant -------------------------------------------

CREATE UNIQUE INDEX calendars_live_name ON calendars (tenant_id, name) WHERE retired_at IS NULL;
CREATE UNIQUE INDEX sla_policies_live_name ON sla_policies (tenant_id, name)
    WHERE retired_at IS NULL;

-- 3. Versions written by the database ---------------------------------------------------------

-- A refusal naming the table and column at fault (SQLSTATE 23514, as the other invariants).
CREATE FUNCTION effigate_catalog_refuse(tbl text, col text, message text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'check_violation', TABLE = tbl, COLUMN = col,
        MESSAGE = message;
END
$$;

-- Who uses a calendar: live policies naming it (default calendar or a metric's calendar) and
-- contracts of any state. Empty when nothing does.
CREATE FUNCTION effigate_calendar_users(tenant uuid, calendar bigint, calendar_name text)
    RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT string_agg(u, ', ' ORDER BY k, i) FROM (
        SELECT 1 AS k, p.id AS i, format('policy %s (id %s)', quote_literal(p.name), p.id) AS u
        FROM sla_policies p
        WHERE p.tenant_id = tenant AND p.retired_at IS NULL
            AND (p.calendar_id = calendar OR jsonb_path_exists(p.body,
                '$.rules[*].metrics.*.calendar ? (@ == $n)', jsonb_build_object('n', calendar_name)))
        UNION ALL
        SELECT 2, c.id, format('contract %s (%s)', c.id, c.status)
        FROM contracts c WHERE c.tenant_id = tenant AND c.calendar_id = calendar
    ) users
    $$;

CREATE FUNCTION effigate_policy_users(tenant uuid, policy bigint) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT string_agg(format('contract %s (%s)', c.id, c.status), ', ' ORDER BY c.id)
    FROM contracts c WHERE c.tenant_id = tenant AND c.sla_policy_id = policy
    $$;

-- A calendar row is a name: its identity never changes; a new body is the next version (the
-- database numbers it, a caller's number is ignored); retiring is final and refused while
-- anything uses the calendar; a retired calendar never changes again.
CREATE FUNCTION effigate_calendars_versioning() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    users text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
        NEW.retired_at := NULL;
        RETURN NEW;
    END IF;
    IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.id IS DISTINCT FROM OLD.id
            OR NEW.name IS DISTINCT FROM OLD.name
            OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        PERFORM effigate_catalog_refuse(TG_TABLE_NAME, 'name', format(
            'calendar %s (id %s) keeps its name and identity: create a new calendar instead',
            quote_literal(OLD.name), OLD.id));
    END IF;
    IF OLD.retired_at IS NOT NULL THEN
        IF NEW.body IS DISTINCT FROM OLD.body OR NEW.retired_at IS DISTINCT FROM OLD.retired_at
                OR NEW.version IS DISTINCT FROM OLD.version THEN
            PERFORM effigate_catalog_refuse(TG_TABLE_NAME, 'retired_at', format(
                'calendar %s (id %s) was deleted at %s and never changes',
                quote_literal(OLD.name), OLD.id, OLD.retired_at));
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.retired_at IS NOT NULL THEN
        users := effigate_calendar_users(OLD.tenant_id, OLD.id, OLD.name);
        IF users IS NOT NULL THEN
            PERFORM effigate_catalog_refuse(TG_TABLE_NAME, 'retired_at', format(
                'calendar %s (id %s) is in use by %s: change or delete those first',
                quote_literal(OLD.name), OLD.id, users));
        END IF;
        NEW.retired_at := now();
        NEW.body := OLD.body;
        NEW.version := OLD.version;
    ELSIF NEW.body IS DISTINCT FROM OLD.body THEN
        NEW.version := OLD.version + 1;
    ELSE
        NEW.version := OLD.version;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION effigate_sla_policies_versioning() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    users text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
        NEW.retired_at := NULL;
        RETURN NEW;
    END IF;
    IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.id IS DISTINCT FROM OLD.id
            OR NEW.name IS DISTINCT FROM OLD.name
            OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        PERFORM effigate_catalog_refuse(TG_TABLE_NAME, 'name', format(
            'SLA policy %s (id %s) keeps its name and identity: create a new policy instead',
            quote_literal(OLD.name), OLD.id));
    END IF;
    IF OLD.retired_at IS NOT NULL THEN
        IF NEW.body IS DISTINCT FROM OLD.body OR NEW.calendar_id IS DISTINCT FROM OLD.calendar_id
                OR NEW.retired_at IS DISTINCT FROM OLD.retired_at
                OR NEW.version IS DISTINCT FROM OLD.version THEN
            PERFORM effigate_catalog_refuse(TG_TABLE_NAME, 'retired_at', format(
                'SLA policy %s (id %s) was deleted at %s and never changes',
                quote_literal(OLD.name), OLD.id, OLD.retired_at));
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.retired_at IS NOT NULL THEN
        users := effigate_policy_users(OLD.tenant_id, OLD.id);
        IF users IS NOT NULL THEN
            PERFORM effigate_catalog_refuse(TG_TABLE_NAME, 'retired_at', format(
                'SLA policy %s (id %s) is in use by %s: change or delete those first',
                quote_literal(OLD.name), OLD.id, users));
        END IF;
        NEW.retired_at := now();
        NEW.body := OLD.body;
        NEW.calendar_id := OLD.calendar_id;
        NEW.version := OLD.version;
    ELSIF NEW.body IS DISTINCT FROM OLD.body OR NEW.calendar_id IS DISTINCT FROM OLD.calendar_id THEN
        NEW.version := OLD.version + 1;
    ELSE
        NEW.version := OLD.version;
    END IF;
    RETURN NEW;
END
$$;

-- The history: every version as it was stored. Written here only (the service role may read
-- it, not write it), and never changed (no UPDATE or DELETE is granted; the trigger below
-- refuses them to the owner too).
CREATE FUNCTION effigate_calendars_history() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.version <> OLD.version THEN
        INSERT INTO public.calendar_versions (tenant_id, calendar_id, version, body)
        VALUES (NEW.tenant_id, NEW.id, NEW.version, NEW.body);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION effigate_sla_policies_history() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.version <> OLD.version THEN
        INSERT INTO public.sla_policy_versions (tenant_id, policy_id, version, calendar_id, body)
        VALUES (NEW.tenant_id, NEW.id, NEW.version, NEW.calendar_id, NEW.body);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION effigate_versions_immutable() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM effigate_catalog_refuse(TG_TABLE_NAME, 'version',
        'a stored version never changes: store a new version instead');
    RETURN NULL;
END
$$;

CREATE TRIGGER versioning BEFORE INSERT OR UPDATE ON calendars
    FOR EACH ROW EXECUTE FUNCTION effigate_calendars_versioning();
CREATE TRIGGER history AFTER INSERT OR UPDATE ON calendars
    FOR EACH ROW EXECUTE FUNCTION effigate_calendars_history();
CREATE TRIGGER versioning BEFORE INSERT OR UPDATE ON sla_policies
    FOR EACH ROW EXECUTE FUNCTION effigate_sla_policies_versioning();
CREATE TRIGGER history AFTER INSERT OR UPDATE ON sla_policies
    FOR EACH ROW EXECUTE FUNCTION effigate_sla_policies_history();
CREATE TRIGGER immutable BEFORE UPDATE OR DELETE ON calendar_versions
    FOR EACH ROW EXECUTE FUNCTION effigate_versions_immutable();
CREATE TRIGGER immutable BEFORE UPDATE OR DELETE ON sla_policy_versions
    FOR EACH ROW EXECUTE FUNCTION effigate_versions_immutable();
CREATE TRIGGER immutable_truncate BEFORE TRUNCATE ON calendar_versions
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_versions_immutable();
CREATE TRIGGER immutable_truncate BEFORE TRUNCATE ON sla_policy_versions
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_versions_immutable();

-- 4. No reference to a retired calendar or policy, whatever the interleaving -------------------
--
-- A writer that starts to use a calendar or policy touches its row (a no-op update of the
-- live row): under READ COMMITTED it waits for a retirement in flight and then finds the row
-- retired; under REPEATABLE READ / SERIALIZABLE a retirement committed since its snapshot makes
-- it fail with 40001. A retirement that comes second waits for the writer and then sees its
-- reference (or fails with 40001). Policies also touch the calendars their metrics name.

CREATE FUNCTION effigate_touch_calendar(tenant uuid, calendar bigint) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE calendars SET retired_at = NULL
    WHERE tenant_id = tenant AND id = calendar AND retired_at IS NULL;
    RETURN FOUND;
END
$$;

CREATE FUNCTION effigate_touch_policy(tenant uuid, policy bigint) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE sla_policies SET retired_at = NULL
    WHERE tenant_id = tenant AND id = policy AND retired_at IS NULL;
    RETURN FOUND;
END
$$;

CREATE FUNCTION effigate_sla_policies_references() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.calendar_id IS NOT DISTINCT FROM OLD.calendar_id
            AND NEW.body IS NOT DISTINCT FROM OLD.body THEN
        RETURN NEW;
    END IF;
    IF NEW.retired_at IS NULL AND NOT effigate_touch_calendar(NEW.tenant_id, NEW.calendar_id)
            AND EXISTS (SELECT 1 FROM calendars c
                        WHERE c.tenant_id = NEW.tenant_id AND c.id = NEW.calendar_id) THEN
        PERFORM effigate_catalog_refuse(TG_TABLE_NAME, 'calendar_id', format(
            'calendar %s is deleted: name a calendar in use', NEW.calendar_id));
    END IF;
    UPDATE calendars SET retired_at = NULL
    WHERE tenant_id = NEW.tenant_id AND retired_at IS NULL AND id <> NEW.calendar_id
        AND name IN (SELECT jsonb_path_query(NEW.body, '$.rules[*].metrics.*.calendar') #>> '{}');
    RETURN NEW;
END
$$;

CREATE FUNCTION effigate_contracts_catalog_references() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.calendar_id IS NOT NULL
            AND (TG_OP = 'INSERT' OR NEW.calendar_id IS DISTINCT FROM OLD.calendar_id)
            AND NOT effigate_touch_calendar(NEW.tenant_id, NEW.calendar_id)
            AND EXISTS (SELECT 1 FROM calendars c
                        WHERE c.tenant_id = NEW.tenant_id AND c.id = NEW.calendar_id) THEN
        PERFORM effigate_catalog_refuse(TG_TABLE_NAME, 'calendar_id', format(
            'calendar %s is deleted: name a calendar in use', NEW.calendar_id));
    END IF;
    IF NEW.sla_policy_id IS NOT NULL
            AND (TG_OP = 'INSERT' OR NEW.sla_policy_id IS DISTINCT FROM OLD.sla_policy_id)
            AND NOT effigate_touch_policy(NEW.tenant_id, NEW.sla_policy_id)
            AND EXISTS (SELECT 1 FROM sla_policies p
                        WHERE p.tenant_id = NEW.tenant_id AND p.id = NEW.sla_policy_id) THEN
        PERFORM effigate_catalog_refuse(TG_TABLE_NAME, 'sla_policy_id', format(
            'SLA policy %s is deleted: name a policy in use', NEW.sla_policy_id));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER catalog_references BEFORE INSERT OR UPDATE OF calendar_id, body ON sla_policies
    FOR EACH ROW EXECUTE FUNCTION effigate_sla_policies_references();
CREATE TRIGGER catalog_references BEFORE INSERT OR UPDATE OF calendar_id, sla_policy_id
    ON contracts FOR EACH ROW EXECUTE FUNCTION effigate_contracts_catalog_references();

REVOKE ALL ON FUNCTION effigate_catalog_refuse(text, text, text),
    effigate_calendar_users(uuid, bigint, text), effigate_policy_users(uuid, bigint),
    effigate_touch_calendar(uuid, bigint), effigate_touch_policy(uuid, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_catalog_refuse(text, text, text),
    effigate_calendar_users(uuid, bigint, text), effigate_policy_users(uuid, bigint),
    effigate_touch_calendar(uuid, bigint), effigate_touch_policy(uuid, bigint) TO effigate_app;

-- 5. Isolation, privileges and statistics as for every table the service reads (0006) --------

ALTER TABLE calendar_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE calendar_versions FORCE ROW LEVEL SECURITY;
ALTER TABLE sla_policy_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sla_policy_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON calendar_versions
    USING (tenant_id = (SELECT effigate_current_tenant()))
    WITH CHECK (tenant_id = (SELECT effigate_current_tenant()));
CREATE POLICY tenant_isolation ON sla_policy_versions
    USING (tenant_id = (SELECT effigate_current_tenant()))
    WITH CHECK (tenant_id = (SELECT effigate_current_tenant()));

REVOKE ALL ON calendar_versions, sla_policy_versions FROM effigate_app;
GRANT SELECT ON calendar_versions, sla_policy_versions TO effigate_app;
-- the version is the database's; a retirement is an update of retired_at
GRANT UPDATE (retired_at) ON calendars, sla_policies TO effigate_app;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS tbl, a.attname
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.relname IN ('calendars', 'sla_policies', 'calendar_versions',
                'sla_policy_versions')
            AND c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS 0', t.tbl, t.attname);
    END LOOP;
END
$$;

ALTER TABLE calendars FORCE ROW LEVEL SECURITY;
ALTER TABLE sla_policies FORCE ROW LEVEL SECURITY;
ALTER TABLE contracts FORCE ROW LEVEL SECURITY;
