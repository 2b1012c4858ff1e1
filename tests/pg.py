"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster on a free port.

The cluster belongs to the ``postgres`` user (initdb and the server refuse to run as root), so
as root its commands run through ``runuser -u postgres --``. It listens on 127.0.0.1 with trust
authentication and keeps its unix socket in its own directory; fsync stays on (the durability
benchmark measures real commits). ``BACKLIGHT_TEST_POSTGRES`` names a server to use instead.
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


@contextlib.contextmanager
def server() -> Iterator[str]:
    """Start a fresh cluster; yield the URL of its ``postgres`` database; stop and delete it."""
    binaries = bindir()
    if binaries is None:
        raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl): install "
                                "Debian's postgresql package (bash .ci/install does)")
    as_postgres: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="backlight-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    port = _free_port()

    def run(*args: str) -> None:
        proc = subprocess.run([*as_postgres, *args], capture_output=True, text=True, timeout=120,
                              check=False)
        if proc.returncode != 0:
            detail = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {proc.stdout}{proc.stderr}{detail}")

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync")
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200",
            "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            # immediate: no shutdown checkpoint (tens of seconds of fsyncs), the cluster is deleted
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """A new, empty database on the server; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
