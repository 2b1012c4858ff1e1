"""JSON that every parser reads (``schemas.strict_json``, here for the shell's writers)."""

from schemas.strict_json import dumps, finite

__all__ = ["dumps", "finite"]
