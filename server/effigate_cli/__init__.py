"""The ``effigate`` command: one parser (:mod:`effigate_cli.main`) over the engine, the store
and the service; nothing else in the repository imports it."""
