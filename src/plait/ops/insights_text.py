"""Error text as the failure clusters compare it: normalised, then as token vectors.

Two failures have the same cause when their messages differ only in what changes from
one occurrence to the next — numbers, ids, hashes, paths, times, addresses. So
:func:`normalise` replaces those with placeholders (``<num>``, ``<uuid>``, ``<hex>``,
``<path>``, ``<time>``, ``<ip>``, ``<url>``, ``<id>``) before anything is compared; a
number that names a kind of failure — an HTTP status, an exit code, an errno — is kept,
since ``HTTP 503`` and ``HTTP 404`` are different causes.

Without the offline model, texts are compared as TF-IDF vectors of word tokens and word
pairs (shingles), by cosine similarity (:func:`token_vectors`, :func:`cosine`): pure
Python, sparse, enough to tell ``connection refused`` from ``no space left on device``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

#: a sparse vector: feature → weight
Vector = Mapping[str, float]

#: a number after one of these words names the failure (``status 503``, ``exit code 2``)
_KEPT_NUMBER = (
    r"\b(?:status(?:\s+code)?|code|http(?:/\d(?:\.\d)?)?|errno|exit(?:\s+code)?|exit\s+status"
    r"|signal|returned|rc)[\s:=#\[]*\d{1,3}\b"
)
_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<uuid>"),
    (
        r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b",
        "<time>",
    ),
    (r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "<time>"),
    (r"\b[a-z][a-z0-9+.-]*://[^\s/'\"<>]+(?:/[^\s'\"<>]*)?", "<url>"),
    (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "<ip>"),
    (r"(?:\b[a-z]:)?(?:[\\/][\w.@%+~-]+){2,}[\\/]?|(?:~|\.{1,2})(?:[\\/][\w.@%+~-]+)+", "<path>"),
    (r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", "<hex>"),
    (r"\b(?=[a-z0-9_-]*\d)(?=[a-z0-9_-]*[a-z])[a-z0-9_-]{12,}\b", "<id>"),
    # a number on its own (a count, a size with its unit: 30s, 12.5MB, 1.4.2), not one
    # inside a word (mod2, utf8, customer_34: names, which say what failed)
    (r"(?<![\w<.])[-+]?\d+(?:\.\d+)*(?:e[-+]?\d+)?", "<num>"),
)
_NORMALISE = re.compile(
    "|".join(
        [f"(?P<keep>{_KEPT_NUMBER})"] + [f"(?P<p{i}>{p})" for i, (p, _) in enumerate(_PATTERNS)]
    ),
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")
_TOKEN = re.compile(r"<[a-z]+>|[a-z0-9_]+")
#: the longest normalised text compared; beyond it, a message only repeats itself
MAX_TEXT = 600


def _replace(found: re.Match[str]) -> str:
    if found.group("keep") is not None:
        return found.group(0)
    name = found.lastgroup or ""
    return _PATTERNS[int(name[1:])][1]


def normalise(text: str) -> str:
    """``text`` in lower case with what varies between occurrences replaced by
    placeholders and whitespace collapsed (see the module docstring)."""
    flat = _NORMALISE.sub(_replace, text[: MAX_TEXT * 4])
    return _SPACES.sub(" ", flat).strip().lower()[:MAX_TEXT]


def first_line(text: str, limit: int = 200) -> str:
    """The first non-blank line of ``text``, shortened to ``limit`` characters."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def features(text: str) -> Counter[str]:
    """Word tokens and adjacent word pairs of a normalised text, counted."""
    words = _TOKEN.findall(text)
    found = Counter(words)
    found.update(f"{a} {b}" for a, b in itertools.pairwise(words))
    return found


def token_vectors(
    texts: Sequence[str], weights: Sequence[Counter[str]] | None = None
) -> list[Vector]:
    """TF-IDF vectors of ``texts`` (L2-normalised), the IDF taken over ``texts`` themselves.

    ``weights``, when given, are each text's features already counted (so a caller can
    weigh an error's words above its log tail's)."""
    counted = list(weights) if weights is not None else [features(t) for t in texts]
    docs = len(counted)
    frequency: Counter[str] = Counter()
    for found in counted:
        frequency.update(found.keys())
    idf = {term: math.log((1 + docs) / (1 + df)) + 1.0 for term, df in frequency.items()}
    vectors: list[Vector] = []
    for found in counted:
        raw = {term: (1.0 + math.log(n)) * idf[term] for term, n in found.items()}
        norm = math.sqrt(sum(w * w for w in raw.values())) or 1.0
        vectors.append({term: w / norm for term, w in raw.items()})
    return vectors


def cosine(a: Vector, b: Vector) -> float:
    """The cosine similarity of two L2-normalised sparse vectors."""
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(term, 0.0) for term, w in a.items())


__all__ = ["MAX_TEXT", "Vector", "cosine", "features", "first_line", "normalise", "token_vectors"]
