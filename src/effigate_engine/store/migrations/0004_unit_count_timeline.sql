-- Effigate Engine schema, version 4: unit counts form a timeline per unit type.
--
-- A count holds from its local date `effective_on` (in the contract's zone) until the next
-- count of the same unit type, so a contract that prorates units bills each count for the days
-- it was in force, and one that does not bills the count in force on the cycle's last day.
-- Counts were snapshots at a cycle's end (`cycle_end`, the instant of a local midnight); each
-- becomes the count in force from the cycle's last day: the local date of the second before
-- that instant, which keeps every stored snapshot on the invoice that billed it.
--
-- The table keeps its tenant column, its composite reference to the contract, its row-level
-- security policy and the service role's privileges; only its key changes.

ALTER TABLE unit_counts ADD COLUMN effective_on date;

-- The migrating role may be an owner that FORCE ROW LEVEL SECURITY binds (with no tenant set it
-- would see no row); the backfill lifts FORCE for this transaction only and restores it below.
ALTER TABLE unit_counts NO FORCE ROW LEVEL SECURITY;
ALTER TABLE contracts NO FORCE ROW LEVEL SECURITY;

UPDATE unit_counts u
SET effective_on = ((u.cycle_end - interval '1 second') AT TIME ZONE c.time_zone)::date
FROM contracts c
WHERE c.tenant_id = u.tenant_id AND c.id = u.contract_id;

-- Two snapshots of one unit type on the same local day (instants hours apart): the later one,
-- which the invoice of that cycle billed, stays.
DELETE FROM unit_counts u
USING unit_counts v
WHERE v.tenant_id = u.tenant_id AND v.contract_id = u.contract_id
    AND v.unit_type = u.unit_type AND v.effective_on = u.effective_on
    AND (v.cycle_end, v.id) > (u.cycle_end, u.id);

ALTER TABLE contracts FORCE ROW LEVEL SECURITY;
ALTER TABLE unit_counts FORCE ROW LEVEL SECURITY;

ALTER TABLE unit_counts ALTER COLUMN effective_on SET NOT NULL;
-- Dropping the snapshot instant drops its unique key (tenant, contract, unit type, cycle end).
ALTER TABLE unit_counts DROP COLUMN cycle_end;
ALTER TABLE unit_counts
    ADD CONSTRAINT unit_counts_timeline UNIQUE (tenant_id, contract_id, unit_type, effective_on);

COMMENT ON TABLE unit_counts IS
    'Active units of a type on a RECURRING contract: unit_count holds from effective_on (a local '
    'date in the contract''s zone) until the next row of the same unit type.';
