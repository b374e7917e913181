"""Jobs that spread SLA evaluation, replay and billing runs over a Dask cluster
(``docs/scale-out.md``)."""
