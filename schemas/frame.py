"""The event frame's columns and where a stored event came from: one definition of each.

`FRAME_SCHEMA` is what the store hands mining (`EventStore.events`) and what mining checks
(`mining.frame.check_frame`); `Coordinates` is an event's place in Kafka, stored beside it.
"""

from __future__ import annotations

from typing import Final

import msgspec
import polars as pl

FRAME_SCHEMA: Final[dict[str, pl.DataType]] = {
    "event_id": pl.String(),
    "case_id": pl.String(),
    "activity": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "lifecycle": pl.String(),
    "resource": pl.String(),
    "team": pl.String(),
    "attributes": pl.String(),
    "seq": pl.Int64(),
}
"""The columns of a process's events as a frame; ``seq`` is arrival order (ties in time keep it)."""


class Coordinates(msgspec.Struct, frozen=True, gc=False):
    """Where an event came from in Kafka (None for events written without Kafka). A Struct,
    like ``CaseEvent``: the consumer builds one per message."""

    topic: str
    partition: int
    offset: int
