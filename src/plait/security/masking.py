"""Masking secret values (``***``) in log lines, outputs, results and errors.

A :class:`Masker` holds the secret values of one run. It also masks the forms a secret
commonly takes when a step passes it on — URL-encoded, JSON-escaped, base64 — since a
token echoed inside a URL or a JSON body is as much a leak as the token itself (GitHub
Actions users expect the same).

Values shorter than :data:`MIN_SECRET_LENGTH` are not masked: a secret of ``1`` or
``on`` would turn every ``1`` and every ``on`` in every log into ``***``, destroying the
logs while protecting nothing (a two-character secret is guessable anyway). A multi-line
secret (a PEM key) is masked as a whole and line by line, because tools print it one
line at a time and the log is stored line by line.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
#: the shortest value masked (see the module docstring for why short ones are not)
MIN_SECRET_LENGTH = 3


class Masker:
    """Replaces every occurrence of known secret values with ``***``."""

    def __init__(self, secrets: Iterable[object] = ()) -> None:
        self._values: set[str] = set()  # the secrets as given (for exact number matches)
        self._needles: set[str] = set()  # the secrets and their encodings, to search for
        self._pattern: re.Pattern[str] | None = None
        self._dirty = False
        for secret in secrets:
            self.add(secret)

    def __len__(self) -> int:
        return len(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def add(self, value: object) -> None:
        """Mask ``value`` (its text, for a number) from now on; ignored when shorter than
        MIN_SECRET_LENGTH."""
        if not isinstance(value, str):
            value = str(value)
        candidates = [value]
        if "\n" in value or "\r" in value:
            candidates += [line.strip() for line in value.splitlines()]
        for candidate in candidates:
            if len(candidate) < MIN_SECRET_LENGTH:
                continue
            self._values.add(candidate)
            for form in _encodings(candidate):
                if len(form) >= MIN_SECRET_LENGTH and form not in self._needles:
                    self._needles.add(form)
                    self._dirty = True

    def mask(self, text: str) -> str:
        """``text`` with every secret (and encoded secret) replaced by ``***``."""
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    __call__ = mask

    def mask_value(self, value: Any) -> Any:
        """``value`` with secrets masked in every string inside it (dict keys too), and
        numbers whose text is a secret replaced by ``***``. Other objects are returned
        as they are."""
        if self._compiled() is None:
            return value
        return self._walk(value)

    def contains_secret(self, value: Any) -> bool:
        """Whether any string (or number) inside ``value`` holds a secret."""
        pattern = self._compiled()
        if pattern is None:
            return False
        if isinstance(value, str):
            return pattern.search(value) is not None
        if isinstance(value, bool):
            return False
        if isinstance(value, int | float):
            return str(value) in self._values
        if isinstance(value, dict):
            return any(self.contains_secret(k) or self.contains_secret(v) for k, v in value.items())
        if isinstance(value, list | tuple | set | frozenset):
            return any(self.contains_secret(item) for item in value)
        return False

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, bool):  # bool is an int, but True is never a secret's text
            return value
        if isinstance(value, int | float):
            return MASK if str(value) in self._values else value
        if isinstance(value, dict):
            return {self._walk(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self._walk(item) for item in value)
        return value

    def _compiled(self) -> re.Pattern[str] | None:
        if self._dirty:
            # Longest first: where one secret contains another, the whole is masked
            # (regex alternation takes the first alternative that matches).
            needles = sorted(self._needles, key=lambda s: (-len(s), s))
            self._pattern = re.compile("|".join(map(re.escape, needles)))
            self._dirty = False
        return self._pattern


def _encodings(secret: str) -> set[str]:
    """The secret and the forms it takes when passed on in URLs, JSON and base64."""
    raw = secret.encode("utf-8")
    b64 = base64.b64encode(raw).decode("ascii")
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        b64,
        b64.rstrip("="),
        base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
    }
