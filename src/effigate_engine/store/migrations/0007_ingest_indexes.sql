-- Time logs: the secondary index billing reads actually use, at a fraction of its insert cost.
--
-- Billing reads a contract's logs: for the invoice of a period, those that started before the
-- period's end and ended after its start (and, for prepaid contracts, everything since the
-- contract started); late logs are the contract's logs that ended before the period; the
-- reference guard asks whether a contract has any log at all. The only bound an index on
-- started_at can apply is "before the period's end", so (tenant_id, contract_id, started_at)
-- read the contract's whole history anyway, and its keys arrive in random started_at order:
-- each insert landed on a random leaf of a 62 MB index (1M logs), which cost more than the
-- heap and the primary key together. Keyed on (tenant_id, contract_id) alone, equal keys are
-- kept in heap order and deduplicated into posting lists, so a batch's inserts append to one
-- leaf per contract (6 MB for 1M logs of one contract). The measurements are in
-- docs/store.md ("Ingest against PostgreSQL's floor").
DROP INDEX time_logs_by_contract;
CREATE INDEX time_logs_by_contract ON time_logs (tenant_id, contract_id);
