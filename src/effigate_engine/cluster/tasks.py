"""Running one task per part: on a Dask cluster (one future per part, gathered as they finish,
with progress), or in this process one part after another (``client=None``: small data and
tests run the very same part function).

A task's outcome is small (counts, not rows: the rows go to the result files each task
writes), so the driver gathers every outcome and combines them. A task lost with its worker
is run again by Dask on another worker (up to ``distributed.scheduler.allowed-failures``
times); a task that raises fails the job with its own error, the other tasks cancelled.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

#: ``progress(done, total)``: called after each part has finished.
Progress = Callable[[int, int], None]


def run_parts(
    client: Any | None,
    fn: Callable[..., T],
    items: Sequence[Any],
    *args: Any,
    name: str,
    progress: Progress | None = None,
) -> list[T]:
    """``fn(item, *args)`` for every item, in item order: one task per item on ``client``'s
    cluster (keys ``<name>-<run>-<k>``: a run's tasks never share a key with another run's),
    or in this process one after another when ``client`` is ``None``. ``fn`` must be a
    module-level function (worker processes import it by name)."""
    total = len(items)
    if client is None:
        done: list[T] = []
        for item in items:
            done.append(fn(item, *args))
            if progress is not None:
                progress(len(done), total)
        return done
    from distributed import as_completed

    run = uuid.uuid4().hex[:12]
    futures = [
        client.submit(fn, item, *args, key=f"{name}-{run}-{k}", pure=False)
        for k, item in enumerate(items)
    ]
    position = {f.key: k for k, f in enumerate(futures)}
    outcomes: list[Any] = [None] * total
    try:
        for finished, future in enumerate(as_completed(futures), start=1):
            outcomes[position[future.key]] = future.result()
            future.release()
            if progress is not None:
                progress(finished, total)
    except BaseException:
        client.cancel(futures)
        raise
    return outcomes


@contextmanager
def progress_bar(unit: str = "part", desc: str | None = None) -> Iterator[Progress]:
    """A :data:`Progress` drawing a ``tqdm`` bar on standard error (cleared when done)."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, desc=desc, leave=False, file=sys.stderr)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()


def worker_count(client: Any | None) -> int:
    """How many worker processes the cluster has now (1 without a client)."""
    if client is None:
        return 1
    return max(1, len(client.scheduler_info().get("workers", {})))
