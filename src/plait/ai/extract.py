"""Offline field extraction: the object a JSON Schema describes, filled from text.

Each property of the schema is given a *kind* from, in this order, its ``pattern`` (the
schema's own regular expression always wins), its ``enum``, its ``format`` (``date``,
``date-time``, ``email``, ``uri``), its name (``due_date``, ``iban``, ``phone``,
``invoice_number``, ``total``, ``currency`` …) and its type. The finders of
:mod:`plait.ai.patterns` list every candidate of that kind in the text — dates,
amounts with a currency, e-mails, URLs, phones, IBANs, ids — and when there are several
(an invoice date and a due date) the one whose label, the words just before it on its
line, shares most words with the property's name or title wins; ties go to the first in
the text. An amount nobody labelled is the largest (an invoice's total). A string
property of no known kind is read from a ``Name: value`` line; an array of a known kind
takes every value found; a nested object is filled the same way. ``enum`` values (or
``oneOf`` a list of ``const`` values, each with a ``description`` — JSON Schema's way
to describe the values of an enum) are matched literally first; the caller may pass
``enum_matcher`` to choose by meaning (the ``ai.extract`` action uses the offline model,
which the descriptions help a great deal).

:func:`validate` then checks the result against the schema (jsonschema, formats
checked) and drops what breaks it, so what is returned always validates, apart from
required properties that were not found (``missing``). Pure code: no model, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plait.ai.patterns import (
    ID_KEYWORDS,
    Candidate,
    choose,
    find_amounts,
    find_booleans,
    find_dates,
    find_emails,
    find_enum,
    find_ibans,
    find_ids,
    find_labelled,
    find_numbers,
    find_pattern,
    find_phones,
    find_urls,
    words_of,
)
from plait.errors import PlaitError

#: ``matcher(property_name, text, {value: description or None})``: the value the text
#: means, or None
EnumMatcher = Callable[[str, str, Mapping[str, str | None]], str | None]
#: words that make a property an id (with a keyword alone, as ``invoice``, too)
_ID_WORDS = frozenset({"id", "number", "no", "nr", "code", "reference", "ref"})
_ID_ALONE = frozenset(
    {"invoice", "order", "ticket", "case", "po", "booking", "confirmation", "tracking", "receipt"}
)


class SchemaUnavailable(PlaitError):
    """jsonschema, which validates answers and results, is not installed."""


@dataclass
class Extraction:
    """What was found (``data``), which required properties were not (``missing``, as
    dotted paths), and values dropped because they broke the schema (``rejected``)."""

    data: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


# -- field kinds -------------------------------------------------------------
def field_kind(name: str, schema: Mapping[str, Any]) -> str:
    """The kind of value a property holds (see the module docstring)."""
    words = set(words_of(name))
    fmt = schema.get("format")
    types = _types(schema)
    if "pattern" in schema:
        return "pattern"
    if "enum" in schema or enum_values(schema):
        return "enum"
    if "object" in types and _is_amount_object(schema):
        return "amount-object"
    if "object" in types:
        return "object"
    if "array" in types:
        return "array"
    by_format = {"date": "date", "date-time": "datetime", "email": "email", "uri": "url"}
    if fmt in by_format:
        return by_format[fmt]
    if "boolean" in types:
        return "boolean"
    return _kind_by_name(words, types)


def _kind_by_name(words: set[str], types: set[str]) -> str:
    numeric = bool(types & {"number", "integer"})
    checks = [
        ("iban", {"iban"}),
        ("email", {"email", "mail"}),
        ("url", {"url", "website", "link", "homepage", "uri"}),
        ("phone", {"phone", "telephone", "tel", "mobile", "fax"}),
        ("currency", {"currency"}),
        ("datetime", {"timestamp", "datetime"}),
        ("date", {"date", "day", "dated", "deadline", "birthday"}),
    ]
    for kind, names in checks:
        if words & names:
            return kind
    money = {"amount", "total", "price", "cost", "sum", "fee", "subtotal", "tax", "vat", "due"}
    if words & money and (numeric or not types):
        return "amount"
    if words & money and "string" in types and not words & {"id", "number", "no"}:
        return "amount"
    if not numeric and (words & _ID_WORDS or (words and words <= _ID_ALONE)):
        return "id"
    if "integer" in types:
        return "integer"
    if "number" in types:
        return "number"
    return "string"


def _types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {str(k) for k in kind}
    return set()


def _is_amount_object(schema: Mapping[str, Any]) -> bool:
    props = schema.get("properties")
    return isinstance(props, Mapping) and {"amount", "currency"} <= set(props)


# -- the extractor ----------------------------------------------------------------------------
@dataclass
class _Context:
    text: str
    dayfirst: bool
    enum_matcher: EnumMatcher | None
    cache: dict[str, list[Candidate]] = field(default_factory=dict)

    def found(self, kind: str) -> list[Candidate]:
        if kind not in self.cache:
            self.cache[kind] = self._find(kind)
        return self.cache[kind]

    def _find(self, kind: str) -> list[Candidate]:
        text = self.text
        finders: dict[str, Callable[[], list[Candidate]]] = {
            "date": lambda: find_dates(text, dayfirst=self.dayfirst),
            "datetime": lambda: find_dates(text, dayfirst=self.dayfirst, with_time=True),
            "amount": lambda: find_amounts(text),
            "email": lambda: find_emails(text),
            "url": lambda: find_urls(text),
            "iban": lambda: find_ibans(text),
            "id": lambda: find_ids(text),
            "boolean": lambda: find_booleans(text),
            "phone": lambda: find_phones(text, self._not_phones()),
            "number": lambda: self._plain_numbers(),
        }
        return finders[kind]()

    def _not_phones(self) -> list[Candidate]:
        return [
            *self.found("date"),
            *self.found("iban"),
            *self.found("amount"),
            *[c for c in self.found("id") if c.tag != "#"],
        ]

    def _plain_numbers(self) -> list[Candidate]:
        taken = [*self.found("date"), *self.found("iban"), *self.found("id")]
        return [
            c for c in find_numbers(self.text) if not any(t.start <= c.start < t.end for t in taken)
        ]


def extract_fields(
    text: str,
    schema: Mapping[str, Any],
    *,
    dayfirst: bool = False,
    enum_matcher: EnumMatcher | None = None,
) -> Extraction:
    """The object ``schema`` describes, filled from ``text`` (not yet validated: see
    :func:`validate`). Required properties not found are listed in ``missing``."""
    context = _Context(text, dayfirst, enum_matcher)
    result = Extraction()
    result.data = _object(context, schema, (), result.missing)
    return result


def _object(
    context: _Context, schema: Mapping[str, Any], path: tuple[str, ...], missing: list[str]
) -> dict[str, Any]:
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    data: dict[str, Any] = {}
    currency_hint: str | None = None
    for name, sub in props.items():
        if not isinstance(sub, Mapping):
            continue
        value = _value(context, str(name), sub, path)
        if isinstance(value, dict) and "currency" in value and "amount" in value:
            currency_hint = currency_hint or value["currency"]
        if value is not None:
            data[name] = value
    for name, sub in props.items():  # a currency property takes the amount's currency
        currency = isinstance(sub, Mapping) and _is_currency(name, sub)
        if name not in data and currency and currency_hint:
            data[name] = currency_hint
    for name, value in list(data.items()):
        sub = props[name]
        if isinstance(value, dict) and _is_amount_dict(value) and _kind(name, sub) == "amount":
            data[name] = _amount_as(value, sub)
    missing.extend(".".join((*path, str(n))) for n in props if n in required and n not in data)
    return data


def _value(context: _Context, name: str, schema: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    kind = _kind(name, schema)
    words = [*(w for p in path for w in words_of(p)), *words_of(name)]
    words += words_of(str(schema.get("title") or ""))
    text = context.text
    if kind == "object":
        nested: list[str] = []
        found = _object(context, schema, (*path, name), nested)
        return found or None
    if kind == "array":
        return _array(context, name, schema)
    if kind == "pattern":
        return _pick(text, find_pattern(text, str(schema["pattern"])), words)
    if kind == "enum":
        return _enum(context, name, enum_values(schema), words)
    if kind == "amount-object":
        found = _amount(context, words)
        return found if isinstance(found, dict) else None
    if kind == "currency":
        picked = choose(text, context.found("amount"), words)
        return picked.value["currency"] if picked else None
    if kind == "id":
        return _id(context, words)
    if kind in ("integer", "number"):
        picked = choose(text, context.found("number"), words, need_label=True)
        return _number_as(picked.value, schema) if picked else None
    if kind == "amount":
        return _amount(context, words)
    if kind == "string":
        own = [*words_of(name), *words_of(str(schema.get("title") or ""))]
        return _pick(text, find_labelled(text, own), own)
    if kind == "phone":
        return _phone(context, words)
    return _pick(text, context.found(kind), words, need_label=kind == "boolean")


def _kind(name: str, schema: Mapping[str, Any]) -> str:
    return field_kind(name, schema)


def _phone(context: _Context, words: Sequence[str]) -> Any:
    """A labelled phone number, else the first written in international form."""
    phones = context.found("phone")
    picked = choose(context.text, phones, words, need_label=True)
    if picked is None:
        picked = next((c for c in phones if c.value.startswith(("+", "00", "("))), None)
    return picked.value if picked else None


def _amount(context: _Context, words: Sequence[str]) -> Any:
    """The labelled amount; without a label, the largest (an invoice's total is the
    largest sum on it); with no currency anywhere, a labelled plain number."""
    text = context.text
    amounts = context.found("amount")
    picked = choose(text, amounts, words, need_label=True)
    if picked is None and amounts:
        picked = max(amounts, key=lambda c: (c.value["amount"], -c.start))
    if picked is not None:
        return dict(picked.value)
    number = choose(text, context.found("number"), words, need_label=True)
    return number.value if number else None


def _pick(
    text: str, candidates: Sequence[Candidate], words: Sequence[str], *, need_label: bool = False
) -> Any:
    picked = choose(text, candidates, words, need_label=need_label)
    return picked.value if picked else None


def _array(context: _Context, name: str, schema: Mapping[str, Any]) -> list[Any] | None:
    """Every value of the items' kind (``emails``, ``urls``, ``dates`` …), de-duplicated."""
    items = schema.get("items")
    if not isinstance(items, Mapping):
        return None
    singular = re.sub(r"(?<=[a-z])s$", "", name)
    kind = field_kind(singular, items)
    if kind == "pattern":
        found = find_pattern(context.text, str(items["pattern"]))
    elif kind in ("date", "datetime", "email", "url", "iban", "id", "phone", "amount"):
        found = context.found(kind)
    else:
        return None
    values: list[Any] = []
    for candidate in found:
        value = candidate.value
        if kind == "amount" and not _is_amount_object(items):
            value = _amount_as(value, items)
        if value not in values:
            values.append(value)
    return values or None


def enum_values(schema: Mapping[str, Any]) -> dict[Any, str | None]:
    """A property's allowed values with their descriptions: from ``enum`` (none), or
    from ``oneOf``/``anyOf`` whose every branch is a ``const`` (its ``description`` or
    ``title``)."""
    if isinstance(schema.get("enum"), list):
        return {v: None for v in schema["enum"] if isinstance(v, Hashable)}
    for key in ("oneOf", "anyOf"):
        branches = schema.get(key)
        if not isinstance(branches, list) or not branches:
            continue
        if all(isinstance(b, Mapping) and "const" in b for b in branches):
            return {
                b["const"]: b.get("description") or b.get("title")
                for b in branches
                if isinstance(b["const"], Hashable)
            }
    return {}


def _enum(
    context: _Context, name: str, values: Mapping[Any, str | None], words: Sequence[str]
) -> Any:
    """A value named literally; else the value of the kind the name suggests (a
    ``currency`` enum takes the amount's currency) if it is allowed; else by meaning."""
    picked = choose(context.text, find_enum(context.text, list(values)), words)
    if picked is not None:
        return picked.value
    named = _kind_by_name(set(words_of(name)), set())
    if named == "currency":
        amount = choose(context.text, context.found("amount"), words)
        if amount is not None and amount.value["currency"] in values:
            return amount.value["currency"]
    options = {v: d for v, d in values.items() if isinstance(v, str)}
    if context.enum_matcher is not None and options:
        return context.enum_matcher(name, context.text, options)
    return None


def _id(context: _Context, words: Sequence[str]) -> Any:
    """An id after the keyword the name holds (``order_id``: after "order", or an
    ``ORD-`` token); a name without such a keyword needs a matching label."""
    specific = [w for w in words if w in ID_KEYWORDS]
    candidates = context.found("id")
    if specific:
        keyed = [
            c
            for c in candidates
            if any(c.tag == w or (len(c.tag) >= 2 and w.startswith(c.tag)) for w in specific)
        ]
        picked = choose(context.text, keyed, words)
        return picked.value if picked else None
    picked = choose(context.text, candidates, words, need_label=True)
    return picked.value if picked else None


def _is_currency(name: str, schema: Mapping[str, Any]) -> bool:
    return field_kind(name, schema) == "currency"


def _is_amount_dict(value: Mapping[str, Any]) -> bool:
    return set(value) == {"amount", "currency"}


def _amount_as(value: Mapping[str, Any], schema: Mapping[str, Any]) -> Any:
    types = _types(schema)
    if "object" in types:
        return dict(value)
    if types & {"number", "integer"} or not types:
        return _number_as(value["amount"], schema)
    return f"{value['amount']:.2f} {value['currency']}"


def _number_as(value: float, schema: Mapping[str, Any]) -> float | int:
    if "integer" in _types(schema):
        return int(value) if value == int(value) else value
    return int(value) if value == int(value) and "number" not in _types(schema) else value


# -- validation -------------------------------------------------------------------------------
def check_schema(schema: Any) -> None:
    """ValueError unless ``schema`` is a JSON Schema of an object with properties."""
    if not isinstance(schema, Mapping):
        raise ValueError(f"schema must be a JSON Schema object, not {_type_name(schema)}")
    kind = schema.get("type", "object")
    if kind != "object":
        raise ValueError(f"schema must describe an object (type: object), not type {kind!r}")
    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        raise ValueError("schema needs properties: the fields to extract, each with a type")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValueError("schema.required must be a list of property names")
    unknown = [r for r in required if r not in props]
    if unknown:
        raise ValueError(f"schema.required names properties that do not exist: {unknown}")
    try:
        from jsonschema import exceptions, validators
    except ImportError:  # checked again, with a clear error, when it is used
        return
    try:
        validators.validator_for(dict(schema)).check_schema(dict(schema))
    except exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "schema"
        raise ValueError(f"schema is not valid JSON Schema at {where}: {exc.message}") from None


def schema_errors(
    data: Any, schema: Mapping[str, Any], *, ignore_required: bool = False
) -> list[tuple[tuple[str | int, ...], str]]:
    """Every way ``data`` breaks ``schema`` (formats checked too): (path, message).
    ``ignore_required``: a required property that is absent is no error (it is reported
    as missing instead)."""
    try:
        from jsonschema import FormatChecker, validators
    except ImportError as exc:
        raise SchemaUnavailable(
            "validating against a JSON Schema needs jsonschema: pip install 'plait[ai]'"
        ) from exc
    cls = validators.validator_for(dict(schema))
    validator = cls(dict(schema), format_checker=FormatChecker())
    errors = [
        e
        for e in validator.iter_errors(data)
        if not (ignore_required and e.validator == "required")
    ]
    errors.sort(key=lambda e: list(map(str, e.absolute_path)))
    return [(tuple(e.absolute_path), e.message) for e in errors]


def without_nulls(value: Any) -> Any:
    """``value`` with null properties left out (an answer's way to say "not found")."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


def validate(result: Extraction, schema: Mapping[str, Any]) -> Extraction:
    """Drop the values that break ``schema`` (into ``rejected``, with the reason) and
    recompute ``missing``: what is returned always validates, apart from required
    properties that could not be found."""
    for _ in range(len(result.data) + 1):
        found = schema_errors(result.data, schema, ignore_required=True)
        errors = [(p, m) for p, m in found if p]
        if not errors:
            break
        for where, message in errors:
            _drop(result, where, message)
    result.missing = missing_required(result.data, schema)
    return result


def _drop(result: Extraction, where: Sequence[str | int], message: str) -> None:
    holder: Any = result.data
    for part in where[:-1]:
        holder = holder.get(part) if isinstance(holder, dict) else None
        if holder is None:
            return
    key = where[-1]
    present = (isinstance(holder, dict) and key in holder) or (
        isinstance(holder, list) and isinstance(key, int) and key < len(holder)
    )
    if present:
        del holder[key]
        result.rejected[".".join(map(str, where))] = message


def missing_required(
    data: Mapping[str, Any], schema: Mapping[str, Any], path: tuple[str, ...] = ()
) -> list[str]:
    """The required properties (dotted paths, nested objects too) absent from ``data``."""
    props = schema.get("properties") or {}
    out = []
    for name in schema.get("required") or []:
        if data.get(name) is None:
            out.append(".".join((*path, name)))
    for name, sub in props.items():
        if isinstance(data.get(name), Mapping) and isinstance(sub, Mapping):
            out.extend(missing_required(data[name], sub, (*path, name)))
    return out


def _type_name(value: Any) -> str:
    names = {str: "a string", list: "a list", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)
