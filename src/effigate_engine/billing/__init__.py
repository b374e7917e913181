"""Billing: invoice assembly, billing runs, buckets, units, SLA credits, tax and credit notes
over the rate cards, contracts and classification of :mod:`effigate_engine.ratecard`."""
