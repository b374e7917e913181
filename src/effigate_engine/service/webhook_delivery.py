"""The delivery worker of a server process: POSTs due webhook deliveries, signed, and records
each outcome (docs/webhooks.md).

Deliveries are rows the database creates in the transaction that writes an event (one per
matching active endpoint). The worker claims due ones of every tenant (``FOR UPDATE SKIP
LOCKED``, so several server processes share the queue without sending one attempt twice),
leasing each for :attr:`DeliverySettings.lease_seconds`, and POSTs them concurrently: the
body of the endpoint's format, the Standard Webhooks headers (``webhook-id`` = the event id,
the same on every attempt; ``webhook-timestamp``; ``webhook-signature``). A 2xx answer
delivers it; anything else (another status, a timeout, a refused connection, a refused
address) is a failed attempt, tried again after an exponential backoff with full jitter, and
DEAD once the endpoint's ``max_attempts`` are spent. A process that dies mid-attempt leaves
the row leased: another (or the restarted) process tries it again when the lease ends, with
the same webhook-id — delivery is at least once, and receivers deduplicate on webhook-id.

It wakes on the database's notification (a delivery created, redelivered, an endpoint
re-activated), at the next due instant, and at the latest every
:attr:`DeliverySettings.poll_seconds` as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import asyncpg
import httpx

from effigate_engine.errors import EffigateError
from effigate_engine.store import webhooks as stored
from effigate_engine.store.database import Store
from effigate_engine.store.webhooks import ClaimedDelivery
from effigate_engine.webhooks.backoff import BASE_SECONDS, CAP_SECONDS, Backoff
from effigate_engine.webhooks.bodies import OutboundEvent, render
from effigate_engine.webhooks.destination import DestinationRefused, check_resolved
from effigate_engine.webhooks.signature import signed_headers

log = logging.getLogger("effigate.webhooks")

USER_AGENT = "Effigate-Webhooks/1"
#: Characters of a failed answer's body kept as the delivery's last error.
ERROR_BODY_CHARS = 300


class SettingsError(EffigateError):
    """A webhook setting in the environment cannot be used (the message names it)."""


@dataclass(frozen=True)
class DeliverySettings:
    """How the worker delivers; from the environment with :meth:`from_environ`.

    ``allow_private``: endpoints may be non-public addresses (``EFFIGATE_WEBHOOK_ALLOW_PRIVATE``
    = 1; development and tests); ``retry_base_seconds`` / ``retry_cap_seconds``: the backoff
    (:mod:`~effigate_engine.webhooks.backoff`); ``timeout_seconds``: one attempt's HTTP
    timeout; ``lease_seconds``: how long a claimed delivery is held before another attempt
    may begin (above the timeout); ``concurrency``: attempts in flight at most;
    ``poll_seconds``: the longest sleep without a notification; ``seed``: seeds the jitter
    (reproducible schedules in tests; ``None``: the system's randomness).
    """

    allow_private: bool = False
    retry_base_seconds: float = BASE_SECONDS
    retry_cap_seconds: float = CAP_SECONDS
    timeout_seconds: float = 10.0
    lease_seconds: float = 60.0
    concurrency: int = 16
    poll_seconds: float = 5.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.lease_seconds > self.timeout_seconds > 0:
            raise SettingsError(
                f"EFFIGATE_WEBHOOK_LEASE_SECONDS ({self.lease_seconds}) must exceed"
                f" EFFIGATE_WEBHOOK_TIMEOUT_SECONDS ({self.timeout_seconds}), which must be > 0"
            )
        if self.concurrency < 1 or not self.poll_seconds > 0:
            raise SettingsError("EFFIGATE_WEBHOOK_CONCURRENCY and _POLL_SECONDS must be > 0")
        try:
            Backoff(self.retry_base_seconds, self.retry_cap_seconds)
        except ValueError as exc:
            raise SettingsError(f"EFFIGATE_WEBHOOK_RETRY_*: {exc}") from exc

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DeliverySettings:
        """The settings ``EFFIGATE_WEBHOOK_*`` give (defaults for those unset)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        names = {
            "retry_base_seconds": float,
            "retry_cap_seconds": float,
            "timeout_seconds": float,
            "lease_seconds": float,
            "concurrency": int,
            "poll_seconds": float,
            "seed": int,
        }
        for name, kind in names.items():
            key = f"EFFIGATE_WEBHOOK_{name.upper()}"
            if env.get(key):
                try:
                    values[name] = kind(env[key])
                except ValueError as exc:
                    raise SettingsError(f"{key}: {env[key]!r} is not a number") from exc
        allow = env.get("EFFIGATE_WEBHOOK_ALLOW_PRIVATE", "")
        if allow not in ("", "0", "1"):
            raise SettingsError(f"EFFIGATE_WEBHOOK_ALLOW_PRIVATE: {allow!r} must be 0 or 1")
        return cls(allow_private=allow == "1", **values)  # type: ignore[arg-type]


class DeliveryWorker:
    """The delivery worker of one server process (see the module); :meth:`start` and
    :meth:`stop` it."""

    def __init__(self, store: Store, settings: DeliverySettings | None = None) -> None:
        self._store = store
        self.settings = settings or DeliverySettings()
        self._backoff = Backoff(
            self.settings.retry_base_seconds,
            self.settings.retry_cap_seconds,
            random.Random(self.settings.seed),
        )
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._attempts: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None

    async def start(self) -> None:
        """Begin delivering (listens for the database's notifications)."""
        await self._listen()
        self._task = asyncio.create_task(self._run(), name="webhook-delivery")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let attempts in flight finish and be recorded for up to ``grace``
        seconds, then cancel the rest (their leases run out and they are tried again)."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._attempts:
            _, late = await asyncio.wait(self._attempts, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    async def _listen(self) -> None:
        try:
            conn = await asyncpg.connect(self._store.app_dsn)
            await conn.add_listener(stored.CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:
            # the periodic poll still finds every due delivery, only later
            log.warning("webhook listener unavailable", extra={"error": str(exc)})
            return
        self._listener = conn

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        timeout = httpx.Timeout(self.settings.timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
            while not self._stopping.is_set():
                # cleared before looking, so a notification during the look is not lost
                self._wake.clear()
                try:
                    claimed = await self._claim()
                except Exception as exc:  # database down: try again after a poll interval
                    log.warning("webhook claim failed", extra={"error": str(exc)})
                    claimed = []
                    await self._sleep(self.settings.poll_seconds)
                    continue
                for delivery in claimed:
                    task = asyncio.create_task(self._attempt(http, delivery))
                    self._attempts.add(task)
                    task.add_done_callback(self._attempts.discard)
                if claimed:
                    continue
                await self._sleep(await self._until_due())

    async def _claim(self) -> list[ClaimedDelivery]:
        # claim no more than there are free slots: a claimed row's lease runs meanwhile
        await self._slots.acquire()
        if self._stopping.is_set():  # shutdown began while it waited for room
            self._slots.release()
            return []
        free = 1
        while free < self.settings.concurrency and not self._slots.locked():
            await self._slots.acquire()
            free += 1
        try:
            async with self._store.connection() as conn:
                claimed = await stored.claim_due(conn, free, self.settings.lease_seconds)
        except BaseException:
            for _ in range(free):
                self._slots.release()
            raise
        for _ in range(free - len(claimed)):
            self._slots.release()
        return claimed

    async def _until_due(self) -> float:
        try:
            async with self._store.connection() as conn:
                seconds = await stored.next_due(conn)
        except Exception:
            return self.settings.poll_seconds
        if seconds is None:
            return self.settings.poll_seconds
        return max(0.0, min(seconds, self.settings.poll_seconds))

    async def _sleep(self, seconds: float) -> None:
        if self._listener is None or self._listener.is_closed():
            self._listener = None
            await self._listen()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _attempt(self, http: httpx.AsyncClient, delivery: ClaimedDelivery) -> None:
        try:
            status, error = await self._post(http, delivery)
            delivered = error is None
            retry = 0.0 if delivered else self._backoff.delay(delivery.attempt)
            try:
                async with self._store.connection() as conn:
                    state = await stored.finish(
                        conn,
                        delivery,
                        delivered=delivered,
                        status=status,
                        error=error,
                        retry_seconds=retry,
                    )
            except Exception as exc:  # the lease runs out; the delivery is tried again
                log.warning(
                    "webhook outcome not recorded",
                    extra={"delivery_id": delivery.delivery_id, "error": str(exc)},
                )
                return
            log.info(
                "webhook attempt",
                extra={
                    "tenant_id": str(delivery.tenant_id),
                    "delivery_id": delivery.delivery_id,
                    "event_id": str(delivery.event_id),
                    "attempt": delivery.attempt,
                    "status": status,
                    "error": error,
                    "state": state,
                    "retry_seconds": round(retry, 3) if state == "PENDING" else None,
                },
            )
        finally:
            self._slots.release()
            self._wake.set()

    async def _post(
        self, http: httpx.AsyncClient, delivery: ClaimedDelivery
    ) -> tuple[int | None, str | None]:
        """One attempt: the HTTP status (``None``: no answer) and the error (``None``: 2xx)."""
        event = OutboundEvent(
            tenant_id=delivery.tenant_id,
            event_id=delivery.event_id,
            type=delivery.event_type,
            subject=delivery.subject,
            occurred_at=delivery.occurred_at,
            client_id=delivery.client_id,
            data=delivery.data,
        )
        try:
            body = render(delivery.format, event)
            parts = urlsplit(delivery.url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            if not self.settings.allow_private:
                await asyncio.to_thread(
                    check_resolved, parts.hostname or "", port, allow_private=False
                )
            headers = signed_headers(
                delivery.secrets, str(delivery.event_id), datetime.now(UTC), body
            )
            headers["content-type"] = "application/json"
            headers["user-agent"] = USER_AGENT
            # the whole attempt, not each read: a receiver dripping bytes cannot outlast it
            async with asyncio.timeout(self.settings.timeout_seconds):
                return await _send(http, delivery.url, body, headers)
        except DestinationRefused as exc:
            return None, f"refused: {exc}"
        except TimeoutError:
            return None, f"no answer within {self.settings.timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:1000]
        except ValueError as exc:  # a body that cannot be rendered
            return None, f"cannot render: {exc}"[:1000]


async def _send(
    http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str | None]:
    """POST ``body``; the status and, unless 2xx, the error with the start of the answer (at
    most :data:`ERROR_BODY_CHARS` bytes read, however large the answer)."""
    async with http.stream("POST", url, content=body, headers=headers) as answer:
        if 200 <= answer.status_code < 300:
            return answer.status_code, None
        head = b""
        async for chunk in answer.aiter_bytes():
            head += chunk
            if len(head) >= ERROR_BODY_CHARS:
                break
        text = head[:ERROR_BODY_CHARS].decode("utf-8", "replace")
        return answer.status_code, f"HTTP {answer.status_code}: {text}"
