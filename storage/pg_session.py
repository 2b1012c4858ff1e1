"""The limits every PostgreSQL connection of the store sets, so one stuck session cannot hold
the others up for long (``[store]`` in backlight.toml; README "Event store").

Writers take turns on one advisory lock (storage/pg_events.py). A writer frozen (SIGSTOP, a
paused VM) or cut off (a network partition) while holding it would keep every other writer
waiting until the kernel gave up on its TCP connection, which can take hours. With these:
the server ends a session idle inside a transaction after ``idle_in_transaction_s`` (the
lock goes with it), a writer waiting for the lock gives up after ``lock_timeout_s`` (and the
consumer retries the batch), a statement running longer than ``statement_timeout_s`` is
cancelled, and TCP keepalives and ``tcp_user_timeout`` make both ends notice a peer that is
gone. Kept free of psycopg: the configuration builds it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PostgresSession:
    """Per-connection limits (seconds); 0 turns a timeout off (PostgreSQL's own meaning)."""

    lock_timeout_s: float = 5.0
    statement_timeout_s: float = 300.0
    idle_in_transaction_s: float = 10.0
    keepalives_idle_s: int = 10
    keepalives_interval_s: int = 5
    keepalives_count: int = 3
    tcp_user_timeout_s: float = 30.0

    def connect_options(self) -> dict[str, int]:
        """libpq connection parameters (the client's side of the TCP connection); they
        override the same parameters in the store URL."""
        return {"keepalives": 1, "keepalives_idle": self.keepalives_idle_s,
                "keepalives_interval": self.keepalives_interval_s,
                "keepalives_count": self.keepalives_count,
                "tcp_user_timeout": _ms(self.tcp_user_timeout_s)}

    def settings(self) -> dict[str, str]:
        """Session settings (the server's side), as ``SET name = value`` applies them: the
        timeouts, and the server's own keepalives towards the client."""
        return {"lock_timeout": str(_ms(self.lock_timeout_s)),
                "statement_timeout": str(_ms(self.statement_timeout_s)),
                "idle_in_transaction_session_timeout": str(_ms(self.idle_in_transaction_s)),
                "tcp_keepalives_idle": str(self.keepalives_idle_s),
                "tcp_keepalives_interval": str(self.keepalives_interval_s),
                "tcp_keepalives_count": str(self.keepalives_count),
                "tcp_user_timeout": str(_ms(self.tcp_user_timeout_s))}


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
