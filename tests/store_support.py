"""Helpers for tests that reach the store's database behind Backlight's back."""

from __future__ import annotations

import sqlite3

import psycopg


def execute(url: str, sql: str) -> None:
    """Run one statement on the store's database behind its back (what an operator might do)."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///"):]) as db:
            db.execute(sql)
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]
