"""A model fingerprint (12 hex digits, 48 bits; latent_info.fingerprint) as three 16-bit words, high first: the form
latent identity rows and telemetry records carry it in, exact in float32. One definition for both."""
from __future__ import annotations

import math
from typing import Iterable


def to_words(fingerprint: str) -> tuple[int, int, int]:
    value = int(fingerprint, 16)
    return value >> 32 & 0xFFFF, value >> 16 & 0xFFFF, value & 0xFFFF


def from_words(words: Iterable) -> str | None:
    """Three words -> the fingerprint, None unless each is a finite whole number in 0..0xFFFF."""
    words = [None if word is None else float(word) for word in words]
    if len(words) != 3 or any(word is None or not math.isfinite(word) or not 0 <= word <= 0xFFFF
                              or word != int(word) for word in words):
        return None
    return "".join(f"{int(word):04x}" for word in words)
