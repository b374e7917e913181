"""Where a job runs: ``--cluster local:N`` starts a :class:`distributed.LocalCluster` of ``N``
worker processes (one thread each: the kernels are single-threaded per part, the processes
give the parallelism), ``--cluster tcp://host:8786`` connects to a running scheduler (a
``dask-scheduler``, the Kubernetes operator's or an SSH cluster's)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from effigate_engine.errors import EffigateError

ENV_CLUSTER = "EFFIGATE_CLUSTER"


class ClusterError(EffigateError):
    """A cluster address that cannot be used: names the option and the value."""


def parse(spec: str) -> tuple[str, int | str]:
    """``("local", N)`` or ``("remote", address)`` for a ``--cluster`` value."""
    text = str(spec).strip()
    if text.startswith("local:"):
        count = text[len("local:") :]
        if not count.isdigit() or not 1 <= int(count) <= 256:
            raise ClusterError(f"--cluster {spec!r}: local:N needs N worker processes, 1 to 256")
        return "local", int(count)
    if text.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        return "remote", text
    raise ClusterError(
        f"--cluster {spec!r}: give local:N (N worker processes on this machine) or a"
        " scheduler address such as tcp://scheduler:8786"
    )


@contextmanager
def open_cluster(spec: str, *, quiet: bool = True) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``spec`` (see :func:`parse`), closed on exit (with
    the local cluster it started)."""
    from distributed import Client, LocalCluster

    kind, value = parse(spec)
    if kind == "local":
        cluster = LocalCluster(
            n_workers=int(value),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # no dashboard; the scheduler's own HTTP routes (health, metrics) on a free port,
            # so two local clusters never compete for 8787
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR if quiet else logging.WARNING,
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(str(value), timeout="30s")
    except OSError as exc:
        raise ClusterError(f"--cluster {spec!r}: no scheduler answered ({exc})") from exc
    try:
        yield client
    finally:
        client.close()
