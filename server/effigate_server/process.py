"""Run ``effigate serve`` as a child process (tests, benchmarks, the demo's own service)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

READY = re.compile(r"serving on (\S+)")
HTTP_READY = re.compile(r"HTTP on (\S+)")
FLIGHT_READY = re.compile(r"Flight on (\S+)")


@dataclass
class ServiceProcess:
    """A running ``effigate serve`` child process and the address it listens on."""

    address: str
    process: subprocess.Popen[str]
    #: base URL of the HTTP/JSON API and the screens (``None`` when served without)
    http_url: str | None = None
    #: location of the Arrow Flight endpoints, ``grpc://host:port`` (``None`` when served
    #: without)
    flight_url: str | None = None

    @classmethod
    def start(
        cls,
        dsn: str,
        address: str = "127.0.0.1:0",
        timeout_s: float = 60.0,
        *,
        admin_dsn: str | None = None,
        args: Sequence[str] = ("--log-level", "WARNING"),
        http_address: str | None = "127.0.0.1:0",
        log: Path | None = None,
        flight_address: str | None = "127.0.0.1:0",
    ) -> ServiceProcess:
        """Start the service as the service role at ``dsn`` (``EFFIGATE_DSN``; port 0: a free
        port), migrating first with the owner's ``admin_dsn`` (``EFFIGATE_ADMIN_DSN``) when
        given, with further ``args``, serving HTTP on ``http_address`` and Arrow Flight on
        ``flight_address`` (``None``: none); its
        logs go to the file ``log`` (default: discarded). Returns once it listens."""
        effigate = Path(sys.executable).with_name("effigate")
        env = {**os.environ, "EFFIGATE_DSN": dsn, "PYTHONUNBUFFERED": "1"}
        env.pop("EFFIGATE_ADMIN_DSN", None)
        if admin_dsn is not None:
            env["EFFIGATE_ADMIN_DSN"] = admin_dsn
        with open(log or os.devnull, "w") as errors:
            process = subprocess.Popen(
                [
                    str(effigate),
                    "serve",
                    "--address",
                    address,
                    "--http-address",
                    http_address or "off",
                    "--flight-address",
                    flight_address or "off",
                    *args,
                ],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=env,
            )
        deadline = time.monotonic() + timeout_s
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            match = READY.search(line)
            if match:
                served, http_url, flight_url = match.group(1), None, None
                if http_address is not None:
                    http = HTTP_READY.search(process.stdout.readline())
                    http_url = http.group(1) if http else None
                if flight_address is not None:
                    flight = FLIGHT_READY.search(process.stdout.readline())
                    flight_url = flight.group(1) if flight else None
                return cls(served, process, http_url, flight_url)
        process.kill()
        raise RuntimeError(f"effigate serve did not start (exit code {process.poll()})")

    def stop(self, timeout_s: float = 40.0) -> int:
        """SIGTERM the service, wait for its graceful exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
