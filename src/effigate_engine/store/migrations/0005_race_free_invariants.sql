-- Effigate Engine schema, version 5: the money invariants hold whatever the caller's isolation
-- level and interleaving, and no guard looks at another tenant's rows.
--
-- How a check stays true under concurrency (docs/store.md, "Concurrency"):
--
-- * Every check reads the rows it depends on under a lock on their parent row, and every
--   write that could invalidate such a check *modifies* that parent row (an aggregate, or a
--   no-op UPDATE: a "touch"). Under READ COMMITTED the lock waits for the other writer and the
--   next statement of the trigger reads the committed result; under REPEATABLE READ and
--   SERIALIZABLE, locking or updating a row modified by a transaction that committed after the
--   snapshot raises a serialization failure (SQLSTATE 40001), which the caller retries. A lock
--   alone is not enough there: a row only locked by a committed transaction is not a conflict.
-- * Where it can, the schema makes the violation unrepresentable: a time log's invoiced
--   intervals may not overlap (an exclusion constraint), an invoice's payments and credit
--   notes never exceed its total and a voided invoice has no payment (CHECK constraints over
--   aggregates the triggers keep on the invoice row), a credit note's lines sum to its
--   subtotal (a constraint trigger at commit), bucket-ledger seconds carry their kind's sign.
--
-- Parents and who touches them:
--   invoice row  - credit notes and payments (aggregates), line and evidence changes (touch),
--                  bucket adjustments of a voided invoice (touch);
--   contract row - creating or issuing an invoice, closing a billing period (touch); a time
--                  log edit share-locks it, an amendment locks it for update.
--
-- Guards that run as the owner (SECURITY DEFINER) look rows up only within the tenant of the
-- statement (effigate_guard_tenant): another tenant's row looks exactly like a missing one.

-- An exclusion constraint over (tenant, log, interval) needs GiST equality for uuid and text.
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Helpers -----------------------------------------------------------------------------------

-- The tenant whose rows a guard may read for a row of tenant row_tenant written by the
-- current statement: the tenant the transaction is bound to (effigate_current_tenant(), which
-- 0006 makes the verified binding: a forged setting binds nothing), so a row claiming another
-- tenant finds nothing and row-level security then refuses it; the row's own tenant for a role
-- that bypasses RLS (a superuser's maintenance, which sees every row anyway).
CREATE FUNCTION effigate_guard_tenant(row_tenant uuid) RETURNS uuid
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    bound uuid := effigate_current_tenant();
BEGIN
    IF bound IS NOT DISTINCT FROM row_tenant
            OR (SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r
                WHERE r.rolname = session_user) THEN
        RETURN row_tenant;
    END IF;
    RETURN bound;
END
$$;

-- A no-op update of a contract row: a new row version, so that a REPEATABLE READ or
-- SERIALIZABLE transaction that locks the contract after this one commits fails with 40001
-- instead of checking a stale snapshot, and a READ COMMITTED one waits and re-reads.
CREATE FUNCTION effigate_touch_contract(tenant uuid, contract bigint) RETURNS void
    LANGUAGE sql
    AS $$ UPDATE contracts SET status = status WHERE tenant_id = tenant AND id = contract $$;

-- The part of a time log an invoice prices, in whole seconds (instants are floored to the
-- second, as the pricing does): the log's interval within the invoice's billing period, or
-- the whole log when it lies outside that period (a late log of an earlier period) or the
-- invoice has no period.
CREATE FUNCTION effigate_priced_slice(
    started_at timestamptz, ended_at timestamptz, period_start timestamptz,
    period_end timestamptz
) RETURNS tstzrange
    LANGUAGE sql STABLE
    AS $$
        SELECT CASE
            WHEN tstzrange(date_trunc('second', started_at), date_trunc('second', ended_at))
                 && tstzrange(period_start, period_end)
            THEN tstzrange(date_trunc('second', started_at), date_trunc('second', ended_at))
                 * tstzrange(period_start, period_end)
            ELSE tstzrange(date_trunc('second', started_at), date_trunc('second', ended_at)) END
    $$;

-- SHA-256 of what prices a time log (contract, instants, level, job type, priority, billable
-- type, approval state), independent of the session's time zone and date style.
CREATE FUNCTION effigate_time_log_digest(
    contract_id bigint, started_at timestamptz, ended_at timestamptz, support_level text,
    job_type text, priority text, billable_type text, approval_state text
) RETURNS bytea
    LANGUAGE sql STABLE
    AS $$
        SELECT sha256(convert_to(format('%s|%s|%s|%L|%L|%L|%L|%L', contract_id,
            extract(epoch FROM started_at), extract(epoch FROM ended_at), support_level,
            job_type, priority, billable_type, approval_state), 'UTF8'))
    $$;

REVOKE ALL ON FUNCTION effigate_guard_tenant(uuid), effigate_touch_contract(uuid, bigint)
    FROM PUBLIC;

-- Schema ------------------------------------------------------------------------------------

-- The backfills below read and write across tenants; a migrating owner that FORCE binds would
-- see no row, so FORCE is lifted for this transaction only and restored at the end.
ALTER TABLE invoices NO FORCE ROW LEVEL SECURITY;
ALTER TABLE invoice_line_time_logs NO FORCE ROW LEVEL SECURITY;
ALTER TABLE time_log_invoicing NO FORCE ROW LEVEL SECURITY;
ALTER TABLE time_logs NO FORCE ROW LEVEL SECURITY;
ALTER TABLE billing_periods NO FORCE ROW LEVEL SECURITY;
ALTER TABLE payments NO FORCE ROW LEVEL SECURITY;
ALTER TABLE credit_notes NO FORCE ROW LEVEL SECURITY;

-- Invoices keep what was paid and credited on their own row: every payment and credit note
-- updates it, so the caps are CHECK constraints and concurrent writers conflict on the row.
ALTER TABLE invoices
    ADD COLUMN paid_minor bigint NOT NULL DEFAULT 0,
    ADD COLUMN credited_minor bigint NOT NULL DEFAULT 0;
ALTER TABLE invoices DISABLE TRIGGER invoices_guard;
UPDATE invoices i
SET paid_minor = coalesce((SELECT sum(p.amount_minor) FROM payments p
                           WHERE p.tenant_id = i.tenant_id AND p.invoice_id = i.id), 0),
    credited_minor = coalesce((SELECT sum(c.total_minor) FROM credit_notes c
                               WHERE c.tenant_id = i.tenant_id AND c.invoice_id = i.id), 0)
WHERE EXISTS (SELECT 1 FROM payments p WHERE p.tenant_id = i.tenant_id AND p.invoice_id = i.id)
    OR EXISTS (SELECT 1 FROM credit_notes c
               WHERE c.tenant_id = i.tenant_id AND c.invoice_id = i.id);
ALTER TABLE invoices ENABLE TRIGGER invoices_guard;
ALTER TABLE invoices
    ADD CONSTRAINT invoices_settled_within_total CHECK (
        paid_minor >= 0 AND credited_minor >= 0 AND paid_minor + credited_minor <= total_minor),
    ADD CONSTRAINT invoices_void_has_no_payment CHECK (status <> 'VOID' OR paid_minor = 0);

-- Time-log evidence carries what the database derived from the log when the line was stored:
-- the interval it prices and a digest of the log's priced fields. The part number stays the
-- caller's label; the issue ledger is keyed on the interval.
ALTER TABLE invoice_line_time_logs
    ADD COLUMN priced tstzrange,
    ADD COLUMN log_digest bytea;
ALTER TABLE invoice_line_time_logs DISABLE TRIGGER invoice_line_time_logs_guard;
UPDATE invoice_line_time_logs e
SET priced = effigate_priced_slice(l.started_at, l.ended_at, p.starts_at, p.ends_at),
    log_digest = effigate_time_log_digest(l.contract_id, l.started_at, l.ended_at,
        l.support_level, l.job_type, l.priority, l.billable_type, l.approval_state)
FROM time_logs l, invoices i LEFT JOIN billing_periods p
    ON p.tenant_id = i.tenant_id AND p.id = i.billing_period_id
WHERE l.tenant_id = e.tenant_id AND l.id = e.time_log_id
    AND i.tenant_id = e.tenant_id AND i.id = e.invoice_id;
ALTER TABLE invoice_line_time_logs ENABLE TRIGGER invoice_line_time_logs_guard;
ALTER TABLE invoice_line_time_logs
    ALTER COLUMN priced SET NOT NULL,
    ALTER COLUMN log_digest SET NOT NULL;

-- The issue ledger: each issued (not void) invoice's time logs with the interval it priced.
-- Two intervals of one log never overlap, whatever part number a caller gave.
DELETE FROM time_log_invoicing;
ALTER TABLE time_log_invoicing DROP CONSTRAINT time_log_invoicing_pkey;
ALTER TABLE time_log_invoicing DROP COLUMN part;
ALTER TABLE time_log_invoicing ADD COLUMN priced tstzrange NOT NULL;
INSERT INTO time_log_invoicing (tenant_id, time_log_id, priced, invoice_id)
SELECT DISTINCT e.tenant_id, e.time_log_id, e.priced, e.invoice_id
FROM invoice_line_time_logs e
JOIN invoices i ON i.tenant_id = e.tenant_id AND i.id = e.invoice_id
WHERE i.status IN ('ISSUED', 'PAID', 'OVERDUE');
ALTER TABLE time_log_invoicing
    ADD CONSTRAINT time_log_invoicing_no_overlap
    EXCLUDE USING gist (tenant_id WITH =, time_log_id WITH =, priced WITH &&);

-- The frozen rate card's text exactly as its SHA-256 was computed (the canonical JSON of the
-- card); the database checks the hash and that it is the same document as frozen_rate_card.
ALTER TABLE contracts ADD COLUMN frozen_rate_card_text text;

-- Bucket-ledger seconds carry their kind's sign: top-ups and rollovers add, drawdowns and
-- expiries take away; an adjustment reverses a voided invoice's drawdown (checked below).
ALTER TABLE bucket_ledger
    ADD CONSTRAINT bucket_ledger_sign_by_kind CHECK (CASE kind
        WHEN 'TOP_UP' THEN seconds > 0
        WHEN 'ROLLOVER' THEN seconds > 0
        WHEN 'DRAWDOWN' THEN seconds < 0
        WHEN 'EXPIRY' THEN seconds < 0
        ELSE seconds <> 0 END),
    ADD CONSTRAINT bucket_ledger_adjustment_cites_invoice CHECK (
        kind <> 'ADJUSTMENT' OR (invoice_id IS NOT NULL AND time_log_id IS NOT NULL));

ALTER TABLE credit_notes FORCE ROW LEVEL SECURITY;
ALTER TABLE payments FORCE ROW LEVEL SECURITY;
ALTER TABLE billing_periods FORCE ROW LEVEL SECURITY;
ALTER TABLE time_logs FORCE ROW LEVEL SECURITY;
ALTER TABLE time_log_invoicing FORCE ROW LEVEL SECURITY;
ALTER TABLE invoice_line_time_logs FORCE ROW LEVEL SECURITY;
ALTER TABLE invoices FORCE ROW LEVEL SECURITY;

-- Contracts ---------------------------------------------------------------------------------

-- The commercial model is fixed at activation: type, client, currency, time zone (it places
-- period boundaries), terms (tax, fees, credits, bucket) and the frozen rate card; changes
-- after activation are amendments. Activation (or a contract stored already active) needs a
-- frozen card whose text hashes to its SHA-256 and is the same JSON document.
CREATE OR REPLACE FUNCTION effigate_contracts_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    changed text;
    locked_old jsonb;
    locked_new jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'DRAFT' THEN
            PERFORM effigate_refuse('contracts', 'status', format(
                'contract %s is %s; only a DRAFT contract can be deleted', OLD.id, OLD.status));
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.status <> 'DRAFT' AND (TG_OP = 'INSERT' OR OLD.status = 'DRAFT') THEN
        NEW.activated_at := coalesce(NEW.activated_at, now());
        IF NEW.frozen_rate_card_text IS NULL THEN
            PERFORM effigate_refuse('contracts', 'frozen_rate_card_text', format(
                'contract %s: frozen_rate_card_text is missing; activation needs the frozen '
                'rate card''s text (the JSON its SHA-256 was computed over)', NEW.id));
        END IF;
        IF encode(sha256(convert_to(NEW.frozen_rate_card_text, 'UTF8')), 'hex')
                IS DISTINCT FROM NEW.frozen_rate_card_sha256 THEN
            PERFORM effigate_refuse('contracts', 'frozen_rate_card_sha256', format(
                'contract %s: frozen_rate_card_sha256 %s is not the SHA-256 of the frozen '
                'rate card''s text (%s)', NEW.id, NEW.frozen_rate_card_sha256,
                encode(sha256(convert_to(NEW.frozen_rate_card_text, 'UTF8')), 'hex')));
        END IF;
        IF NEW.frozen_rate_card_text::jsonb IS DISTINCT FROM NEW.frozen_rate_card THEN
            PERFORM effigate_refuse('contracts', 'frozen_rate_card', format(
                'contract %s: frozen_rate_card differs from the text its SHA-256 covers',
                NEW.id));
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' OR OLD.status = 'DRAFT' THEN
        RETURN NEW;
    END IF;
    IF NEW.status = 'DRAFT' THEN
        PERFORM effigate_refuse('contracts', 'status', format(
            'contract %s: status %s cannot return to DRAFT', OLD.id, OLD.status));
    END IF;
    locked_old := to_jsonb(OLD) - ARRAY['status', 'ends_on', 'calendar_id', 'sla_policy_id',
                                        'created_at'];
    locked_new := to_jsonb(NEW) - ARRAY['status', 'ends_on', 'calendar_id', 'sla_policy_id',
                                        'created_at'];
    changed := effigate_first_change(locked_new, locked_old, ARRAY[]::text[]);
    IF changed IS NOT NULL THEN
        PERFORM effigate_refuse('contracts', changed, format(
            'contract %s is %s (activated %s): %s is locked at activation and cannot change '
            'from %s to %s; record an amendment instead', OLD.id, OLD.status, OLD.activated_at,
            changed, locked_old -> changed, locked_new -> changed));
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER contracts_guard ON contracts;
CREATE TRIGGER contracts_guard BEFORE INSERT OR UPDATE OR DELETE ON contracts
    FOR EACH ROW EXECUTE FUNCTION effigate_contracts_guard();

-- Amendments never reach back into billed time: a RATE_CARD or TOP_UP amendment takes effect
-- no earlier than the end of the contract's latest billing period that is closed or has an
-- invoice that is not void (a draft included: void it to amend inside its period). The
-- contract row is locked for update; issuing, generating and closing touch it.
CREATE FUNCTION effigate_amendments_check() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    billed_through timestamptz;
BEGIN
    IF NEW.tenant_id IS DISTINCT FROM effigate_guard_tenant(NEW.tenant_id) THEN
        RETURN NEW;  -- not the statement's tenant: row-level security refuses the row
    END IF;
    PERFORM 1 FROM contracts c WHERE c.tenant_id = NEW.tenant_id AND c.id = NEW.contract_id
    FOR UPDATE;
    IF NOT FOUND OR NEW.kind NOT IN ('RATE_CARD', 'TOP_UP') THEN
        RETURN NEW;  -- a missing contract is the foreign key's to report
    END IF;
    SELECT max(p.ends_at) INTO billed_through FROM billing_periods p
    WHERE p.tenant_id = NEW.tenant_id AND p.contract_id = NEW.contract_id
        AND (p.status = 'CLOSED'
             OR EXISTS (SELECT 1 FROM invoices i
                        WHERE i.tenant_id = p.tenant_id AND i.billing_period_id = p.id
                            AND i.status <> 'VOID'));
    IF NEW.effective_at < billed_through THEN
        PERFORM effigate_refuse('contract_amendments', 'effective_at', format(
            'a %s amendment of contract %s effective %s is backdated: billing periods up to '
            '%s are closed or invoiced, and an amendment never reprices them', NEW.kind,
            NEW.contract_id, NEW.effective_at, billed_through));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER amendments_check BEFORE INSERT ON contract_amendments
    FOR EACH ROW EXECUTE FUNCTION effigate_amendments_check();

-- Billing periods -------------------------------------------------------------------------

-- A closed period never reopens or moves; closing one (or storing it closed) touches its
-- contract, so a concurrent edit of one of its time logs (which share-locks the contract) is
-- ordered after it - even when the period had no row before.
CREATE OR REPLACE FUNCTION effigate_billing_periods_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
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
        IF NEW.tenant_id IS DISTINCT FROM effigate_guard_tenant(NEW.tenant_id) THEN
            RETURN NEW;
        END IF;
        IF NEW.status = 'CLOSED' THEN
            NEW.closed_at := coalesce(NEW.closed_at, now());
            PERFORM effigate_touch_contract(NEW.tenant_id, NEW.contract_id);
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
        RETURN NEW;
    END IF;
    IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
            OR NEW.contract_id IS DISTINCT FROM OLD.contract_id THEN
        PERFORM effigate_refuse('billing_periods', 'contract_id', format(
            'billing period %s: its tenant and contract cannot change', OLD.id));
    END IF;
    IF NEW.status = 'CLOSED' THEN
        NEW.closed_at := coalesce(NEW.closed_at, now());
        PERFORM effigate_touch_contract(OLD.tenant_id, OLD.contract_id);
    END IF;
    RETURN NEW;
END
$$;

-- Time logs -------------------------------------------------------------------------------

-- A time log is read-only while it overlaps a closed billing period of its contract (before
-- or after the change) or is on an issued invoice. The log's contracts are share-locked
-- first: closing a period and issuing an invoice touch the contract, so the edit waits for
-- them and then reads what they committed (READ COMMITTED), or fails with 40001
-- (REPEATABLE READ, SERIALIZABLE).
CREATE OR REPLACE FUNCTION effigate_time_logs_guard() RETURNS trigger
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
        IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
            PERFORM effigate_refuse('time_logs', 'tenant_id', format(
                'time log %L: the tenant of a row cannot change', OLD.id));
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
    PERFORM 1 FROM contracts c
    WHERE c.tenant_id = OLD.tenant_id AND c.id IN (OLD.contract_id, new_contract)
    ORDER BY c.id FOR SHARE;
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

-- Invoices --------------------------------------------------------------------------------

-- Invoices are created as unnumbered drafts (creating one touches its contract). While a
-- draft, anything but its identity, contract, period, number and issue time may change.
-- Issuing, under the invoice row's lock and a touch of the contract:
--   * (REPEATABLE READ / SERIALIZABLE) share-locks the time logs it prices, which fails with
--     40001 if one changed since the snapshot; under READ COMMITTED the contract touch has
--     already waited for every edit in flight, and the checks below read what they committed;
--   * checks the subtotal against the lines and every time log against what was priced (same
--     contract, approved, same digest of its priced fields as when its evidence was stored);
--   * records each log's priced interval in time_log_invoicing (intervals of one log never
--     overlap), assigns the next gap-free number and sets issued_at to the transaction time.
-- After issue only the status moves (ISSUED -> PAID/OVERDUE/VOID, OVERDUE -> PAID/VOID), and
-- the paid and credited aggregates, which must equal the sums of payments and credit notes.
CREATE OR REPLACE FUNCTION effigate_invoices_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    changed text;
    lines_sum bigint;
    sums record;
    clash record;
    stale record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.tenant_id IS DISTINCT FROM effigate_guard_tenant(NEW.tenant_id) THEN
            RETURN NEW;
        END IF;
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
        IF NEW.paid_minor <> 0 OR NEW.credited_minor <> 0 THEN
            PERFORM effigate_refuse('invoices', 'paid_minor', format(
                'invoice paid_minor %s / credited_minor %s: a new invoice has no payment or '
                'credit note', NEW.paid_minor, NEW.credited_minor));
        END IF;
        NEW.issued_at := NULL;
        PERFORM effigate_touch_contract(NEW.tenant_id, NEW.contract_id);
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

    changed := effigate_first_change(
        jsonb_build_object('tenant_id', NEW.tenant_id, 'id', NEW.id,
                           'contract_id', NEW.contract_id,
                           'billing_period_id', NEW.billing_period_id),
        jsonb_build_object('tenant_id', OLD.tenant_id, 'id', OLD.id,
                           'contract_id', OLD.contract_id,
                           'billing_period_id', OLD.billing_period_id),
        ARRAY[]::text[]);
    IF changed IS NOT NULL THEN
        PERFORM effigate_refuse('invoices', changed, format(
            'invoice %s: %s cannot change; void the invoice and generate another', OLD.id,
            changed));
    END IF;
    IF NEW.paid_minor IS DISTINCT FROM OLD.paid_minor
            OR NEW.credited_minor IS DISTINCT FROM OLD.credited_minor THEN
        SELECT (SELECT coalesce(sum(p.amount_minor), 0) FROM payments p
                WHERE p.tenant_id = OLD.tenant_id AND p.invoice_id = OLD.id) AS paid,
               (SELECT coalesce(sum(c.total_minor), 0) FROM credit_notes c
                WHERE c.tenant_id = OLD.tenant_id AND c.invoice_id = OLD.id) AS credited
        INTO sums;
        IF NEW.paid_minor IS DISTINCT FROM sums.paid THEN
            PERFORM effigate_refuse('invoices', 'paid_minor', format(
                'invoice %s: paid_minor %s is not the sum of its payments %s', OLD.id,
                NEW.paid_minor, sums.paid));
        END IF;
        IF NEW.credited_minor IS DISTINCT FROM sums.credited THEN
            PERFORM effigate_refuse('invoices', 'credited_minor', format(
                'invoice %s: credited_minor %s is not the sum of its credit notes %s', OLD.id,
                NEW.credited_minor, sums.credited));
        END IF;
    END IF;

    IF OLD.status IN ('DRAFT', 'REVIEW') THEN
        IF NEW.number IS DISTINCT FROM OLD.number THEN
            PERFORM effigate_refuse('invoices', 'number', format(
                'invoice %s: number %s refused; numbers are assigned by the database at issue',
                OLD.id, NEW.number));
        END IF;
        IF NEW.status IN ('DRAFT', 'REVIEW') THEN
            NEW.issued_at := NULL;
            RETURN NEW;
        END IF;
        IF NEW.status <> 'ISSUED' THEN
            PERFORM effigate_refuse('invoices', 'status', format(
                'invoice %s: status %s -> %s is not permitted; issue it first', OLD.id,
                OLD.status, NEW.status));
        END IF;
        PERFORM effigate_touch_contract(OLD.tenant_id, OLD.contract_id);
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            PERFORM 1 FROM time_logs l
            WHERE l.tenant_id = OLD.tenant_id AND l.id IN (
                SELECT e.time_log_id FROM invoice_line_time_logs e
                WHERE e.tenant_id = OLD.tenant_id AND e.invoice_id = OLD.id)
            ORDER BY l.id FOR SHARE;
        END IF;
        SELECT coalesce(sum(l.amount_minor), 0) INTO lines_sum FROM invoice_lines l
        WHERE l.tenant_id = OLD.tenant_id AND l.invoice_id = OLD.id;
        IF lines_sum <> NEW.subtotal_minor THEN
            PERFORM effigate_refuse('invoices', 'subtotal_minor', format(
                'invoice %s: subtotal_minor %s differs from the sum of its lines %s',
                OLD.id, NEW.subtotal_minor, lines_sum));
        END IF;
        WITH offending AS MATERIALIZED (
            SELECT e.time_log_id, l.contract_id, l.approval_state
            FROM invoice_line_time_logs e
            JOIN time_logs l ON l.tenant_id = e.tenant_id AND l.id = e.time_log_id
            WHERE e.tenant_id = OLD.tenant_id AND e.invoice_id = OLD.id
                AND (l.contract_id <> OLD.contract_id OR l.approval_state <> 'APPROVED'
                     OR e.log_digest <> effigate_time_log_digest(l.contract_id, l.started_at,
                         l.ended_at, l.support_level, l.job_type, l.priority, l.billable_type,
                         l.approval_state)))
        SELECT * INTO stale FROM offending ORDER BY time_log_id LIMIT 1;
        IF FOUND THEN
            PERFORM effigate_refuse('invoice_line_time_logs', 'time_log_id', CASE
                WHEN stale.contract_id <> OLD.contract_id THEN format(
                    'time log %L belongs to contract %s, not to invoice %s''s contract %s',
                    stale.time_log_id, stale.contract_id, OLD.id, OLD.contract_id)
                WHEN stale.approval_state <> 'APPROVED' THEN format(
                    'time log %L is %s, not APPROVED: invoice %s cannot bill it',
                    stale.time_log_id, stale.approval_state, OLD.id)
                ELSE format(
                    'time log %L changed after invoice %s priced it; void the draft and '
                    'generate it again', stale.time_log_id, OLD.id) END);
        END IF;
        SELECT n.time_log_id, n.priced, i.priced AS held, i.invoice_id, v.number INTO clash
        FROM (SELECT DISTINCT e.time_log_id, e.priced FROM invoice_line_time_logs e
              WHERE e.tenant_id = OLD.tenant_id AND e.invoice_id = OLD.id) n
        JOIN time_log_invoicing i ON i.tenant_id = OLD.tenant_id
            AND i.time_log_id = n.time_log_id AND i.priced && n.priced
        JOIN invoices v ON v.tenant_id = i.tenant_id AND v.id = i.invoice_id
        ORDER BY n.time_log_id LIMIT 1;
        IF FOUND THEN
            PERFORM effigate_refuse('invoice_line_time_logs', 'time_log_id', format(
                'time log %L (%s) is already on issued invoice %s (number %s), which bills %s',
                clash.time_log_id, clash.priced, clash.invoice_id, clash.number, clash.held));
        END IF;
        -- the exclusion constraint catches an overlap with a concurrent issue
        INSERT INTO time_log_invoicing (tenant_id, time_log_id, priced, invoice_id)
        SELECT DISTINCT e.tenant_id, e.time_log_id, e.priced, NEW.id
        FROM invoice_line_time_logs e
        WHERE e.tenant_id = OLD.tenant_id AND e.invoice_id = OLD.id;
        INSERT INTO invoice_number_counters AS c (tenant_id, last_number)
        VALUES (OLD.tenant_id, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET last_number = c.last_number + 1
        RETURNING c.last_number INTO NEW.number;
        NEW.issued_at := now();
        RETURN NEW;
    END IF;

    -- issued: only the status moves, along permitted transitions
    changed := effigate_first_change(to_jsonb(NEW), to_jsonb(OLD),
                                     ARRAY['status', 'paid_minor', 'credited_minor']);
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
        -- the row's own paid_minor: the latest version, every payment having updated it
        IF NEW.paid_minor > 0 THEN
            PERFORM effigate_refuse('invoices', 'status', format(
                'invoice %s (number %s) has payments (%s) and cannot be voided; issue a '
                'credit note instead', OLD.id, OLD.number, NEW.paid_minor));
        END IF;
        -- a voided invoice no longer holds its time logs
        DELETE FROM time_log_invoicing i WHERE i.tenant_id = OLD.tenant_id
            AND i.invoice_id = OLD.id;
    END IF;
    RETURN NEW;
END
$$;

-- A no-op update of invoice rows; see effigate_touch_contract.
CREATE FUNCTION effigate_invoice_touch() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE invoices v SET status = v.status
        FROM (SELECT DISTINCT n.tenant_id, n.invoice_id FROM new_rows n) t
        WHERE v.tenant_id = t.tenant_id AND v.id = t.invoice_id;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE invoices v SET status = v.status
        FROM (SELECT DISTINCT o.tenant_id, o.invoice_id FROM old_rows o) t
        WHERE v.tenant_id = t.tenant_id AND v.id = t.invoice_id;
    END IF;
    RETURN NULL;
END
$$;

-- Lines and their time-log evidence change only while their invoice is a draft: the invoice
-- row is locked for update here and touched once per statement after, so issuing and
-- changing a line are ordered whatever the isolation level. Evidence is bound to the
-- invoice's contract, and the database derives what it prices (the log's interval within the
-- invoice's period) and the digest issuing compares the log against.
CREATE OR REPLACE FUNCTION effigate_invoice_children_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    tenant uuid;
    inv record;
    target bigint;
    log record;
    found_log boolean := false;
BEGIN
    IF TG_OP = 'INSERT' THEN
        tenant := NEW.tenant_id;
        IF tenant IS DISTINCT FROM effigate_guard_tenant(tenant) THEN
            RETURN NEW;  -- not the statement's tenant: row-level security refuses the row
        END IF;
    ELSE
        tenant := OLD.tenant_id;
        IF TG_OP = 'UPDATE' AND NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
            PERFORM effigate_refuse(TG_TABLE_NAME, 'tenant_id',
                format('%s: the tenant of a row cannot change', TG_TABLE_NAME));
        END IF;
    END IF;
    FOREACH target IN ARRAY CASE TG_OP
        WHEN 'INSERT' THEN ARRAY[NEW.invoice_id]
        WHEN 'DELETE' THEN ARRAY[OLD.invoice_id]
        ELSE ARRAY[OLD.invoice_id, NEW.invoice_id] END
    LOOP
        SELECT v.id, v.number, v.status, v.contract_id, v.billing_period_id INTO inv
        FROM invoices v WHERE v.tenant_id = tenant AND v.id = target FOR UPDATE;
        IF FOUND AND inv.status NOT IN ('DRAFT', 'REVIEW') THEN
            PERFORM effigate_refuse(TG_TABLE_NAME, 'invoice_id', format(
                'invoice %s (number %s) is %s and immutable: %s on %s refused', inv.id,
                inv.number, inv.status, TG_OP, TG_TABLE_NAME));
        END IF;
    END LOOP;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF TG_TABLE_NAME <> 'invoice_line_time_logs' THEN
        RETURN NEW;
    END IF;
    IF inv.id IS NOT NULL THEN
        SELECT l.contract_id, l.started_at, l.ended_at, l.support_level, l.job_type,
               l.priority, l.billable_type, l.approval_state, p.starts_at, p.ends_at
        INTO log
        FROM time_logs l
        LEFT JOIN billing_periods p ON p.tenant_id = tenant AND p.id = inv.billing_period_id
        WHERE l.tenant_id = tenant AND l.id = NEW.time_log_id;
        found_log := FOUND;
    END IF;
    IF NOT found_log THEN
        -- a missing invoice or log: placeholders, so that the foreign key reports it
        NEW.priced := 'empty';
        NEW.log_digest := '\x';
        RETURN NEW;
    END IF;
    IF log.contract_id <> inv.contract_id THEN
        PERFORM effigate_refuse('invoice_line_time_logs', 'time_log_id', format(
            'time log %L belongs to contract %s, not to invoice %s''s contract %s',
            NEW.time_log_id, log.contract_id, inv.id, inv.contract_id));
    END IF;
    NEW.priced := effigate_priced_slice(log.started_at, log.ended_at, log.starts_at,
                                        log.ends_at);
    NEW.log_digest := effigate_time_log_digest(log.contract_id, log.started_at,
        log.ended_at, log.support_level, log.job_type, log.priority, log.billable_type,
        log.approval_state);
    RETURN NEW;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['invoice_lines', 'invoice_line_time_logs'] LOOP
        EXECUTE format(
            'CREATE TRIGGER invoice_touch_insert AFTER INSERT ON %I '
            'REFERENCING NEW TABLE AS new_rows '
            'FOR EACH STATEMENT EXECUTE FUNCTION effigate_invoice_touch()', t);
        EXECUTE format(
            'CREATE TRIGGER invoice_touch_update AFTER UPDATE ON %I '
            'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
            'FOR EACH STATEMENT EXECUTE FUNCTION effigate_invoice_touch()', t);
        EXECUTE format(
            'CREATE TRIGGER invoice_touch_delete AFTER DELETE ON %I '
            'REFERENCING OLD TABLE AS old_rows '
            'FOR EACH STATEMENT EXECUTE FUNCTION effigate_invoice_touch()', t);
    END LOOP;
END
$$;

-- Credit notes and payments ---------------------------------------------------------------

-- Against an issued invoice only, and never beyond what is still open on it: a credit note's
-- total and a payment's amount each fit in total - paid - credited, read from the invoice row
-- locked for update (the latest version: every payment and credit note updates that row). A
-- credit note's lines fit in what each line still has. issued_at is the transaction's time.
CREATE OR REPLACE FUNCTION effigate_credit_notes_check() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    inv record;
    credited bigint;
    line_amount bigint;
BEGIN
    IF NEW.tenant_id IS DISTINCT FROM effigate_guard_tenant(NEW.tenant_id) THEN
        RETURN NEW;  -- not the statement's tenant: row-level security refuses the row
    END IF;
    SELECT v.id, v.number, v.status, v.total_minor, v.paid_minor, v.credited_minor INTO inv
    FROM invoices v WHERE v.tenant_id = NEW.tenant_id AND v.id = NEW.invoice_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NEW;  -- the foreign key reports the missing invoice
    END IF;
    IF inv.status NOT IN ('ISSUED', 'PAID', 'OVERDUE') THEN
        PERFORM effigate_refuse(TG_TABLE_NAME, 'invoice_id', format(
            'invoice %s is %s: only an issued invoice can be credited', inv.id, inv.status));
    END IF;
    IF TG_TABLE_NAME = 'credit_notes' THEN
        NEW.issued_at := now();
        IF NEW.total_minor > inv.total_minor - inv.credited_minor - inv.paid_minor THEN
            PERFORM effigate_refuse('credit_notes', 'total_minor', format(
                'credit note total_minor %s exceeds what is creditable on invoice %s '
                '(number %s): %s of %s already credited and %s paid, %s remaining',
                NEW.total_minor, inv.id, inv.number, inv.credited_minor, inv.total_minor,
                inv.paid_minor, inv.total_minor - inv.credited_minor - inv.paid_minor));
        END IF;
    ELSE
        SELECT greatest(l.amount_minor, 0) INTO line_amount FROM invoice_lines l
        WHERE l.tenant_id = NEW.tenant_id AND l.invoice_id = NEW.invoice_id
            AND l.id = NEW.invoice_line_id;
        IF NOT FOUND THEN
            RETURN NEW;  -- the foreign key reports the missing line
        END IF;
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

CREATE OR REPLACE FUNCTION effigate_payments_check() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    inv record;
BEGIN
    IF NEW.tenant_id IS DISTINCT FROM effigate_guard_tenant(NEW.tenant_id) THEN
        RETURN NEW;  -- not the statement's tenant: row-level security refuses the row
    END IF;
    SELECT v.id, v.number, v.status, v.total_minor, v.paid_minor, v.credited_minor INTO inv
    FROM invoices v WHERE v.tenant_id = NEW.tenant_id AND v.id = NEW.invoice_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NEW;  -- the foreign key reports the missing invoice
    END IF;
    IF inv.status NOT IN ('ISSUED', 'PAID', 'OVERDUE') THEN
        PERFORM effigate_refuse('payments', 'invoice_id', format(
            'invoice %s is %s: payments are recorded only against an issued invoice',
            inv.id, inv.status));
    END IF;
    IF NEW.amount_minor > inv.total_minor - inv.paid_minor - inv.credited_minor THEN
        PERFORM effigate_refuse('payments', 'amount_minor', format(
            'payment amount_minor %s exceeds what is due on invoice %s (number %s): total %s, '
            '%s paid, %s credited, %s due', NEW.amount_minor, inv.id, inv.number,
            inv.total_minor, inv.paid_minor, inv.credited_minor,
            inv.total_minor - inv.paid_minor - inv.credited_minor));
    END IF;
    RETURN NEW;
END
$$;

-- The aggregates on the invoice row, once per statement (the invoices guard checks them
-- against the sums, and the CHECK constraints cap them).
CREATE FUNCTION effigate_invoice_settlements() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    IF TG_TABLE_NAME = 'payments' THEN
        UPDATE invoices v SET paid_minor = v.paid_minor + s.amount
        FROM (SELECT n.tenant_id, n.invoice_id, sum(n.amount_minor) AS amount
              FROM new_rows n GROUP BY n.tenant_id, n.invoice_id) s
        WHERE v.tenant_id = s.tenant_id AND v.id = s.invoice_id;
    ELSE
        UPDATE invoices v SET credited_minor = v.credited_minor + s.amount
        FROM (SELECT n.tenant_id, n.invoice_id, sum(n.total_minor) AS amount
              FROM new_rows n GROUP BY n.tenant_id, n.invoice_id) s
        WHERE v.tenant_id = s.tenant_id AND v.id = s.invoice_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER invoice_settlements AFTER INSERT ON payments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_invoice_settlements();
CREATE TRIGGER invoice_settlements AFTER INSERT ON credit_notes
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION effigate_invoice_settlements();

-- A credit note's lines sum to its subtotal, checked when the transaction commits (the note
-- is stored before its lines); a line added to a note later breaks the sum and is refused.
CREATE FUNCTION effigate_credit_note_balanced() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    note bigint;
    subtotal bigint;
    lines_sum bigint;
BEGIN
    IF TG_TABLE_NAME = 'credit_notes' THEN
        note := NEW.id;
    ELSE
        note := NEW.credit_note_id;
    END IF;
    SELECT c.subtotal_minor INTO subtotal FROM credit_notes c
    WHERE c.tenant_id = NEW.tenant_id AND c.id = note;
    SELECT coalesce(sum(l.amount_minor), 0) INTO lines_sum FROM credit_note_lines l
    WHERE l.tenant_id = NEW.tenant_id AND l.credit_note_id = note;
    IF lines_sum IS DISTINCT FROM subtotal THEN
        PERFORM effigate_refuse('credit_note_lines', 'amount_minor', format(
            'credit note %s: its lines sum to %s, not to its subtotal_minor %s', note,
            lines_sum, subtotal));
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER credit_note_balanced AFTER INSERT ON credit_notes
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION effigate_credit_note_balanced();
CREATE CONSTRAINT TRIGGER credit_note_balanced AFTER INSERT ON credit_note_lines
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION effigate_credit_note_balanced();

-- Milestones and deliverables -------------------------------------------------------------

-- An item becomes INVOICED only with an issued invoice of its contract that bills it at its
-- amount; once INVOICED its amount, name and contract never change, it is never deleted, and
-- it returns to APPROVED / SIGNED_OFF only when no issued invoice bills it any more (void).
CREATE FUNCTION effigate_items_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    prefix text := CASE TG_TABLE_NAME WHEN 'milestones' THEN 'milestone:'
                                      ELSE 'deliverable:' END;
    line_kind text := CASE TG_TABLE_NAME WHEN 'milestones' THEN 'MILESTONE'
                                         ELSE 'DELIVERABLE' END;
    changed text;
    billed bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status = 'INVOICED' THEN
            PERFORM effigate_refuse(TG_TABLE_NAME, 'status', format(
                '%s %s is INVOICED and cannot be deleted', TG_TABLE_NAME, OLD.id));
        END IF;
        RETURN OLD;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.status = 'INVOICED' THEN
            PERFORM effigate_refuse(TG_TABLE_NAME, 'status', format(
                '%s status INVOICED: an item is invoiced by issuing an invoice', TG_TABLE_NAME));
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.status = 'INVOICED' THEN
        changed := effigate_first_change(to_jsonb(NEW), to_jsonb(OLD), ARRAY['status']);
        IF changed IS NOT NULL THEN
            PERFORM effigate_refuse(TG_TABLE_NAME, changed, format(
                '%s %s is INVOICED: %s cannot change from %s to %s', TG_TABLE_NAME, OLD.id,
                changed, to_jsonb(OLD) -> changed, to_jsonb(NEW) -> changed));
        END IF;
        IF NEW.status <> 'INVOICED' AND EXISTS (
                SELECT 1 FROM invoice_lines l
                JOIN invoices v ON v.tenant_id = l.tenant_id AND v.id = l.invoice_id
                WHERE l.tenant_id = OLD.tenant_id AND v.contract_id = OLD.contract_id
                    AND v.status IN ('ISSUED', 'PAID', 'OVERDUE') AND l.kind = line_kind
                    AND l.evidence -> 'item_ids' ? (prefix || OLD.id)) THEN
            PERFORM effigate_refuse(TG_TABLE_NAME, 'status', format(
                '%s %s is billed by an issued invoice: it stays INVOICED until that invoice '
                'is voided', TG_TABLE_NAME, OLD.id));
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status = 'INVOICED' THEN
        IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
                OR NEW.contract_id IS DISTINCT FROM OLD.contract_id THEN
            PERFORM effigate_refuse(TG_TABLE_NAME, 'contract_id', format(
                '%s %s: its tenant and contract cannot change', TG_TABLE_NAME, OLD.id));
        END IF;
        SELECT sum(l.amount_minor) INTO billed FROM invoice_lines l
        JOIN invoices v ON v.tenant_id = l.tenant_id AND v.id = l.invoice_id
        WHERE l.tenant_id = OLD.tenant_id AND v.contract_id = OLD.contract_id
            AND v.status IN ('ISSUED', 'PAID', 'OVERDUE') AND l.kind = line_kind
            AND l.evidence -> 'item_ids' ? (prefix || OLD.id);
        IF billed IS DISTINCT FROM NEW.amount_minor THEN
            PERFORM effigate_refuse(TG_TABLE_NAME, 'amount_minor', format(
                '%s %s of amount_minor %s is INVOICED only with an issued invoice billing it '
                'at that amount (issued invoices bill %s)', TG_TABLE_NAME, OLD.id,
                NEW.amount_minor, coalesce(billed::text, 'nothing')));
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER items_guard BEFORE INSERT OR UPDATE OR DELETE ON milestones
    FOR EACH ROW EXECUTE FUNCTION effigate_items_guard();
CREATE TRIGGER items_guard BEFORE INSERT OR UPDATE OR DELETE ON deliverables
    FOR EACH ROW EXECUTE FUNCTION effigate_items_guard();

-- Bucket ledger ---------------------------------------------------------------------------

-- An ADJUSTMENT gives back a voided invoice's drawdown of one time log, and never more than
-- that drawdown (so it cannot create hours). The invoice row is locked and touched, so two
-- adjusters are ordered whatever the isolation level.
CREATE FUNCTION effigate_bucket_ledger_check() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    inv record;
    drawn bigint;
    given_back bigint;
BEGIN
    IF NEW.kind <> 'ADJUSTMENT'
            OR NEW.tenant_id IS DISTINCT FROM effigate_guard_tenant(NEW.tenant_id) THEN
        RETURN NEW;
    END IF;
    SELECT v.id, v.status, v.contract_id INTO inv FROM invoices v
    WHERE v.tenant_id = NEW.tenant_id AND v.id = NEW.invoice_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NEW;  -- the foreign key reports the missing invoice
    END IF;
    UPDATE invoices v SET status = v.status WHERE v.tenant_id = NEW.tenant_id AND v.id = inv.id;
    SELECT coalesce(-sum(b.seconds) FILTER (WHERE b.kind = 'DRAWDOWN'), 0),
           coalesce(sum(b.seconds) FILTER (WHERE b.kind = 'ADJUSTMENT'), 0)
    INTO drawn, given_back
    FROM bucket_ledger b
    WHERE b.tenant_id = NEW.tenant_id AND b.invoice_id = inv.id
        AND b.time_log_id = NEW.time_log_id;
    IF inv.status <> 'VOID' OR inv.contract_id <> NEW.contract_id
            OR NEW.seconds < 0 OR given_back + NEW.seconds > drawn THEN
        PERFORM effigate_refuse('bucket_ledger', 'seconds', format(
            'bucket adjustment of %s s for time log %L on invoice %s (%s): an adjustment '
            'gives back a voided invoice''s drawdown of its contract, %s s drawn, %s s given '
            'back already', NEW.seconds, NEW.time_log_id, inv.id, inv.status, drawn,
            given_back));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER bucket_ledger_check BEFORE INSERT ON bucket_ledger
    FOR EACH ROW EXECUTE FUNCTION effigate_bucket_ledger_check();
