"""Outbound webhooks, the pure parts: what is POSTed for an event in each endpoint format
(:mod:`~effigate_engine.webhooks.bodies`), its Standard Webhooks signature
(:mod:`~effigate_engine.webhooks.signature`), when a failed delivery is tried again
(:mod:`~effigate_engine.webhooks.backoff`) and which URLs an endpoint may have
(:mod:`~effigate_engine.webhooks.destination`). No SQL, no network."""
