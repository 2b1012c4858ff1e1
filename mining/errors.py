"""Errors raised by the mining core."""

from __future__ import annotations

from schemas.errors import BacklightError


class MiningError(BacklightError):
    """Base class of every error the mining core raises."""


class FrameError(MiningError):
    """The event frame lacks a column, has a wrong type or holds an invalid value."""


class Pm4pyError(MiningError):
    """pm4py failed on a frame that the mining core handed to it."""


class LiveMergeError(MiningError):
    """Two live maps cannot be merged: other options, or a case fed to both."""
