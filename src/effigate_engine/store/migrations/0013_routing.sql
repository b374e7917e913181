-- Effigate Engine schema, version 13: routing and assignment — queues, agents, the tenant's
-- routing rules with numbered immutable versions, and the append-only history of where each
-- ticket was routed and to whom it was assigned. See docs/routing-service.md.
--
-- Tickets are referenced by (tenant_id, id) only. Every table is tenant-bound exactly like the
-- others (0001/0006): row-level security forced, tenant_id defaulting to the claimed tenant
-- (verified by the policies' WITH CHECK), keys and indexes leading with tenant_id, no column
-- statistics, and column-level privileges only for the service role.

-- 1. Queues and agents ------------------------------------------------------------------------

CREATE TABLE queues (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    name text NOT NULL CHECK (name <> '' AND length(name) <= 200),
    -- a calendar of the tenant, by name (as policies name theirs); NULL: always open
    calendar text CHECK (calendar <> ''),
    -- where a ticket at risk goes when no agent of this queue can take it
    escalation_queue text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name),
    CHECK (escalation_queue <> name),
    -- deferred: a queue and its escalation queue may be stored in either order in one call
    FOREIGN KEY (tenant_id, escalation_queue) REFERENCES queues (tenant_id, name)
        DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE agents (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    id text NOT NULL CHECK (id <> '' AND length(id) <= 200),
    name text NOT NULL CHECK (length(name) <= 200),
    support_levels text[] NOT NULL DEFAULT '{}'
        CHECK (support_levels <@ ARRAY['L1', 'L2', 'L3', 'SA']::text[]
               AND array_position(support_levels, NULL) IS NULL),
    -- job types the agent takes; NULL: any job type
    skills text[] CHECK (array_position(skills, NULL) IS NULL),
    queues text[] NOT NULL DEFAULT '{}' CHECK (array_position(queues, NULL) IS NULL),
    -- most open tickets assigned to the agent at once
    capacity integer NOT NULL CHECK (capacity >= 0),
    -- NULL: the queue's calendar (neither: always on shift)
    calendar text CHECK (calendar <> ''),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- Every queue an agent works is a queue of the agent's tenant. Queues are never deleted (the
-- service role may not) and never renamed (the name is the key, not updatable), so a reference
-- checked once stays true.
CREATE FUNCTION effigate_agents_refs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    missing text;
BEGIN
    SELECT u.q INTO missing FROM unnest(NEW.queues) u(q)
    WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.tenant_id = NEW.tenant_id AND q.name = u.q)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        PERFORM effigate_refuse('agents', 'queues', format(
            'agent %L: queue %L is not a queue of this tenant', NEW.id, missing));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER refs BEFORE INSERT OR UPDATE OF queues ON agents
    FOR EACH ROW EXECUTE FUNCTION effigate_agents_refs();

-- 2. Routing rules: one live set per tenant, numbered immutable versions -----------------------

CREATE TABLE routing_rules (
    tenant_id uuid PRIMARY KEY DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    body jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE routing_rule_versions (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    version integer NOT NULL CHECK (version >= 1),
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

-- The version is the database's: 1 when the set is first stored, +1 for every new body; a body
-- equal to the current one keeps its version (a re-sent put stores nothing new).
CREATE FUNCTION effigate_routing_rules_versioning() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
        RETURN NEW;
    END IF;
    IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
        PERFORM effigate_refuse(TG_TABLE_NAME, 'tenant_id', 'routing rules keep their tenant');
    END IF;
    IF NEW.body IS DISTINCT FROM OLD.body THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    ELSE
        NEW.version := OLD.version;
        NEW.updated_at := OLD.updated_at;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION effigate_routing_rules_history() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.version <> OLD.version THEN
        INSERT INTO public.routing_rule_versions (tenant_id, version, body)
        VALUES (NEW.tenant_id, NEW.version, NEW.body);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER versioning BEFORE INSERT OR UPDATE ON routing_rules
    FOR EACH ROW EXECUTE FUNCTION effigate_routing_rules_versioning();
CREATE TRIGGER history AFTER INSERT OR UPDATE ON routing_rules
    FOR EACH ROW EXECUTE FUNCTION effigate_routing_rules_history();
CREATE TRIGGER immutable BEFORE UPDATE OR DELETE ON routing_rule_versions
    FOR EACH ROW EXECUTE FUNCTION effigate_versions_immutable();
CREATE TRIGGER immutable_truncate BEFORE TRUNCATE ON routing_rule_versions
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_versions_immutable();

-- 3. The history of routing and assignment ---------------------------------------------------
--
-- One row per change of a ticket's queue or assignee made by the routing service: the queue
-- and agent after it (agent NULL: unassigned), the rule version and rule that routed it, why,
-- whether it was escalated, the work weight counted for the agent, when and by whom. The
-- latest row of a ticket (by id: ids increase within a tenant) is where the service left it.
-- Append-only: no row is ever changed or deleted, not even by the owner.

CREATE TABLE assignments (
    tenant_id uuid NOT NULL DEFAULT effigate_claimed_tenant() REFERENCES tenants (id),
    id bigint NOT NULL,
    ticket_id text NOT NULL,
    queue text NOT NULL,
    agent_id text,
    rule_version integer,
    rule integer CHECK (rule >= -1),
    reason text NOT NULL CHECK (reason ~ '^[A-Z][A-Z_]{0,63}$'),
    escalated boolean NOT NULL DEFAULT false,
    weight integer CHECK (weight >= 0),
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id),
    FOREIGN KEY (tenant_id, queue) REFERENCES queues (tenant_id, name),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id),
    FOREIGN KEY (tenant_id, rule_version) REFERENCES routing_rule_versions (tenant_id, version)
);
CREATE TRIGGER assign_id BEFORE INSERT ON assignments
    FOR EACH ROW EXECUTE FUNCTION effigate_assign_id();
CREATE INDEX assignments_by_ticket ON assignments (tenant_id, ticket_id, id);
CREATE INDEX assignments_by_agent ON assignments (tenant_id, agent_id, id);
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON assignments
    FOR EACH ROW EXECUTE FUNCTION effigate_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON assignments
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_append_only();

-- 4. Isolation, privileges and statistics as for every table the service reads (0006) --------

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['queues', 'agents', 'routing_rules', 'routing_rule_versions',
                             'assignments'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = (SELECT effigate_current_tenant())) '
            'WITH CHECK (tenant_id = (SELECT effigate_current_tenant()))', t);
        EXECUTE format('REVOKE ALL ON %I FROM effigate_app', t);
        EXECUTE format('GRANT SELECT ON %I TO effigate_app', t);
    END LOOP;
END
$$;

-- Writes by column: what the service sets, never an id, a tenant or a version.
GRANT INSERT (tenant_id, name, calendar, escalation_queue) ON queues TO effigate_app;
GRANT UPDATE (calendar, escalation_queue, updated_at) ON queues TO effigate_app;
GRANT INSERT (tenant_id, id, name, support_levels, skills, queues, capacity, calendar, active)
    ON agents TO effigate_app;
GRANT UPDATE (name, support_levels, skills, queues, capacity, calendar, active, updated_at)
    ON agents TO effigate_app;
GRANT INSERT (tenant_id, body) ON routing_rules TO effigate_app;
GRANT UPDATE (body) ON routing_rules TO effigate_app;
-- append-only: inserts of every column but the generated id, no UPDATE or DELETE
GRANT INSERT (tenant_id, ticket_id, queue, agent_id, rule_version, rule, reason, escalated,
    weight, at, actor) ON assignments TO effigate_app;
REVOKE UPDATE, DELETE, TRUNCATE ON assignments, routing_rule_versions FROM effigate_app;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS tbl, a.attname
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.relname IN ('queues', 'agents', 'routing_rules', 'routing_rule_versions',
                'assignments')
            AND c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS 0', t.tbl, t.attname);
    END LOOP;
END
$$;
