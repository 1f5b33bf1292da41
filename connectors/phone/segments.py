"""How many SMS segments a text costs: GSM-7 when every character has a GSM code, UCS-2 otherwise."""

from __future__ import annotations

__all__ = ["encoding", "segments"]

# GSM 03.38 basic set; the extension set's characters cost two septets each
_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_EXTENDED = frozenset("^{}\\[~]|€\f")


def encoding(text: str) -> str:
    """"GSM-7" when the text fits the GSM alphabet, else "UCS-2"."""
    return "GSM-7" if all(c in _BASIC or c in _EXTENDED for c in text) else "UCS-2"


def segments(text: str) -> int:
    """The number of segments the text is sent in (a single one holds 160 GSM-7 or 70 UCS-2 units)."""
    if encoding(text) == "GSM-7":
        units, single, part = sum(2 if c in _EXTENDED else 1 for c in text), 160, 153
    else:
        # UTF-16 code units: a character outside the BMP (most emoji) takes two
        units, single, part = len(text.encode("utf-16-le")) // 2, 70, 67
    if units <= single:
        return 1
    return -(-units // part)
