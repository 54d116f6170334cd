"""JSON from outside the process (an <output>/info from the network, a bundle.json from a model directory) parsed
with limits: size and nesting depth are checked before the parser sees the text, so `"[" * 200000` is an error
with a reason, not a RecursionError. Standard library only (runtime/ stays lean for the robot).
"""
from __future__ import annotations

import json
import re
from typing import Any

# Strings are skipped whole (brackets inside them do not nest); only structural brackets count.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


class JSONLimitError(ValueError):
    """Text that is not JSON (`syntax` True), or JSON beyond the allowed size or depth."""

    def __init__(self, message: str, syntax: bool = False):
        super().__init__(message)
        self.syntax = syntax


def nesting_depth(text: str, limit: int) -> int:
    """Deepest [ / { nesting in `text` (stops counting past `limit`, returning limit + 1)."""
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif token in "]}":
            depth -= 1
    return deepest


def loads_limited(text: str | bytes, *, max_bytes: int, max_depth: int, what: str = "JSON") -> Any:
    """json.loads with limits; JSONLimitError (a ValueError) says which limit or what parse error."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        if len(text) > max_bytes:
            raise JSONLimitError(f"{what} is {len(text)} bytes, more than the {max_bytes} allowed")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            raise JSONLimitError(f"{what} is not valid JSON (not UTF-8: {err})", syntax=True) from None
    if not isinstance(text, str):
        raise JSONLimitError(f"{what} must be text, got {type(text).__name__}")
    if len(text) > max_bytes:  # characters >= bytes / 4: a cheap first bound
        raise JSONLimitError(f"{what} is {len(text)} characters, more than the {max_bytes} allowed")
    depth = nesting_depth(text, max_depth)
    if depth > max_depth:
        raise JSONLimitError(f"{what} nests deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # RecursionError cannot happen below max_depth; kept as a guard
        raise JSONLimitError(f"{what} is not valid JSON ({err})", syntax=True) from None
