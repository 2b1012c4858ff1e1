"""Event text made safe to show: control characters are data, never a terminal command.

Case ids, activity names and attributes come from systems Backlight does not control and may
hold escape sequences (``"\\x1b[31m"``), bells, or characters XML 1.0 cannot carry at all.
``printable`` renders every C0 control, DEL, every C1 control and the bidirectional overrides
(which reorder what a reader sees) as visible escapes (``\\x1b``, ``\\u202e``), so the text
reads the same, cannot move a cursor or recolour a terminal, and is valid in XML (SVG, XES).
``json_printable`` does the same inside JSON text, where ``json.dumps(..., ensure_ascii=False)``
leaves DEL and C1 controls raw.
"""

from __future__ import annotations

_BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ESCAPES.update({code: f"\\u{code:04x}" for code in _BIDI})
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in (0x7F, *range(0x80, 0xA0), *_BIDI)}


def printable(text: str) -> str:
    """The text with control characters as visible escapes (``"a\\x1bb"`` shows as ``a\\x1bb``)."""
    if text.isprintable():  # the common case: one C scan, no copy
        return text
    return text.translate(_ESCAPES)


def json_printable(text: str) -> str:
    """JSON text (as ``json.dumps(ensure_ascii=False)`` writes it) with DEL, C1 controls and
    bidirectional overrides as ``\\uXXXX`` escapes: the same JSON value, safe on a terminal."""
    if text.isprintable() or ("\x7f" not in text and text.isascii()):
        return text
    return text.translate(_JSON_ESCAPES)
