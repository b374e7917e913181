"""Splitting batches across threads for the compiled kernels (which release the GIL).

One shared thread pool serves every batch API; a batch is cut into equal contiguous slices,
one per thread, and each slice runs on its own worker.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

#: Threads used when the caller does not say.
DEFAULT_THREADS = max(1, min(4, os.cpu_count() or 1))
_MAX_WORKERS = 8

T = TypeVar("T")
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_MAX_WORKERS, thread_name_prefix="effigate")
    return _pool


def slices(n: int, threads: int | None, min_batch: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` slices of ``n`` elements, one per thread; a single slice when the batch is
    smaller than ``min_batch`` or one thread is asked for."""
    count = DEFAULT_THREADS if threads is None else max(1, int(threads))
    if count == 1 or n < min_batch:
        return [(0, n)]
    bounds = np.linspace(0, n, min(count, _MAX_WORKERS) + 1).astype(np.int64)
    return [(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds) if hi > lo]


def run(work: Callable[[int, int], T], parts: list[tuple[int, int]]) -> list[T]:
    """``work(lo, hi)`` for every slice, concurrently when there are several, in slice order.
    An exception in a slice propagates (the earliest slice's first)."""
    if len(parts) == 1:
        return [work(*parts[0])]
    futures = [_executor().submit(work, lo, hi) for lo, hi in parts]
    return [f.result() for f in futures]


def submit(work: Callable[..., T], *args: object, **kwargs: object) -> Future[T]:
    """``work(*args, **kwargs)`` on the shared pool: a compiled kernel (which releases the GIL)
    then runs beside the caller's own Python work."""
    return _executor().submit(work, *args, **kwargs)
