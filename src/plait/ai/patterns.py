"""Finding values in text by pattern: dates, amounts, e-mails, URLs, phones, IBANs, ids.

Each ``find_*`` function lists every candidate in a text with its position
(:class:`Candidate`); :func:`choose` picks among several by their labels — the words
just before a value on its line. Used by :mod:`plait.ai.extract`, which decides what
kind of value each property of a schema holds.

- dates: ISO (``2026-03-12``), ``12 March 2026``, ``March 12, 2026``, ``12.03.2026``
  (always day first) and ``03/12/2026`` (month first unless ``dayfirst``; a first
  number above 12 is a day) — given back as ``YYYY-MM-DD``;
- amounts with a currency before or after: ``€1.234,56``, ``USD 1,234.56``, ``$12``,
  ``12,50 EUR`` — the decimal separator is the last of ``.`` and ``,`` when both are
  there, and a single separator followed by exactly three digits groups thousands;
- e-mail addresses, URLs, phone numbers (7–15 digits), IBANs (checked with their
  mod-97 checksum), and invoice, order, ticket and similar ids (``Invoice no.
  INV-2026-0042``, ``order #4471``).

Pure code: no model, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
CURRENCY_SYMBOLS = {"€": "EUR", "$": "USD", "US$": "USD", "£": "GBP", "¥": "JPY", "₹": "INR"}
CURRENCY_CODES = frozenset(
    {
        "EUR",
        "USD",
        "GBP",
        "JPY",
        "CHF",
        "CAD",
        "AUD",
        "NZD",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "RON",
        "BGN",
        "INR",
        "CNY",
        "HKD",
        "SGD",
        "ZAR",
        "BRL",
        "MXN",
        "TRY",
        "ILS",
        "AED",
        "SAR",
        "KRW",
    }
)
ID_KEYWORDS = frozenset(
    {
        "invoice",
        "order",
        "ticket",
        "case",
        "reference",
        "ref",
        "po",
        "purchase",
        "customer",
        "account",
        "contract",
        "booking",
        "confirmation",
        "tracking",
        "shipment",
        "receipt",
    }
)
_LABEL_CONTEXT = 60
_MAX_NUMBER_CHARS = 24
_GENERIC_VALUE_CHARS = 200

_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_DATE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "iso",
        re.compile(
            r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"
            r"(?:[T ](?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?(?P<tz>Z|[+-]\d{2}:?\d{2})?)?\b"
        ),
    ),
    (
        "dmy-name",
        re.compile(
            rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\.?\s+(?P<mon>{_MONTH})\.?,?\s+(?P<y>\d{{4}})\b",
            re.IGNORECASE,
        ),
    ),
    (
        "mdy-name",
        re.compile(
            rf"\b(?P<mon>{_MONTH})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>\d{{4}})\b",
            re.IGNORECASE,
        ),
    ),
    ("dots", re.compile(r"\b(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})\b")),
    ("slashes", re.compile(r"\b(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4})\b")),
]
_NUMBER = r"\d{1,3}(?:[.,\u00a0\u202f ]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_SYMBOL = r"US\$|[€$£¥₹]"
_CODE = r"\b(?:" + "|".join(sorted(CURRENCY_CODES)) + r")\b"
_AMOUNT = re.compile(
    rf"(?P<pre>{_SYMBOL}|{_CODE})\s?(?P<num>{_NUMBER})(?![\d.,]*\d)"
    rf"|(?<![\d.,])(?P<num2>{_NUMBER})\s?(?P<post>{_SYMBOL}|{_CODE})"
)
_BARE_NUMBER = re.compile(rf"(?<![\w.,-])-?(?:{_NUMBER})(?![\w]|[.,]\d)")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d \t().\-/]{5,}\d(?!\w)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_ID_AFTER_KEYWORD = re.compile(
    r"\b(?P<kw>" + "|".join(sorted(ID_KEYWORDS, key=len, reverse=True)) + r")\b\.?"
    r"(?:\s*(?:no\.?|nr\.?|number|num\.?|id|#))?\s*[:#]?\s*"
    r"(?P<id>[A-Z0-9][A-Za-z0-9\-_/]*\d[A-Za-z0-9\-_/]*|\d+)",
    re.IGNORECASE,
)
_CODE_ID = re.compile(r"(?<![\w-])(?:(?P<prefix>[A-Z]{2,5})-\d[\dA-Z\-/]*|#(?P<num>\d{3,}))\b")
_BOOL = re.compile(r"\b(?P<v>yes|no|true|false|y|n)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+|\d+")


@dataclass(frozen=True)
class Candidate:
    """A value found at ``start:end`` of the text; ``tag`` is what a finder noticed
    beside the value (an id's keyword, an amount's currency)."""

    value: Any
    start: int
    end: int
    tag: str = ""


def words_of(name: str) -> list[str]:
    """A property name as lower-case words: ``dueDate`` and ``due_date`` -> due, date."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return _WORD.findall(spaced.lower())


# -- finders ----------------------------------------------------------------------------------
def find_dates(text: str, *, dayfirst: bool = False, with_time: bool = False) -> list[Candidate]:
    """Every date in ``text`` as ``YYYY-MM-DD`` (or ISO date-time when ``with_time``:
    then only dates that carry a time count)."""
    found: list[Candidate] = []
    taken: list[tuple[int, int]] = []
    for style, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            if any(match.start() < end and start < match.end() for start, end in taken):
                continue
            value = _date_value(style, match, dayfirst=dayfirst, with_time=with_time)
            if value is not None:
                found.append(Candidate(value, match.start(), match.end()))
                taken.append((match.start(), match.end()))
    return sorted(found, key=lambda c: c.start)


def _date_value(style: str, match: re.Match[str], *, dayfirst: bool, with_time: bool) -> str | None:
    parts = match.groupdict()
    year = int(parts["y"])
    if style in ("dmy-name", "mdy-name"):
        month, day = MONTHS[parts["mon"].lower()], int(parts["d"])
    elif style == "slashes":
        first, second = int(parts["a"]), int(parts["b"])
        day_first = dayfirst or first > 12
        day, month = (first, second) if day_first else (second, first)
    else:
        month, day = int(parts["m"]), int(parts["d"])
    try:
        found = date(year, month, day)
    except ValueError:
        return None
    if not with_time:
        return found.isoformat()
    if style != "iso" or not parts.get("H"):
        return None
    try:
        moment = datetime(year, month, day, int(parts["H"]), int(parts["M"]), int(parts["S"] or 0))
    except ValueError:
        return None
    zone = parts.get("tz") or ""
    if zone and zone != "Z" and ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    return moment.isoformat() + zone


def parse_number(raw: str) -> float:
    """A number as people write it: ``1.234,56``, ``1,234.56``, ``1 234``, ``12,5``."""
    text = re.sub(r"[\s\u00a0\u202f]", "", raw)
    if "." in text and "," in text:
        decimal = "." if text.rfind(".") > text.rfind(",") else ","
        text = text.replace("," if decimal == "." else ".", "").replace(decimal, ".")
    elif "," in text or "." in text:
        sep = "," if "," in text else "."
        head, _, tail = text.rpartition(sep)
        if text.count(sep) > 1 or len(tail) == 3:
            text = text.replace(sep, "")
        else:
            text = head.replace(sep, "") + "." + tail
    if len(text) > _MAX_NUMBER_CHARS:  # a run of digit groups, not an amount
        raise ValueError(f"{raw[:20]}… is too long to be a number")
    return float(text)


def find_amounts(text: str) -> list[Candidate]:
    """Every amount with a currency: ``value`` is ``{"amount": float, "currency": code}``."""
    found: list[Candidate] = []
    for match in _AMOUNT.finditer(text):
        raw = match.group("num") or match.group("num2")
        mark = match.group("pre") or match.group("post")
        code = CURRENCY_SYMBOLS.get(mark, mark.upper())
        try:
            amount = parse_number(raw)
        except ValueError:
            continue
        found.append(
            Candidate({"amount": amount, "currency": code}, match.start(), match.end(), code)
        )
    return found


def find_numbers(text: str) -> list[Candidate]:
    """Every plain number (dates, times and ids are best excluded by the caller)."""
    found: list[Candidate] = []
    for match in _BARE_NUMBER.finditer(text):
        try:
            found.append(Candidate(parse_number(match.group()), match.start(), match.end()))
        except ValueError:
            continue
    return found


def find_emails(text: str) -> list[Candidate]:
    return [Candidate(m.group(), m.start(), m.end()) for m in _EMAIL.finditer(text)]


def find_urls(text: str) -> list[Candidate]:
    found: list[Candidate] = []
    for match in _URL.finditer(text):
        url = match.group().rstrip(".,;:!?)]}")
        value = url if "://" in url else f"https://{url}"
        found.append(Candidate(value, match.start(), match.start() + len(url)))
    return found


def find_phones(text: str, avoid: Iterable[Candidate] = ()) -> list[Candidate]:
    """Phone numbers (7–15 digits) that do not overlap ``avoid`` (dates, IBANs, ids)."""
    blocked = [(c.start, c.end) for c in avoid]
    found: list[Candidate] = []
    for match in _PHONE.finditer(text):
        raw = match.group().strip()
        start = match.start() + (len(match.group()) - len(match.group().lstrip()))
        digits = re.sub(r"\D", "", raw)
        if not 7 <= len(digits) <= 15:
            continue
        if any(start < end and b_start < start + len(raw) for b_start, end in blocked):
            continue
        found.append(Candidate(" ".join(raw.split()), start, start + len(raw)))
    return found


def iban_valid(iban: str) -> bool:
    """The ISO 13616 mod-97 check."""
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def find_ibans(text: str) -> list[Candidate]:
    """IBANs, spaces removed, that pass the checksum (a match that ran into the next
    word is shortened until it does)."""
    found: list[Candidate] = []
    for match in _IBAN.finditer(text):
        compact = match.group().replace(" ", "")
        for length in range(len(compact), 14, -1):
            if iban_valid(compact[:length]):
                found.append(Candidate(compact[:length], match.start(), match.end()))
                break
    return found


def find_ids(text: str) -> list[Candidate]:
    """Ids after a keyword (``tag`` is the keyword, lower case) and code-like tokens
    (``INV-2026-0042``: tag ``inv``; ``#4471``: tag ``#``)."""
    found = [
        Candidate(m.group("id"), m.start("id"), m.end("id"), m.group("kw").lower())
        for m in _ID_AFTER_KEYWORD.finditer(text)
    ]
    for match in _CODE_ID.finditer(text):
        if any(c.start <= match.start() < c.end or match.start() == c.start - 1 for c in found):
            continue
        prefix = match.group("prefix")
        value = match.group() if prefix else match.group("num")
        found.append(Candidate(value, match.start(), match.end(), (prefix or "#").lower()))
    return sorted(found, key=lambda c: c.start)


def find_pattern(text: str, pattern: str) -> list[Candidate]:
    """Matches of a schema's ``pattern``; an anchored one (``^…$``) matches whole tokens."""
    body = pattern
    anchored = body.startswith("^") or body.endswith("$")
    if anchored:
        body = body.removeprefix("^").removesuffix("$")
        body = rf"(?<!\S){body}(?=[\s.,;:!?)]|$)"
    try:
        compiled = re.compile(body)
    except re.error:
        return []
    return [Candidate(m.group(), m.start(), m.end()) for m in compiled.finditer(text) if m.group()]


def find_enum(text: str, values: Sequence[Any]) -> list[Candidate]:
    """Enum values mentioned literally (whole words, any case)."""
    found: list[Candidate] = []
    for value in values:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            continue
        pattern = re.compile(rf"(?<!\w){re.escape(str(value))}(?!\w)", re.IGNORECASE)
        found.extend(Candidate(value, m.start(), m.end()) for m in pattern.finditer(text))
    return sorted(found, key=lambda c: c.start)


def find_labelled(text: str, label_words: Sequence[str]) -> list[Candidate]:
    """Values of ``Label: value`` lines whose label consists of the property's words."""
    wanted = set(label_words)
    found: list[Candidate] = []
    for match in re.finditer(r"(?m)^[ \t]*(?P<label>[^\n:]{1,40}):[ \t]*(?P<value>[^\n]+)$", text):
        label = set(words_of(match.group("label")))
        if label and wanted and len(label & wanted) * 2 >= max(len(label), len(wanted)):
            value = match.group("value").strip()[:_GENERIC_VALUE_CHARS]
            if value:
                found.append(Candidate(value, match.start("value"), match.end("value")))
    return found


def find_booleans(text: str) -> list[Candidate]:
    return [
        Candidate(m.group("v").lower() in ("yes", "true", "y"), m.start(), m.end())
        for m in _BOOL.finditer(text)
    ]


# -- choosing among candidates ----------------------------------------------------------------
def label_score(text: str, candidate: Candidate, words: Sequence[str], floor: int = 0) -> int:
    """How many of ``words`` appear (as word prefixes) in the label before ``candidate``:
    the text on its line between ``floor`` (the end of the previous value) and it."""
    line_start = text.rfind("\n", 0, candidate.start) + 1
    start = max(line_start, floor, candidate.start - _LABEL_CONTEXT)
    label = words_of(text[start : candidate.start])
    return sum(1 for w in set(words) if any(_same_word(w, seen) for seen in label))


def _same_word(wanted: str, seen: str) -> bool:
    """The same word, or one a prefix of the other of at least 4 letters (``qty`` no,
    ``amount``/``amounts`` and ``tel``/``telephone`` no, ``invoice``/``invoiced`` yes)."""
    if wanted == seen:
        return True
    short = min(len(wanted), len(seen))
    return short >= 4 and (wanted.startswith(seen) or seen.startswith(wanted))


def choose(
    text: str, candidates: Sequence[Candidate], words: Sequence[str], *, need_label: bool = False
) -> Candidate | None:
    """The candidate best labelled by ``words``; the first one on a tie. With
    ``need_label``, a candidate whose label shares no word is never chosen."""
    if not candidates:
        return None
    ordered = sorted(candidates, key=lambda c: c.start)
    floors = [0] + [c.end for c in ordered[:-1]]
    scored = [
        (label_score(text, c, words, floor), -c.start, c)
        for c, floor in zip(ordered, floors, strict=True)
    ]
    best = max(scored, key=lambda item: (item[0], item[1]))
    if need_label and best[0] == 0:
        return None
    return best[2]
