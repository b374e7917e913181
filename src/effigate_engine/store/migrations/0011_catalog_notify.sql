-- Effigate Engine schema, version 11: a notification for every change of a tenant's catalog.
--
-- Each server process keeps the tenant's compiled calendars and policies (docs/service.md,
-- "Caching"). Instead of reading the current versions on every call, it listens on channel
-- `effigate_catalog`: any insert, update (a new version, a retirement) or deletion of a
-- calendar or SLA policy notifies the tenant's id (as text). PostgreSQL delivers a
-- notification when its transaction commits, never for one rolled back, and sends equal
-- payloads of one transaction once. See docs/store.md, "Catalog change notifications".

-- SECURITY INVOKER: it reads no table, and pg_notify is everyone's to call.
CREATE FUNCTION effigate_catalog_notify() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('effigate_catalog', OLD.tenant_id::text);
    ELSE
        PERFORM pg_notify('effigate_catalog', NEW.tenant_id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER catalog_notify AFTER INSERT OR UPDATE OR DELETE ON calendars
    FOR EACH ROW EXECUTE FUNCTION effigate_catalog_notify();
CREATE TRIGGER catalog_notify AFTER INSERT OR UPDATE OR DELETE ON sla_policies
    FOR EACH ROW EXECUTE FUNCTION effigate_catalog_notify();

REVOKE ALL ON FUNCTION effigate_catalog_notify() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION effigate_catalog_notify() TO effigate_app;
