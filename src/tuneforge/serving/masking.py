"""Masking of personal data in text: e-mail addresses, phone numbers, national IDs and card numbers.

Request logs always go through ``mask``; with ``serve.mask_inputs`` model inputs do too. Each find
becomes a typed placeholder (``[EMAIL]``, ``[PHONE]``, ``[ID]``, ``[CARD]``) so a log stays
readable. Patterns run most specific first: an 18-character Chinese resident ID is not taken for a
phone number, and a card number must pass the Luhn check, which keeps order numbers and the like.

Covered: e-mail; Chinese mobile numbers (11 digits from 13x-19x, optional +86), international
numbers written with a + and country code, North American numbers, and other numbers written in
groups (0xx xxxx xxxx); Chinese resident IDs (18 characters with a valid birth date), US social
security numbers, UK national insurance numbers; payment cards (13-19 digits, spaces or dashes
allowed, Luhn-valid).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_BIRTH_DATE = r"(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"


def _luhn(match: re.Match) -> bool:
    digits = [int(c) for c in match.group() if c.isdigit()]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return 13 <= len(digits) <= 19 and total % 10 == 0


def _always(_match: re.Match) -> bool:
    return True


# (placeholder, pattern, extra check), in the order they run
_RULES: list[tuple[str, re.Pattern, Callable[[re.Match], bool]]] = [
    # every pattern starts where its kind of text starts (look-behinds): without that, a long run of word
    # characters is rescanned from each position, quadratic time on a 2 MB request
    ("[EMAIL]", re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}"), _always),
    ("[ID]", re.compile(rf"(?<![\dA-Za-z])[1-9]\d{{5}}{_BIRTH_DATE}\d{{3}}[\dXx](?![\dA-Za-z])"), _always),
    ("[CARD]", re.compile(r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?![\d-])"), _luhn),
    ("[ID]", re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), _always),  # US SSN
    ("[ID]", re.compile(r"\b[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", re.IGNORECASE), _always),  # UK NINO
    ("[PHONE]", re.compile(r"(?<![\d+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"), _always),  # China mobile
    ("[PHONE]", re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\d)"), _always),  # +country ...
    ("[PHONE]", re.compile(r"(?<![\w+])(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\d)"), _always),  # (555) 123-4567
    ("[PHONE]", re.compile(r"(?<![\w+])0\d{1,4}[ -]\d{3,4}[ -]?\d{3,4}(?!\d)"), _always),  # 020 7946 0958
]


def mask(text: str) -> str:
    """``text`` with every personal number or address replaced by its placeholder."""
    for placeholder, pattern, valid in _RULES:
        text = pattern.sub(lambda m, p=placeholder, v=valid: p if v(m) else m.group(), text)
    return text
