-- Effigate Engine schema, version 6: a tenant binding the database verifies, ids, keys and plans
-- that reveal nothing of other tenants, and a service role with the least privilege it needs.
--
-- Until now row-level security trusted the setting effigate.tenant_id, which any session may
-- set. From here on a transaction acts for a tenant only once effigate_bind(token) has checked
-- a bearer token of that tenant against the stored digests; the binding is a claim plus an
-- HMAC over (claim, transaction start) under a key only the owner can read, so a forged or
-- carried-over setting binds nothing. See docs/store.md, "Tenant isolation".

-- Objects the service role must never reach: the binding key and the per-tenant id counters.
CREATE SCHEMA effigate_private;
REVOKE ALL ON SCHEMA effigate_private FROM PUBLIC;

-- 1. The verified binding -----------------------------------------------------------------

-- HMAC-SHA-256 pads of a 64-byte random key (K xor 0x36.., K xor 0x5c..), drawn here once.
CREATE TABLE effigate_private.binding_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    inner_pad bytea NOT NULL CHECK (octet_length(inner_pad) = 64),
    outer_pad bytea NOT NULL CHECK (octet_length(outer_pad) = 64)
);

DO $$
DECLARE
    -- gen_random_uuid() draws from the server's strong random source: 4 x 122 random bits
    key bytea := uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
        || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid());
    inner_pad bytea := key;
    outer_pad bytea := key;
BEGIN
    FOR i IN 0..63 LOOP
        inner_pad := set_byte(inner_pad, i, get_byte(key, i) # 54);
        outer_pad := set_byte(outer_pad, i, get_byte(key, i) # 92);
    END LOOP;
    INSERT INTO effigate_private.binding_key (inner_pad, outer_pad) VALUES (inner_pad, outer_pad);
END
$$;

-- The proof that binds `tenant` to the current transaction: HMAC-SHA-256 of the tenant and the
-- transaction's start time. Parallel workers share the leader's start time and settings.
-- PL/pgSQL keeps its plans for the session; an SQL function would be planned at every call.
CREATE FUNCTION effigate_private.binding_proof(tenant uuid) RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    pads record;
BEGIN
    SELECT k.inner_pad, k.outer_pad INTO pads FROM effigate_private.binding_key k;
    RETURN encode(sha256(pads.outer_pad || sha256(pads.inner_pad
        || convert_to('effigate tenant binding', 'UTF8') || uuid_send(tenant)
        || timestamptz_send(transaction_timestamp()))), 'base64');
END
$$;

-- The tenant of the current transaction: the claimed tenant when its proof verifies, else NULL
-- (which no row matches). Policies and the trigger functions read it, once per statement.
CREATE OR REPLACE FUNCTION effigate_current_tenant() RETURNS uuid
    LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    claim uuid := nullif(current_setting('effigate.tenant_id', true), '')::uuid;
BEGIN
    IF current_setting('effigate.tenant_proof', true) = effigate_private.binding_proof(claim) THEN
        RETURN claim;
    END IF;
    RETURN NULL;
END
$$;

-- The claimed tenant, unverified: the default of tenant_id columns, evaluated per row (inlined,
-- where the verified accessor would cost an HMAC per row). A row defaulted from a forged claim
-- never lands: the policies' WITH CHECK verifies every row's tenant against the binding.
CREATE FUNCTION effigate_claimed_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('effigate.tenant_id', true), '')::uuid $$;

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT d.adrelid::regclass AS tbl, a.attname
        FROM pg_attrdef d
        JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
        JOIN pg_class t ON t.oid = d.adrelid
        WHERE t.relnamespace = 'public'::regnamespace
            AND pg_get_expr(d.adbin, d.adrelid) = 'effigate_current_tenant()'
        ORDER BY t.relname
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT effigate_claimed_tenant()',
            c.tbl, c.attname);
    END LOOP;
END
$$;

-- Bind the current transaction to the tenant of a bearer token (the secret, which the database
-- hashes and looks up among the active tokens' digests). Returns the tenant; an unknown or
-- revoked token is an error (SQLSTATE 28000) and binds nothing. Lasts until the transaction
-- ends (the settings are transaction-local and the proof names the transaction's start).
CREATE FUNCTION effigate_bind(token text) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    bound uuid;
BEGIN
    SELECT t.tenant_id INTO bound FROM public.api_tokens t
    WHERE t.token_sha256 = sha256(convert_to(token, 'UTF8')) AND t.revoked_at IS NULL;
    IF bound IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_authorization_specification',
            MESSAGE = 'the bearer token is not a valid or active API token: nothing is bound';
    END IF;
    PERFORM set_config('effigate.tenant_id', bound::text, true),
        set_config('effigate.tenant_proof', effigate_private.binding_proof(bound), true);
    RETURN bound;
END
$$;

-- The owner's way in (maintenance, tenant and token creation, jobs run with the owner's
-- credentials): bind to a tenant by id. Not granted to the service role.
CREATE FUNCTION effigate_bind_tenant(tenant uuid) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM set_config('effigate.tenant_id', tenant::text, true),
        set_config('effigate.tenant_proof', effigate_private.binding_proof(tenant), true);
    RETURN tenant;
END
$$;

REVOKE ALL ON FUNCTION effigate_private.binding_proof(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION effigate_current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_current_tenant() TO effigate_app;
REVOKE ALL ON FUNCTION effigate_bind(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_bind(text) TO effigate_app;
REVOKE ALL ON FUNCTION effigate_bind_tenant(uuid) FROM PUBLIC;

-- Token lookups (effigate_bind, effigate_resolve_token) happen before any tenant is bound and
-- run as the owner; when the owner is not a superuser, FORCE would hide every token from them.
CREATE POLICY token_lookup ON api_tokens FOR SELECT TO CURRENT_USER USING (true);

-- 2. Ids that count nothing but the tenant's own rows ---------------------------------------
--
-- Every generated id is (per-tenant counter << 20) | tag: the counter is the tenant's own
-- sequence, the tag a random 20-bit number unique to the tenant. Ids stay unique across
-- tenants and increasing within one, and tell a tenant nothing about anyone else's rows.

CREATE TABLE effigate_private.id_origin (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- where every tenant's counter starts: above any id issued before this migration
    first_counter bigint NOT NULL CHECK (first_counter >= 1)
);

CREATE TABLE effigate_private.tenant_ids (
    tenant_id uuid PRIMARY KEY,
    tag integer NOT NULL UNIQUE CHECK (tag >= 0 AND tag < 1048576),
    counter regclass NOT NULL
);

-- Give a tenant its counter and a free random tag (once).
CREATE FUNCTION effigate_private.provision_ids(tenant uuid) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    counter text := format('effigate_private.%I', 'ids_' || replace(tenant::text, '-', ''));
    clash text;
BEGIN
    IF EXISTS (SELECT 1 FROM effigate_private.tenant_ids t WHERE t.tenant_id = tenant) THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE SEQUENCE %s AS bigint MINVALUE 1 MAXVALUE 8796093022207 START %s',
        counter, (SELECT o.first_counter FROM effigate_private.id_origin o));
    LOOP
        BEGIN
            INSERT INTO effigate_private.tenant_ids (tenant_id, tag, counter)
            VALUES (tenant, floor(random() * 1048576)::integer, counter::regclass);
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            GET STACKED DIAGNOSTICS clash = CONSTRAINT_NAME;
            IF clash <> 'tenant_ids_tag_key' THEN
                RAISE;
            END IF;  -- the tag belongs to another tenant: draw again
        END;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION effigate_private.provision_ids(uuid) FROM PUBLIC;

CREATE FUNCTION effigate_tenants_provision_ids() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM effigate_private.provision_ids(NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER provision_ids AFTER INSERT ON tenants
    FOR EACH ROW EXECUTE FUNCTION effigate_tenants_provision_ids();

-- Assigns the id of a new row from its tenant's counter (an explicit id, which only the owner
-- may give, is kept). A row claimed for a tenant the transaction is not bound to still draws
-- from that tenant's counter before row-level security refuses it: the tenant then sees a
-- skipped number, never anyone else's count.
CREATE FUNCTION effigate_assign_id() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    source record;
BEGIN
    IF NEW.id IS NULL THEN
        SELECT t.tag, t.counter INTO source FROM effigate_private.tenant_ids t
        WHERE t.tenant_id = NEW.tenant_id;
        IF FOUND THEN
            NEW.id := (nextval(source.counter) << 20) | source.tag;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- Identity columns become counter-assigned ids; tenants that exist get their counters.
DO $$
DECLARE
    t record;
    highest bigint;
    top bigint := 0;
    forced boolean;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS tbl, c.relforcerowsecurity AS forced
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
            AND a.attname = 'id' AND a.attidentity <> '' AND NOT a.attisdropped
        ORDER BY c.relname
    LOOP
        -- the owner reads every row only with FORCE lifted (inside this transaction)
        IF t.forced THEN
            EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', t.tbl);
        END IF;
        EXECUTE format('SELECT max(id) FROM %s', t.tbl) INTO highest;
        IF t.forced THEN
            EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t.tbl);
        END IF;
        top := greatest(top, coalesce(highest, 0));
        EXECUTE format('ALTER TABLE %s ALTER COLUMN id DROP IDENTITY', t.tbl);
        EXECUTE format('CREATE TRIGGER assign_id BEFORE INSERT ON %s '
            'FOR EACH ROW EXECUTE FUNCTION effigate_assign_id()', t.tbl);
    END LOOP;
    INSERT INTO effigate_private.id_origin (first_counter) VALUES ((top >> 20) + 1);

    SELECT c.relforcerowsecurity INTO forced FROM pg_class c WHERE c.oid = 'tenants'::regclass;
    IF forced THEN
        ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY;
    END IF;
    PERFORM effigate_private.provision_ids(x.id) FROM tenants x ORDER BY x.created_at, x.id;
    IF forced THEN
        ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
    END IF;
END
$$;

-- 3. Least privilege for the service role ----------------------------------------------------
--
-- Tokens are created and read by the owner only (the service resolves and binds through the
-- functions above). Everywhere else the service role keeps what it had, narrowed to columns:
-- INSERT of every column but a generated id, UPDATE of every column but the tenant and the
-- id, and no DELETE or TRUNCATE at all. Without a table-level UPDATE, DELETE or TRUNCATE
-- privilege PostgreSQL refuses LOCK TABLE in any mode stronger than ROW EXCLUSIVE, and
-- without a table-level INSERT also ROW EXCLUSIVE; ACCESS SHARE (any SELECT) remains.
REVOKE ALL ON api_tokens FROM effigate_app;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM effigate_app;
-- the service checks at start that the schema is current, without the owner's credentials
GRANT SELECT ON effigate_schema_migrations TO effigate_app;

DO $$
DECLARE
    t record;
    columns text;
BEGIN
    FOR t IN
        SELECT c.oid, c.oid::regclass AS tbl,
            has_table_privilege('effigate_app', c.oid, 'INSERT') AS can_insert,
            has_table_privilege('effigate_app', c.oid, 'UPDATE') AS can_update
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
        ORDER BY c.relname
    LOOP
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %s '
            'FROM effigate_app', t.tbl);
        IF t.can_insert THEN
            SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO columns
            FROM pg_attribute a
            WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND NOT (a.attname = 'id' AND EXISTS (
                    SELECT 1 FROM pg_trigger g WHERE g.tgrelid = t.oid AND g.tgname = 'assign_id'));
            EXECUTE format('GRANT INSERT (%s) ON %s TO effigate_app', columns, t.tbl);
        END IF;
        IF t.can_update THEN
            SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO columns
            FROM pg_attribute a
            WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attname NOT IN ('id', 'tenant_id');
            EXECUTE format('GRANT UPDATE (%s) ON %s TO effigate_app', columns, t.tbl);
        END IF;
    END LOOP;
END
$$;

-- The one deletion the service makes: discarding a draft (or in-review) invoice with its lines
-- and evidence. Returns false when the bound tenant has no such draft.
CREATE FUNCTION effigate_discard_draft_invoice(invoice bigint) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    tenant uuid := public.effigate_current_tenant();
BEGIN
    PERFORM 1 FROM public.invoices v
    WHERE v.tenant_id = tenant AND v.id = invoice AND v.status IN ('DRAFT', 'REVIEW')
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM public.invoice_line_time_logs e WHERE e.tenant_id = tenant AND e.invoice_id = invoice;
    DELETE FROM public.invoice_lines l WHERE l.tenant_id = tenant AND l.invoice_id = invoice;
    DELETE FROM public.invoices v WHERE v.tenant_id = tenant AND v.id = invoice;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION effigate_discard_draft_invoice(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_discard_draft_invoice(bigint) TO effigate_app;

-- Nobody but the owner creates objects in the schema (PostgreSQL 14 and older let PUBLIC).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- 4. Keys and plans that reveal no other tenant -----------------------------------------------
--
-- An index scan visits only the rows its index conditions select; row-level security then
-- filters the others and EXPLAIN ANALYZE reports how many it removed. Every index of a table
-- the service reads therefore leads with tenant_id: the policy's tenant_id = <bound tenant>
-- is then an index condition of every index scan, and other tenants' rows are never visited.
-- The same makes every unique key include the tenant, so a unique violation can only ever
-- name the caller's own key.
DO $$
DECLARE
    i record;
    kind text;
BEGIN
    FOR i IN
        SELECT c.oid::regclass AS tbl, ic.relname AS index_name, con.conname, con.contype,
            pg_get_indexdef(x.indexrelid) AS index_def, pg_get_constraintdef(con.oid) AS con_def,
            am.amname,
            ARRAY(SELECT a.attname FROM unnest(x.indkey) k JOIN pg_attribute a
                  ON a.attrelid = x.indrelid AND a.attnum = k) AS key_columns
        FROM pg_index x
        JOIN pg_class c ON c.oid = x.indrelid
        JOIN pg_class ic ON ic.oid = x.indexrelid
        JOIN pg_am am ON am.oid = ic.relam
        LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
            AND con.contype IN ('p', 'u')
        WHERE c.relnamespace = 'public'::regnamespace AND c.relrowsecurity
            AND c.relname <> 'tenants'
            AND has_table_privilege('effigate_app', c.oid, 'SELECT')
            AND x.indkey[0] IS DISTINCT FROM (SELECT a.attnum FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')
        ORDER BY c.relname, ic.relname
    LOOP
        IF i.contype = 'p' AND i.key_columns = ARRAY['id']::name[] THEN
            -- the key is (tenant_id, id): an existing UNIQUE (tenant_id, id) serves, else add it
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', i.tbl, i.conname);
            IF NOT EXISTS (
                SELECT 1 FROM pg_index y JOIN pg_attribute a1
                    ON a1.attrelid = y.indrelid AND a1.attnum = y.indkey[0]
                JOIN pg_attribute a2 ON a2.attrelid = y.indrelid AND a2.attnum = y.indkey[1]
                WHERE y.indrelid = i.tbl AND y.indisunique AND y.indnatts = 2
                    AND a1.attname = 'tenant_id' AND a2.attname = 'id') THEN
                EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (tenant_id, id)',
                    i.tbl, i.conname);
            END IF;
        ELSIF i.contype IN ('p', 'u') THEN
            kind := CASE i.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END;
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', i.tbl, i.conname);
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', i.tbl, i.conname,
                regexp_replace(i.con_def, '^([^(]*)\(', '\1(tenant_id, '));
        ELSIF i.amname = 'btree' THEN
            EXECUTE format('DROP INDEX %I', i.index_name);
            EXECUTE replace(i.index_def, 'USING btree (', 'USING btree (tenant_id, ');
        ELSE
            -- (a test lists every index that does not lead with tenant_id)
            RAISE WARNING 'index % on % does not lead with tenant_id and is not a btree: '
                'give it tenant_id as its first column', i.index_name, i.tbl;
        END IF;
    END LOOP;
END
$$;

-- The planner's statistics are visible through plan estimates (EXPLAIN reports the rows it
-- expects for any condition, tenant_id = '<another tenant>' included), and row-level security
-- does not hide them. Tables the service reads keep no column statistics: estimates come from
-- the table's size (which the catalogs show every role anyway) and fixed selectivities.
DO $$
DECLARE
    t record;
    is_superuser boolean := (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user);
    can_clear boolean :=
        to_regprocedure('pg_clear_attribute_stats(text, text, text, boolean)') IS NOT NULL;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS tbl, c.relname, a.attname
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relrowsecurity
            AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS 0', t.tbl, t.attname);
        -- statistics gathered before now would still be used: drop them
        IF NOT is_superuser AND can_clear THEN
            PERFORM pg_clear_attribute_stats('public', t.relname, t.attname, false);
        END IF;
    END LOOP;
    IF is_superuser THEN
        DELETE FROM pg_statistic s USING pg_class c
        WHERE s.starelid = c.oid AND c.relnamespace = 'public'::regnamespace
            AND c.relrowsecurity;
    ELSIF NOT can_clear AND EXISTS (
            SELECT 1 FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
                AND c.relrowsecurity AND c.reltuples > 0) THEN
        RAISE WARNING 'column statistics gathered before this migration remain: as a '
            'superuser, DELETE FROM pg_statistic for the tables of schema public';
    END IF;
END
$$;
