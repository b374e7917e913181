"""Hive-partitioned Parquet datasets of a store's tickets, time logs and catalogs, for jobs
that run past one machine (``docs/scale-out.md``): :mod:`~effigate_engine.datasets.layout`
(where each part lives, reading and writing parts on any fsspec file system) and
:mod:`~effigate_engine.datasets.catalog` (each tenant's calendars, policies, contracts and
billing inputs, compiled once per process)."""
