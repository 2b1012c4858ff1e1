"""What happens to each polled message, and a batch sorted accordingly for the writer.

Each message gets an explicit policy: ``STORE`` (a valid event), ``DEAD_LETTER`` (cannot be
decoded, mapped or validated: sent unchanged to ``<topic>.dlq`` with the reason in headers) or
``SKIP`` (a tombstone: a message with no value carries no event). No I/O here: ``prepare``
turns a batch into a ``Prepared`` (the events to store, the dead letters to deliver, the
offsets the batch covers), which ``ingest.batch_writer`` then writes.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ingest.dead_letters import Letter, letter
from ingest.group_offsets import Partition
from ingest.transport import Message
from schemas.decode import SourceSpec, decode
from schemas.errors import InvalidEvent
from schemas.event import CaseEvent
from schemas.frame import Coordinates


class Policy(enum.Enum):
    STORE = "store"
    DEAD_LETTER = "dead_letter"
    SKIP = "skip"


@dataclass
class Prepared:
    """A decoded batch: the events to store, the dead letters' reasons, the offsets to commit."""

    batch: Sequence[Message]
    events: list[CaseEvent] = field(default_factory=list)
    origins: list[Coordinates | None] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    """The message of each event (dead-lettered as it is if the database refuses the row)."""
    letters: list[Letter] = field(default_factory=list)
    next_offsets: dict[Partition, int] = field(default_factory=dict)
    bad: Counter[str] = field(default_factory=Counter)
    bad_by_topic: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: int = 0
    """Messages that carry no event (``Policy.SKIP``)."""
    store_seconds: float | None = None
    """How long the store took to write it (its transaction, commit included); None before."""
    started: float = 0.0
    """``time.perf_counter()`` when the poll handed the batch over."""

    def count_bad(self, topic: str, code: str) -> None:
        """Count a message of ``topic`` dead-lettered for ``code``."""
        self.bad[code] += 1
        self.bad_by_topic[(topic, code)] += 1


def classify(msg: Message, specs: Mapping[str, SourceSpec]
             ) -> tuple[Policy, CaseEvent | InvalidEvent | None]:
    """Decide what happens to one message, and why."""
    if msg.value is None:
        return Policy.SKIP, None
    spec = specs.get(msg.topic)
    if spec is None:
        return Policy.DEAD_LETTER, InvalidEvent("unknown_topic",
                                                f"no source is configured for {msg.topic}")
    try:
        return Policy.STORE, decode(msg.value, msg.headers, spec)
    except InvalidEvent as err:
        return Policy.DEAD_LETTER, err


class DecodePolicy:
    """Classifies messages by the source configured for their topic (``specs``)."""

    def __init__(self, specs: Mapping[str, SourceSpec]) -> None:
        self.specs = dict(specs)

    def classify(self, msg: Message) -> tuple[Policy, CaseEvent | InvalidEvent | None]:
        """Decide what happens to one message, and why."""
        return classify(msg, self.specs)

    def prepare(self, batch: Sequence[Message]) -> Prepared:
        """Classify a batch: its events, its dead letters (the writer delivers them), the
        messages skipped and the offsets it covers."""
        out = Prepared(batch, started=time.perf_counter())
        events, origins, next_offsets, specs = out.events, out.origins, out.next_offsets, self.specs
        messages = out.messages
        for msg in batch:
            topic, partition, offset, value = msg.topic, msg.partition, msg.offset, msg.value
            spec = specs.get(topic)
            if value is not None and spec is not None:
                # The usual message, inlined (this loop runs once per event): what ``classify``
                # decides for a value on a configured topic, STORE unless the decode refuses it.
                try:
                    event = decode(value, msg.headers, spec)
                except InvalidEvent as err:
                    _dead_letter(out, msg, err)
                else:
                    events.append(event)
                    origins.append(Coordinates(topic, partition, offset))
                    messages.append(msg)
            else:
                policy, outcome = classify(msg, specs)
                if policy is Policy.DEAD_LETTER and isinstance(outcome, InvalidEvent):
                    _dead_letter(out, msg, outcome)
                else:
                    out.skipped += 1
            tp = (topic, partition)
            if offset >= next_offsets.get(tp, 0):
                next_offsets[tp] = offset + 1
        return out


def _dead_letter(out: Prepared, msg: Message, error: InvalidEvent) -> None:
    out.letters.append(letter(msg, error.code, str(error)))
    out.count_bad(msg.topic, error.code)
