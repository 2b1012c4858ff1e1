"""Per-process caches for the web, invalidated when the store receives events of the process.

The store numbers every stored event (its arrival seq). The cache remembers the highest seq it
has seen; at most once per ``check_every_s`` it asks the store which processes got events after
it (``EventStore.changed_since``: a range scan of the new rows only) and drops their entries.
That works whoever writes the store: a consumer in this process, in another, on another host.
Entries are least-recently-used beyond ``max_entries``; one lock per key keeps two requests
from computing the same entry twice.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from storage import EventStore

T = TypeVar("T")


class ProcessCache(Generic[T]):
    """Values computed per key, where ``key[0]`` is the process the value is derived from."""

    def __init__(self, store: EventStore, max_entries: int = 64, check_every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._max = max_entries
        self._every = check_every_s
        self._clock = clock
        self._seen = store.last_seq()
        self._checked = clock()
        self._entries: OrderedDict[tuple[Hashable, ...], T] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[Hashable, ...], threading.Lock] = {}
        self._generation: dict[Hashable, int] = {}
        """Per process, how often its entries were dropped: a value computed while they were
        is not kept (it may predate the new events)."""
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    def get(self, key: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
        """The cached value of ``key``, computed by ``compute`` when absent or stale."""
        self.refresh()
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._entries:
                    self.hits += 1
                    return self._entries[key]
                generation = self._generation.get(key[0], 0)
            value = compute()
            with self._lock:
                self.misses += 1
                if self._generation.get(key[0], 0) != generation:
                    self._key_locks.pop(key, None)
                    return value
                self._entries[key] = value
                self._entries.move_to_end(key)
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
                self._key_locks.pop(key, None)
            return value

    def refresh(self, force: bool = False) -> None:
        """Drop the entries of processes that got new events (checked at most every
        ``check_every_s`` unless ``force``)."""
        now = self._clock()
        with self._lock:
            if not force and now - self._checked < self._every:
                return
            self._checked = now
            seen = self._seen
        changed = self._store.changed_since(seen)
        if not changed:
            return
        with self._lock:
            self._seen = max(self._seen, *changed.values())
            for process in changed:
                self._generation[process] = self._generation.get(process, 0) + 1
            stale = [k for k in self._entries if k[0] in changed]
            for k in stale:
                del self._entries[k]
            self.invalidations += len(stale)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
