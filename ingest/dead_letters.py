"""Dead letters: built from the rejected message, made safe to send, and delivered whatever it
takes, so that dead-lettering never stops the consumer.

A dead letter is the source message unchanged (value and key) in ``<topic>.dlq``, with the
source's headers and Backlight's: ``backlight.error`` (the reason, at most 1,000 characters),
``backlight.error.code`` (a stable code: ``invalid_json``, ..., ``store_rejected``) and
``backlight.source.topic/partition/offset``.

Headers are sanitised first (``sanitise_headers``): a null value becomes empty, a name that
is not text is made text, names are cut to ``HEADER_NAME_MAX`` bytes and values to
``HEADER_VALUE_MAX``, and at most ``HEADERS_MAX`` of the source's headers are kept (Backlight's
own always follow). Names are valid UTF-8 afterwards.

Delivery (``DeadLetters.publish``) waits for the broker's acknowledgement of every letter of
a batch before the batch's offsets may be committed:
- a letter the topic refuses as too large (its ``max.message.bytes``) is sent again alone (it
  may have been refused only for sharing a request with others), then truncated: its value is
  cut to half, then half again, until the topic takes it (the largest cut a topic took is
  remembered and tried first for the next large letter). A truncated letter carries
  ``backlight.truncated=true``, ``backlight.original.size`` and ``backlight.original.sha256``
  (of the original value); cut to nothing and still refused, it loses the source's headers;
- any other failure (the broker away longer than the producer's delivery timeout, the topic
  missing) is waited out with the store's backoff and logging (``ingest.retry``), and the
  letters not acknowledged are sent again (so a letter may arrive twice, never zero times);
- stopped meanwhile, ``publish`` returns False: the batch is not committed and is read again.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import structlog

from ingest.errors import DeliveryFailed, KafkaUnavailable
from ingest.retry import RETRY_S, Retrying
from ingest.transport import HeaderList, Message, Sink

HEADER_NAME_MAX = 256
"""Bytes of a header name kept (UTF-8)."""
HEADER_VALUE_MAX = 8 * 1024
"""Bytes of a header value kept."""
HEADERS_MAX = 64
"""The source's headers kept per dead letter (Backlight's own are added after them)."""
REASON_MAX = 1000
FLUSH_SLICE_S = 1.0
"""How long one wait for acknowledgements lasts before the stop flag is looked at again."""
DLQ_SUFFIX = ".dlq"
log = structlog.stdlib.get_logger("backlight.consume")


def dead_letter_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def _text(name: object) -> str:
    if isinstance(name, (bytes, bytearray, memoryview)):
        name = bytes(name).decode("utf-8", "replace")
    elif not isinstance(name, str):
        name = str(name)
    raw = name.encode("utf-8", "replace")[:HEADER_NAME_MAX]
    return raw.decode("utf-8", "ignore")  # a character cut in two is dropped


def _bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value[:HEADER_VALUE_MAX])
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "replace")[:HEADER_VALUE_MAX]


def sanitise_headers(headers: Iterable[tuple[object, object]]) -> list[tuple[str, bytes]]:
    """The first ``HEADERS_MAX`` headers, each a text name and a byte value within the caps."""
    out: list[tuple[str, bytes]] = []
    for item in headers:
        if len(out) == HEADERS_MAX:
            break
        name, value = item
        out.append((_text(name), _bytes(value)))
    return out


@dataclass(frozen=True)
class Letter:
    """One dead letter as it is sent: ``headers`` are the source's (sanitised) and ``ours``
    Backlight's, kept apart so a truncation can drop the source's."""

    topic: str
    value: bytes
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    ours: tuple[tuple[str, bytes], ...]

    def all_headers(self) -> HeaderList:
        return [*self.headers, *self.ours]


def letter(msg: Message, code: str, reason: str) -> Letter:
    """The dead letter of ``msg``, rejected with ``code`` for ``reason``."""
    ours = (
        ("backlight.error", reason[:REASON_MAX].encode("utf-8", "replace")),
        ("backlight.error.code", code.encode()),
        ("backlight.source.topic", msg.topic.encode("utf-8", "replace")),
        ("backlight.source.partition", str(msg.partition).encode()),
        ("backlight.source.offset", str(msg.offset).encode()),
    )
    return Letter(dead_letter_topic(msg.topic), msg.value or b"",
                  None if msg.key is None else bytes(msg.key),
                  tuple(sanitise_headers(msg.headers or ())), ours)


def truncated(original: Letter, keep: int, strip: bool = False) -> Letter:
    """``original`` with its value cut to ``keep`` bytes, saying so and naming the original by
    its size and sha256; ``strip`` also drops the source's headers."""
    digest = hashlib.sha256(original.value).hexdigest()
    ours = (*original.ours, ("backlight.truncated", b"true"),
            ("backlight.original.size", str(len(original.value)).encode()),
            ("backlight.original.sha256", digest.encode()))
    return replace(original, value=original.value[:keep], headers=() if strip else
                   original.headers, ours=ours)


@dataclass
class _Attempt:
    """A letter being delivered: the original and how it is cut (None: whole)."""

    original: Letter
    keep: int | None = None
    strip: bool = False
    alone: bool = False
    """Sent alone at least once (a refusal then is about this letter, not its neighbours)."""

    def current(self) -> Letter:
        if self.keep is None:
            return self.original
        return truncated(self.original, self.keep, self.strip)


class DeadLetters:
    """Delivers dead letters through a ``Sink`` (the consumer's own producer)."""

    def __init__(self, sink: Sink, waits: tuple[float, ...] = RETRY_S) -> None:
        self.sink = sink
        self.waits = waits
        self._fits: dict[str, int] = {}  # per topic: the largest cut it took
        self._refused: dict[str, int] = {}  # per topic: the smallest whole letter it refused

    def publish(self, letters: Sequence[Letter], stop: threading.Event) -> bool:
        """Send ``letters``; True once the broker acknowledged each (whole or truncated),
        False if ``stop`` was set first. Never raises for a broker's failure."""
        todo = [self._first_try(item) for item in letters]
        retrying = Retrying("dead-lettering the batch", stop, log, self.waits)
        while todo:
            # Together first; then, one at a time, those refused as too large (a refusal of a
            # letter sent alone is about that letter, not the others in its request).
            groups = [[a for a in todo if not a.alone], *([a] for a in todo if a.alone)]
            todo, error = [], None
            for group in filter(None, groups):
                outcome = self._deliver(group, stop)
                if outcome is None:
                    return False
                again, failure = outcome
                todo += again
                error = failure or error
            if error is not None and not retrying.failed(error, letters=len(todo)):
                return False
        retrying.succeeded()
        return True

    def _first_try(self, original: Letter) -> _Attempt:
        """Whole, unless the topic refused a smaller letter before: then cut as it last took."""
        refused = self._refused.get(original.topic)
        if refused is not None and _size(original) >= refused:
            keep = min(self._fits.get(original.topic, len(original.value)),
                       len(original.value) // 2)
            return _Attempt(original, keep, alone=True)
        return _Attempt(original)

    def _deliver(self, attempts: list[_Attempt], stop: threading.Event
                 ) -> tuple[list[_Attempt], str | None] | None:
        """Send and wait for the reports: the attempts to make again (those refused as too
        large already cut further) and the error of any other failure (to wait out); None
        when stopped while waiting."""
        sent: dict[int, tuple[_Attempt, HeaderList]] = {}
        for attempt in attempts:
            letter = attempt.current()
            headers = letter.all_headers()
            sent[id(headers)] = (attempt, headers)  # a report names the headers object sent
            self.sink.send(letter.topic, letter.value, letter.key, headers)
        again: list[_Attempt] = []
        error: str | None = None
        while True:
            try:
                self.sink.flush(FLUSH_SLICE_S)
            except DeliveryFailed as exc:
                for failure in exc.failed:
                    found = sent.get(id(failure.headers))
                    if found is None or found[1] is not failure.headers:
                        continue  # a report from an earlier, abandoned wait
                    again.append(found[0])
                    if not (failure.too_large and self._refused_once(found[0])):
                        error = failure.reason  # to wait out (cut to nothing: an operator's)
                if exc.in_flight:
                    if stop.is_set():
                        return None
                    continue
            except KafkaUnavailable as exc:  # a sink that cannot say which: all again
                return list(attempts), str(exc)
            break
        for attempt in attempts:
            if attempt.keep is not None and all(attempt is not a for a in again):
                topic = attempt.original.topic
                self._fits[topic] = max(self._fits.get(topic, 0), attempt.keep)
        return again, error

    def _refused_once(self, attempt: _Attempt) -> bool:
        """Make ``attempt`` the next try for a letter refused as too large: alone and whole
        first, then cut to half, and half again; cut to nothing, without the source's
        headers. False when there is nothing left to cut."""
        topic, size = attempt.original.topic, _size(attempt.original)
        if not attempt.alone:
            attempt.alone = True
        elif attempt.keep is None:
            self._refused[topic] = min(self._refused.get(topic, size), size)
            attempt.keep = min(self._fits.get(topic, len(attempt.original.value)),
                               len(attempt.original.value) // 2)
        elif attempt.keep > 0:
            if self._fits.get(topic, -1) >= attempt.keep:
                self._fits[topic] = attempt.keep // 2  # it took more before: not this one
            attempt.keep //= 2
        elif not attempt.strip:
            attempt.strip = True
        else:
            return False
        return True


def _size(letter: Letter) -> int:
    return (len(letter.value) + len(letter.key or b"")
            + sum(len(n) + len(v) for n, v in (*letter.headers, *letter.ours)))
