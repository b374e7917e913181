"""Events: the transitions the engine announces (SLA warnings, escalations, breaches and met
targets; prepaid buckets running low or exhausted; invoices issued, paid or overdue), their
exactly-once keys, their positions in the outbox and their CloudEvents JSON. Pure: no SQL
(the outbox table is ``effigate_engine.store.events``)."""
