-- Effigate Engine schema, version 2: the money invariants, enforced by the database.
--
-- Every refusal raises SQLSTATE 23514 (check_violation) with TABLE and COLUMN set to the
-- field at fault and a message that names the row and the offending value. The trigger
-- functions run as their owner (SECURITY DEFINER) so they can maintain tables the service
-- role may only read; they still see only what their explicit tenant filters select.

-- The first column whose value differs between two row images, ignoring the given names.
CREATE FUNCTION effigate_first_change(new_row jsonb, old_row jsonb, ignored text[])
    RETURNS text LANGUAGE sql IMMUTABLE
    AS $$
        SELECT n.key FROM jsonb_each(new_row) AS n
        WHERE n.value IS DISTINCT FROM old_row -> n.key AND NOT (n.key = ANY (ignored))
        ORDER BY n.key LIMIT 1
    $$;

CREATE FUNCTION effigate_refuse(tbl text, col text, msg text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'check_violation', MESSAGE = msg, TABLE = tbl,
        COLUMN = coalesce(col, '');
END
$$;

-- Append-only tables: audit log, rate-card versions, amendments, credit notes, payments,
-- bucket ledger.
CREATE FUNCTION effigate_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM effigate_refuse(TG_TABLE_NAME, NULL,
        format('%s is append-only: %s refused', TG_TABLE_NAME, TG_OP));
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'audit_log', 'rate_card_versions', 'contract_amendments', 'credit_notes',
        'credit_note_lines', 'payments', 'bucket_ledger'
    ] LOOP
        EXECUTE format(
            'CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON %I '
            'FOR EACH ROW EXECUTE FUNCTION effigate_append_only()', t);
        EXECUTE format(
            'CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION effigate_append_only()', t);
    END LOOP;
END
$$;

-- Billing records are never truncated, not even by their owner (a TRUNCATE bypasses row
-- triggers, so it would otherwise erase issued invoices wholesale).
CREATE FUNCTION effigate_no_truncate() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM effigate_refuse(TG_TABLE_NAME, NULL,
        format('%s holds billing records: TRUNCATE refused', TG_TABLE_NAME));
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'invoices', 'invoice_lines', 'invoice_line_time_logs', 'time_log_invoicing',
        'invoice_number_counters', 'billing_periods', 'time_logs'
    ] LOOP
        EXECUTE format(
            'CREATE TRIGGER no_truncate BEFORE TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION effigate_no_truncate()', t);
    END LOOP;
END
$$;

-- Contracts: the commercial model and the frozen rate card are fixed at activation.
CREATE FUNCTION effigate_contracts_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    changed text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'DRAFT' THEN
            PERFORM effigate_refuse('contracts', 'status', format(
                'contract %s is %s; only a DRAFT contract can be deleted', OLD.id, OLD.status));
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'DRAFT' THEN
        IF NEW.status <> 'DRAFT' THEN
            NEW.activated_at := coalesce(NEW.activated_at, now());
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status = 'DRAFT' THEN
        PERFORM effigate_refuse('contracts', 'status', format(
            'contract %s: status %s cannot return to DRAFT', OLD.id, OLD.status));
    END IF;
    changed := effigate_first_change(
        jsonb_build_object(
            'tenant_id', NEW.tenant_id, 'id', NEW.id, 'client_id', NEW.client_id,
            'contract_type', NEW.contract_type, 'currency', NEW.currency,
            'rate_card_id', NEW.rate_card_id, 'frozen_rate_card', NEW.frozen_rate_card,
            'frozen_rate_card_version', NEW.frozen_rate_card_version,
            'frozen_rate_card_sha256', NEW.frozen_rate_card_sha256,
            'activated_at', NEW.activated_at, 'starts_on', NEW.starts_on),
        jsonb_build_object(
            'tenant_id', OLD.tenant_id, 'id', OLD.id, 'client_id', OLD.client_id,
            'contract_type', OLD.contract_type, 'currency', OLD.currency,
            'rate_card_id', OLD.rate_card_id, 'frozen_rate_card', OLD.frozen_rate_card,
            'frozen_rate_card_version', OLD.frozen_rate_card_version,
            'frozen_rate_card_sha256', OLD.frozen_rate_card_sha256,
            'activated_at', OLD.activated_at, 'starts_on', OLD.starts_on),
        ARRAY[]::text[]);
    IF changed IS NOT NULL THEN
        PERFORM effigate_refuse('contracts', changed, format(
            'contract %s is %s (activated %s): %s is locked at activation and cannot change '
            'from %s to %s', OLD.id, OLD.status, OLD.activated_at, changed,
            to_jsonb(OLD) -> changed, to_jsonb(NEW) -> changed));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER contracts_guard BEFORE UPDATE OR DELETE ON contracts
    FOR EACH ROW EXECUTE FUNCTION effigate_contracts_guard();

-- Billing periods: a closed period never reopens or moves.
CREATE FUNCTION effigate_billing_periods_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    changed text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status = 'CLOSED' THEN
            PERFORM effigate_refuse('billing_periods', 'status', format(
                'billing period %s is CLOSED and cannot be deleted', OLD.id));
        END IF;
        RETURN OLD;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.status = 'CLOSED' THEN
            NEW.closed_at := coalesce(NEW.closed_at, now());
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.status = 'CLOSED' THEN
        changed := effigate_first_change(to_jsonb(NEW), to_jsonb(OLD), ARRAY[]::text[]);
        IF changed IS NOT NULL THEN
            PERFORM effigate_refuse('billing_periods', changed, format(
                'billing period %s is CLOSED: %s cannot change from %s to %s', OLD.id,
                changed, to_jsonb(OLD) -> changed, to_jsonb(NEW) -> changed));
        END IF;
    ELSIF NEW.status = 'CLOSED' THEN
        NEW.closed_at := coalesce(NEW.closed_at, now());
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER billing_periods_guard BEFORE INSERT OR UPDATE OR DELETE ON billing_periods
    FOR EACH ROW EXECUTE FUNCTION effigate_billing_periods_guard();

-- Time logs: read-only while they overlap a closed billing period of their contract, or once
-- they are on an issued invoice. A late log may still be inserted into a closed period (it
-- lands on the next open invoice with its original dates); after that it is read-only too.
-- The overlapping periods are share-locked first, so closing a period and editing one of its
-- logs are ordered: whichever comes second sees the first.
CREATE FUNCTION effigate_time_logs_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    changed text;
    new_contract bigint;
    new_start timestamptz;
    new_end timestamptz;
    closed_period bigint;
    on_invoice bigint;
    new_value jsonb;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        changed := effigate_first_change(to_jsonb(NEW), to_jsonb(OLD), ARRAY[]::text[]);
        IF changed IS NULL THEN
            RETURN NEW;
        END IF;
        new_contract := NEW.contract_id;
        new_start := NEW.started_at;
        new_end := NEW.ended_at;
        new_value := to_jsonb(NEW) -> changed;
    ELSE
        changed := 'id';
        new_contract := OLD.contract_id;
        new_start := OLD.started_at;
        new_end := OLD.ended_at;
    END IF;
    PERFORM 1 FROM billing_periods p
    WHERE p.tenant_id = OLD.tenant_id
        AND ((p.contract_id = OLD.contract_id AND p.starts_at < OLD.ended_at
              AND p.ends_at > OLD.started_at)
             OR (p.contract_id = new_contract AND p.starts_at < new_end
                 AND p.ends_at > new_start))
    FOR SHARE;
    SELECT p.id INTO closed_period FROM billing_periods p
    WHERE p.tenant_id = OLD.tenant_id AND p.status = 'CLOSED'
        AND ((p.contract_id = OLD.contract_id AND p.starts_at < OLD.ended_at
              AND p.ends_at > OLD.started_at)
             OR (p.contract_id = new_contract AND p.starts_at < new_end
                 AND p.ends_at > new_start))
    ORDER BY p.starts_at LIMIT 1;
    IF closed_period IS NOT NULL THEN
        PERFORM effigate_refuse('time_logs', changed, format(
            'time log %L is in closed billing period %s and is read-only: %s of %s refused '
            '(old value %s, new value %s)', OLD.id, closed_period, TG_OP, changed,
            to_jsonb(OLD) -> changed, new_value));
    END IF;
    SELECT i.invoice_id INTO on_invoice FROM time_log_invoicing i
    WHERE i.tenant_id = OLD.tenant_id AND i.time_log_id = OLD.id LIMIT 1;
    IF on_invoice IS NOT NULL THEN
        PERFORM effigate_refuse('time_logs', changed, format(
            'time log %L is on issued invoice %s and is read-only: %s of %s refused '
            '(old value %s, new value %s)', OLD.id, on_invoice, TG_OP, changed,
            to_jsonb(OLD) -> changed, new_value));
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER time_logs_guard BEFORE UPDATE OR DELETE ON time_logs
    FOR EACH ROW EXECUTE FUNCTION effigate_time_logs_guard();

-- Invoices: created as drafts; issuing numbers them gap-free per tenant (the counter row is
-- locked until the issuing transaction ends, so a rolled-back issue leaves no gap), records
-- their time logs in time_log_invoicing and freezes them.
CREATE FUNCTION effigate_invoices_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    changed text;
    lines_sum bigint;
    clash record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status NOT IN ('DRAFT', 'REVIEW') THEN
            PERFORM effigate_refuse('invoices', 'status', format(
                'invoice status %L: an invoice is created as DRAFT or REVIEW and issued '
                'afterwards', NEW.status));
        END IF;
        IF NEW.number IS NOT NULL THEN
            PERFORM effigate_refuse('invoices', 'number', format(
                'invoice number %s: numbers are assigned by the database at issue',
                NEW.number));
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF OLD.status NOT IN ('DRAFT', 'REVIEW') THEN
            PERFORM effigate_refuse('invoices', 'status', format(
                'invoice %s (number %s) is %s and cannot be deleted', OLD.id, OLD.number,
                OLD.status));
        END IF;
        RETURN OLD;
    END IF;

    IF OLD.status IN ('DRAFT', 'REVIEW') THEN
        IF NEW.number IS DISTINCT FROM OLD.number THEN
            PERFORM effigate_refuse('invoices', 'number', format(
                'invoice %s: number %s refused; numbers are assigned by the database at issue',
                OLD.id, NEW.number));
        END IF;
        IF NEW.status IN ('DRAFT', 'REVIEW') THEN
            RETURN NEW;
        END IF;
        IF NEW.status <> 'ISSUED' THEN
            PERFORM effigate_refuse('invoices', 'status', format(
                'invoice %s: status %s -> %s is not permitted; issue it first', OLD.id,
                OLD.status, NEW.status));
        END IF;
        SELECT coalesce(sum(l.amount_minor), 0) INTO lines_sum FROM invoice_lines l
        WHERE l.tenant_id = NEW.tenant_id AND l.invoice_id = NEW.id;
        IF lines_sum <> NEW.subtotal_minor THEN
            PERFORM effigate_refuse('invoices', 'subtotal_minor', format(
                'invoice %s: subtotal_minor %s differs from the sum of its lines %s',
                OLD.id, NEW.subtotal_minor, lines_sum));
        END IF;
        SELECT l.time_log_id, l.part, i.invoice_id, v.number INTO clash
        FROM invoice_line_time_logs l
        JOIN time_log_invoicing i
            ON i.tenant_id = l.tenant_id AND i.time_log_id = l.time_log_id AND i.part = l.part
        JOIN invoices v ON v.id = i.invoice_id
        WHERE l.tenant_id = NEW.tenant_id AND l.invoice_id = NEW.id LIMIT 1;
        IF FOUND THEN
            PERFORM effigate_refuse('invoice_line_time_logs', 'time_log_id', format(
                'time log %L (part %s) is already on issued invoice %s (number %s)',
                clash.time_log_id, clash.part, clash.invoice_id, clash.number));
        END IF;
        -- the primary key catches a concurrent issue of the same log
        INSERT INTO time_log_invoicing (tenant_id, time_log_id, part, invoice_id)
        SELECT DISTINCT l.tenant_id, l.time_log_id, l.part, NEW.id
        FROM invoice_line_time_logs l
        WHERE l.tenant_id = NEW.tenant_id AND l.invoice_id = NEW.id;
        INSERT INTO invoice_number_counters AS c (tenant_id, last_number)
        VALUES (NEW.tenant_id, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET last_number = c.last_number + 1
        RETURNING c.last_number INTO NEW.number;
        NEW.issued_at := coalesce(NEW.issued_at, now());
        RETURN NEW;
    END IF;

    -- issued: only the status moves, along permitted transitions
    changed := effigate_first_change(to_jsonb(NEW), to_jsonb(OLD), ARRAY['status']);
    IF changed IS NOT NULL THEN
        PERFORM effigate_refuse('invoices', changed, format(
            'invoice %s (number %s) is %s and immutable: %s cannot change from %s to %s; '
            'correct it with a credit note', OLD.id, OLD.number, OLD.status, changed,
            to_jsonb(OLD) -> changed, to_jsonb(NEW) -> changed));
    END IF;
    IF NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    IF NOT ((OLD.status = 'ISSUED' AND NEW.status IN ('PAID', 'OVERDUE', 'VOID'))
            OR (OLD.status = 'OVERDUE' AND NEW.status IN ('PAID', 'VOID'))) THEN
        PERFORM effigate_refuse('invoices', 'status', format(
            'invoice %s (number %s): status %s -> %s is not permitted', OLD.id, OLD.number,
            OLD.status, NEW.status));
    END IF;
    IF NEW.status = 'VOID' THEN
        IF EXISTS (SELECT 1 FROM payments p
                   WHERE p.tenant_id = OLD.tenant_id AND p.invoice_id = OLD.id) THEN
            PERFORM effigate_refuse('invoices', 'status', format(
                'invoice %s (number %s) has payments and cannot be voided; issue a credit '
                'note instead', OLD.id, OLD.number));
        END IF;
        -- a voided invoice no longer holds its time logs
        DELETE FROM time_log_invoicing i WHERE i.tenant_id = OLD.tenant_id
            AND i.invoice_id = OLD.id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER invoices_guard BEFORE INSERT OR UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION effigate_invoices_guard();

-- Lines and their time-log evidence change only while their invoice is a draft. The invoice
-- row is share-locked so a line cannot slip in while the invoice is being issued.
CREATE FUNCTION effigate_invoice_children_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    inv record;
    target bigint;
BEGIN
    FOREACH target IN ARRAY CASE TG_OP
        WHEN 'INSERT' THEN ARRAY[NEW.invoice_id]
        WHEN 'DELETE' THEN ARRAY[OLD.invoice_id]
        ELSE ARRAY[OLD.invoice_id, NEW.invoice_id] END
    LOOP
        SELECT v.id, v.number, v.status INTO inv FROM invoices v WHERE v.id = target FOR SHARE;
        IF FOUND AND inv.status NOT IN ('DRAFT', 'REVIEW') THEN
            PERFORM effigate_refuse(TG_TABLE_NAME, 'invoice_id', format(
                'invoice %s (number %s) is %s and immutable: %s on %s refused', inv.id,
                inv.number, inv.status, TG_OP, TG_TABLE_NAME));
        END IF;
    END LOOP;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER invoice_lines_guard BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION effigate_invoice_children_guard();
CREATE TRIGGER invoice_line_time_logs_guard
    BEFORE INSERT OR UPDATE OR DELETE ON invoice_line_time_logs
    FOR EACH ROW EXECUTE FUNCTION effigate_invoice_children_guard();

-- Credit notes: only against an issued invoice, and never more than is still creditable -
-- in total against the invoice total, and per line against the line amount. The invoice row
-- is locked so concurrent credit notes are checked one after the other.
CREATE FUNCTION effigate_credit_notes_check() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    inv record;
    credited bigint;
    line_amount bigint;
BEGIN
    SELECT v.id, v.number, v.status, v.total_minor INTO inv FROM invoices v
    WHERE v.tenant_id = NEW.tenant_id AND v.id = NEW.invoice_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NEW;  -- the foreign key reports the missing invoice
    END IF;
    IF inv.status NOT IN ('ISSUED', 'PAID', 'OVERDUE') THEN
        PERFORM effigate_refuse(TG_TABLE_NAME, 'invoice_id', format(
            'invoice %s is %s: only an issued invoice can be credited', inv.id, inv.status));
    END IF;
    IF TG_TABLE_NAME = 'credit_notes' THEN
        SELECT coalesce(sum(c.total_minor), 0) INTO credited FROM credit_notes c
        WHERE c.tenant_id = NEW.tenant_id AND c.invoice_id = NEW.invoice_id;
        IF credited + NEW.total_minor > inv.total_minor THEN
            PERFORM effigate_refuse('credit_notes', 'total_minor', format(
                'credit note total_minor %s exceeds what is creditable on invoice %s '
                '(number %s): %s of %s already credited, %s remaining', NEW.total_minor,
                inv.id, inv.number, credited, inv.total_minor, inv.total_minor - credited));
        END IF;
    ELSE
        SELECT greatest(l.amount_minor, 0) INTO line_amount FROM invoice_lines l
        WHERE l.tenant_id = NEW.tenant_id AND l.id = NEW.invoice_line_id;
        SELECT coalesce(sum(c.amount_minor), 0) INTO credited FROM credit_note_lines c
        WHERE c.tenant_id = NEW.tenant_id AND c.invoice_line_id = NEW.invoice_line_id;
        IF credited + NEW.amount_minor > line_amount THEN
            PERFORM effigate_refuse('credit_note_lines', 'amount_minor', format(
                'credit of amount_minor %s exceeds what is creditable on invoice line %s: '
                '%s of %s already credited, %s remaining', NEW.amount_minor,
                NEW.invoice_line_id, credited, line_amount, line_amount - credited));
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER credit_notes_check BEFORE INSERT ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION effigate_credit_notes_check();
CREATE TRIGGER credit_note_lines_check BEFORE INSERT ON credit_note_lines
    FOR EACH ROW EXECUTE FUNCTION effigate_credit_notes_check();

-- Payments: only against an issued, not voided invoice. The share lock orders a payment and
-- a concurrent void, so one of the two always sees the other.
CREATE FUNCTION effigate_payments_check() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    inv record;
BEGIN
    SELECT v.id, v.number, v.status INTO inv FROM invoices v
    WHERE v.tenant_id = NEW.tenant_id AND v.id = NEW.invoice_id FOR SHARE;
    IF FOUND AND inv.status NOT IN ('ISSUED', 'PAID', 'OVERDUE') THEN
        PERFORM effigate_refuse('payments', 'invoice_id', format(
            'invoice %s is %s: payments are recorded only against an issued invoice',
            inv.id, inv.status));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER payments_check BEFORE INSERT ON payments
    FOR EACH ROW EXECUTE FUNCTION effigate_payments_check();

-- References of the bulk tables, checked once per statement over its transition table: the
-- referenced rows are key-share locked (as a foreign key would) and any missing one is
-- reported by the first offending row. Deleting or re-keying a referenced row is refused below.
CREATE FUNCTION effigate_time_logs_refs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    bad record;
BEGIN
    PERFORM 1 FROM contracts c
    WHERE (c.tenant_id, c.id) IN (SELECT DISTINCT n.tenant_id, n.contract_id FROM new_rows n)
    FOR KEY SHARE;
    SELECT n.id, n.contract_id INTO bad FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM contracts c
                      WHERE c.tenant_id = n.tenant_id AND c.id = n.contract_id)
    LIMIT 1;
    IF FOUND THEN
        PERFORM effigate_refuse('time_logs', 'contract_id', format(
            'time log %L: contract_id %s is not a contract of this tenant', bad.id,
            bad.contract_id));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER time_logs_refs_insert AFTER INSERT ON time_logs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_time_logs_refs();
CREATE TRIGGER time_logs_refs_update AFTER UPDATE ON time_logs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_time_logs_refs();

CREATE FUNCTION effigate_tickets_refs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    bad record;
BEGIN
    PERFORM 1 FROM clients c
    WHERE (c.tenant_id, c.id) IN (SELECT DISTINCT n.tenant_id, n.client_id FROM new_rows n)
    FOR KEY SHARE;
    PERFORM 1 FROM contracts c
    WHERE (c.tenant_id, c.id) IN (SELECT DISTINCT n.tenant_id, n.contract_id FROM new_rows n)
    FOR KEY SHARE;
    SELECT n.id, n.client_id INTO bad FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM clients c
                      WHERE c.tenant_id = n.tenant_id AND c.id = n.client_id)
    LIMIT 1;
    IF FOUND THEN
        PERFORM effigate_refuse('tickets', 'client_id', format(
            'ticket %L: client_id %s is not a client of this tenant', bad.id, bad.client_id));
    END IF;
    SELECT n.id, n.contract_id INTO bad FROM new_rows n
    WHERE n.contract_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM contracts c
                        WHERE c.tenant_id = n.tenant_id AND c.id = n.contract_id)
    LIMIT 1;
    IF FOUND THEN
        PERFORM effigate_refuse('tickets', 'contract_id', format(
            'ticket %L: contract_id %s is not a contract of this tenant', bad.id,
            bad.contract_id));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tickets_refs_insert AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_tickets_refs();
CREATE TRIGGER tickets_refs_update AFTER UPDATE ON tickets
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_tickets_refs();

CREATE FUNCTION effigate_ticket_events_refs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    bad record;
BEGIN
    PERFORM 1 FROM tickets t
    WHERE (t.tenant_id, t.id) IN (SELECT DISTINCT n.tenant_id, n.ticket_id FROM new_rows n)
    FOR KEY SHARE;
    SELECT n.id, n.ticket_id INTO bad FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM tickets t
                      WHERE t.tenant_id = n.tenant_id AND t.id = n.ticket_id)
    LIMIT 1;
    IF FOUND THEN
        PERFORM effigate_refuse('ticket_events', 'ticket_id', format(
            'ticket event %L: ticket_id %L is not a ticket of this tenant', bad.id,
            bad.ticket_id));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ticket_events_refs_insert AFTER INSERT ON ticket_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_ticket_events_refs();
CREATE TRIGGER ticket_events_refs_update AFTER UPDATE ON ticket_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_ticket_events_refs();

-- The referenced side: a client, contract or ticket that bulk rows point at can be neither
-- deleted nor re-keyed.
CREATE FUNCTION effigate_referenced_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    used boolean;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.id IS DISTINCT FROM OLD.id THEN
            PERFORM effigate_refuse(TG_TABLE_NAME, 'id', format(
                '%s %s: the tenant and id of a row cannot change', TG_TABLE_NAME, OLD.id));
        END IF;
        RETURN NEW;
    END IF;
    used := CASE TG_TABLE_NAME
        WHEN 'clients' THEN EXISTS (SELECT 1 FROM tickets t
            WHERE t.tenant_id = OLD.tenant_id AND t.client_id = OLD.id)
        WHEN 'contracts' THEN
            EXISTS (SELECT 1 FROM time_logs l
                    WHERE l.tenant_id = OLD.tenant_id AND l.contract_id = OLD.id)
            OR EXISTS (SELECT 1 FROM tickets t
                       WHERE t.tenant_id = OLD.tenant_id AND t.contract_id = OLD.id)
        WHEN 'tickets' THEN EXISTS (SELECT 1 FROM ticket_events e
            WHERE e.tenant_id = OLD.tenant_id AND e.ticket_id = OLD.id)
        END;
    IF used THEN
        PERFORM effigate_refuse(TG_TABLE_NAME, 'id', format(
            '%s %s is still referenced by tickets, ticket events or time logs and cannot be '
            'deleted', TG_TABLE_NAME, OLD.id));
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER referenced_guard BEFORE UPDATE OF tenant_id, id OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION effigate_referenced_guard();
CREATE TRIGGER referenced_guard BEFORE UPDATE OF tenant_id, id OR DELETE ON contracts
    FOR EACH ROW EXECUTE FUNCTION effigate_referenced_guard();
CREATE TRIGGER referenced_guard BEFORE UPDATE OF tenant_id, id OR DELETE ON tickets
    FOR EACH ROW EXECUTE FUNCTION effigate_referenced_guard();
CREATE INDEX tickets_by_client ON tickets (tenant_id, client_id);
