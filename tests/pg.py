"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster on a free port.

The cluster belongs to the ``postgres`` user (initdb and the server refuse to run as root), so
as root its commands run through ``runuser -u postgres --``. It listens on 127.0.0.1 with trust
authentication and keeps its unix socket in its own directory; fsync stays on (the durability
benchmark measures real commits). ``BACKLIGHT_TEST_POSTGRES`` names a server to use instead.
A ``Cluster`` can be stopped and started again on its port and data directory (the outage
tests restart the database under a running consumer).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg


def bindir() -> Path | None:
    """Where initdb, pg_ctl and postgres are: ``pg_config --bindir``, else the newest
    /usr/lib/postgresql/*/bin that has them."""
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        candidates.append(Path(out))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in versions),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True)
    return next((p for p in candidates if (p / "initdb").is_file() and (p / "pg_ctl").is_file()),
                None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A cluster of the test's own: one data directory and one port for its whole life, so it
    can be stopped and started again as a restarted database server would be (``start``,
    ``stop``); ``remove`` stops it without a shutdown checkpoint and deletes it."""

    def __init__(self) -> None:
        binaries = bindir()
        if binaries is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl): install "
                                    "Debian's postgresql package (bash .ci/install does)")
        self._bin = binaries
        self._as_postgres: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="backlight-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        """The URL of its ``postgres`` database (the same across restarts)."""
        try:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run([*self._as_postgres, str(self._bin / tool), *args],
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            detail = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args[:1])} failed: {proc.stdout}{proc.stderr}"
                               f"{detail}")

    def start(self) -> None:
        """Start the server on its port and data directory; return once it accepts
        connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                  " -c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl -m mode``: fast rolls back the open transactions and
        checkpoints; immediate is a crash, recovered on the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        """Stop it if it runs (immediate: no shutdown checkpoint, tens of seconds of fsyncs,
        for a cluster about to be deleted) and delete it."""
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A started cluster of the caller's own; stopped and deleted afterwards."""
    own = Cluster()
    try:
        own.start()
        yield own
    finally:
        own.remove()


@contextlib.contextmanager
def server() -> Iterator[str]:
    """Start a fresh cluster; yield the URL of its ``postgres`` database; stop and delete it."""
    with cluster() as own:
        yield own.url


def fresh_database(admin_url: str) -> str:
    """A new, empty database on the server; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
