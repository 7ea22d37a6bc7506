"""ai.extract offline: the pattern finders (pure), the extractor with schema validation,
and the action in real workflows (the offline model for enum fields)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plait.actions.registry import ActionRegistry
from plait.ai import embeddings
from plait.ai.extract import (
    check_schema,
    enum_values,
    extract_fields,
    field_kind,
    missing_required,
    validate,
    without_nulls,
)
from plait.ai.patterns import (
    choose,
    find_amounts,
    find_dates,
    find_emails,
    find_ibans,
    find_ids,
    find_pattern,
    find_phones,
    find_urls,
    iban_valid,
    parse_number,
    words_of,
)
from plait.errors import ValidationError
from plait.model import load_workflow
from tests.ai.workflows import run

INVOICE = """ACME Supplies GmbH
Invoice no. INV-2026-0042
Invoice date: 12 March 2026
Due date: 03/04/2026
Customer: Globex Corporation
Contact: billing@globex.example, +49 30 1234567
Website: https://acme.example/invoices.
Your order #4471

Subtotal: €1.000,00
VAT 19%: €190,00
Total: €1.190,00
Pay to IBAN DE89 3704 0044 0532 0130 00 by the due date.
"""


# -- finders ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "dayfirst", "expected"),
    [
        ("on 2026-03-12.", False, ["2026-03-12"]),
        ("on 12 March 2026", False, ["2026-03-12"]),
        ("on 12th Mar. 2026", False, ["2026-03-12"]),
        ("on March 12, 2026", False, ["2026-03-12"]),
        ("on 03/12/2026", False, ["2026-03-12"]),
        ("on 03/12/2026", True, ["2026-12-03"]),
        ("on 13/02/2026", False, ["2026-02-13"]),  # 13 cannot be a month
        ("am 12.03.2026", False, ["2026-03-12"]),  # dots: always day first
        ("on 31/02/2026 or 2026-02-30", False, []),  # no such days
        ("from 2026-01-05 to 7 January 2026", False, ["2026-01-05", "2026-01-07"]),
    ],
)
def test_dates_in_the_usual_spellings(text: str, dayfirst: bool, expected: list[str]) -> None:
    assert [c.value for c in find_dates(text, dayfirst=dayfirst)] == expected


def test_date_times_keep_their_time_and_zone() -> None:
    found = find_dates("at 2026-03-12T09:30:00+0100 and on 12 March 2026", with_time=True)
    assert [c.value for c in found] == ["2026-03-12T09:30:00+01:00"]


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("€1.234,56", 1234.56, "EUR"),
        ("USD 1,234.56", 1234.56, "USD"),
        ("$12", 12.0, "USD"),
        ("12,50 EUR", 12.5, "EUR"),
        ("1 234,56 €", 1234.56, "EUR"),
        ("£ 99.99", 99.99, "GBP"),
        ("CHF 1'000", 1.0, "CHF"),  # an apostrophe is no separator we read: the 1 only
    ],
)
def test_amounts_with_their_currency(text: str, amount: float, currency: str) -> None:
    (found,) = find_amounts(f"pay {text} today")
    assert found.value == {"amount": amount, "currency": currency}


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1.234,56", 1234.56),
        ("1,234.56", 1234.56),
        ("1,234", 1234.0),
        ("12,5", 12.5),
        ("1.234.567", 1234567.0),
        ("1 234", 1234.0),
        ("0.5", 0.5),
    ],
)
def test_numbers_as_people_write_them(raw: str, value: float) -> None:
    assert parse_number(raw) == value


def test_emails_urls_and_phones() -> None:
    text = "Write to Ann.Lee+ops@example.co.uk or see www.example.com/help, (https://x.io/a?b=1)."
    assert [c.value for c in find_emails(text)] == ["Ann.Lee+ops@example.co.uk"]
    assert [c.value for c in find_urls(text)] == [
        "https://www.example.com/help",
        "https://x.io/a?b=1",
    ]
    phones = find_phones("Call +49 (30) 123-4567 or 555 0100, not on 2026-03-12", [])
    assert phones[0].value == "+49 (30) 123-4567"
    dates = find_dates("due 2026-03-12")
    assert find_phones("due 2026-03-12", dates) == []


def test_ibans_are_checked_with_their_checksum() -> None:
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("DE89370400440532013001")
    found = find_ibans("IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX")
    assert [c.value for c in found] == ["DE89370400440532013000"]
    assert find_ibans("IBAN DE00 3704 0044 0532 0130 00") == []


def test_ids_after_keywords_and_code_like_tokens() -> None:
    found = find_ids("Invoice no. INV-2026-0042 for order #4471, ticket: 99812 and PO-77")
    assert [(c.value, c.tag) for c in found] == [
        ("INV-2026-0042", "invoice"),
        ("4471", "order"),
        ("99812", "ticket"),
        ("PO-77", "po"),
    ]


def test_a_schema_pattern_anchored_or_not_finds_whole_tokens() -> None:
    text = "refs: AB-12, XAB-123 and AB-345."
    assert [c.value for c in find_pattern(text, r"^AB-\d+$")] == ["AB-12", "AB-345"]
    assert [c.value for c in find_pattern(text, r"AB-\d{3}")] == ["AB-123", "AB-345"]
    assert find_pattern(text, "(unclosed") == []


def test_the_best_labelled_candidate_wins_and_the_first_on_a_tie() -> None:
    text = "Invoice date: 2026-03-01, due date: 2026-03-31\nshipped 2026-03-02"
    dates = find_dates(text)
    assert choose(text, dates, ["due", "date"]).value == "2026-03-31"  # type: ignore[union-attr]
    assert choose(text, dates, ["invoice", "date"]).value == "2026-03-01"  # type: ignore[union-attr]
    assert choose(text, dates, ["shipped"]).value == "2026-03-02"  # type: ignore[union-attr]
    assert choose(text, dates, ["paid"]).value == "2026-03-01"  # type: ignore[union-attr]
    assert choose(text, dates, ["paid"], need_label=True) is None


@pytest.mark.parametrize(
    ("name", "schema", "kind"),
    [
        ("ref", {"type": "string", "pattern": "^X"}, "pattern"),
        ("status", {"enum": ["a", "b"]}, "enum"),
        ("when", {"type": "string", "format": "date"}, "date"),
        ("dueDate", {"type": "string"}, "date"),
        ("contact", {"type": "string", "format": "email"}, "email"),
        ("homepage", {"type": "string"}, "url"),
        ("phone_number", {"type": "string"}, "phone"),
        ("iban", {"type": "string"}, "iban"),
        ("total", {"type": "number"}, "amount"),
        ("amount_due", {"type": "number"}, "amount"),
        ("currency", {"type": "string"}, "currency"),
        ("invoice_number", {"type": "string"}, "id"),
        ("order", {"type": "string"}, "id"),
        ("customer", {"type": "string"}, "string"),
        ("quantity", {"type": "integer"}, "integer"),
        (
            "price",
            {"type": "object", "properties": {"amount": {}, "currency": {}}},
            "amount-object",
        ),
        ("emails", {"type": "array", "items": {"type": "string"}}, "array"),
        ("paid", {"type": "boolean"}, "boolean"),
    ],
)
def test_field_kinds_from_pattern_enum_format_name_and_type(
    name: str, schema: dict[str, Any], kind: str
) -> None:
    assert field_kind(name, schema) == kind


def test_words_of_property_names() -> None:
    assert words_of("dueDate") == ["due", "date"]
    assert words_of("invoice_number2") == ["invoice", "number", "2"]


# -- the extractor ----------------------------------------------------------------------------
INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "invoice_number": {"type": "string"},
        "invoice_date": {"type": "string", "format": "date"},
        "due_date": {"type": "string", "format": "date"},
        "customer": {"type": "string"},
        "email": {"type": "string", "format": "email"},
        "phone": {"type": "string"},
        "website": {"type": "string", "format": "uri"},
        "order_id": {"type": "string"},
        "total": {"type": "number"},
        "currency": {"type": "string"},
        "vat": {"type": "number"},
        "iban": {"type": "string"},
        "po_number": {"type": "string"},
        "emails": {"type": "array", "items": {"type": "string", "format": "email"}},
        "reference": {"type": "string", "pattern": r"^INV-\d{4}-\d+$"},
    },
    "required": ["invoice_number", "total", "po_number"],
}


def test_an_invoice_is_read_into_its_schema() -> None:
    result = validate(extract_fields(INVOICE, INVOICE_SCHEMA, dayfirst=True), INVOICE_SCHEMA)
    assert result.data == {
        "invoice_number": "INV-2026-0042",
        "invoice_date": "2026-03-12",
        "due_date": "2026-04-03",
        "customer": "Globex Corporation",
        "email": "billing@globex.example",
        "phone": "+49 30 1234567",
        "website": "https://acme.example/invoices",
        "order_id": "4471",
        "total": 1190.0,
        "currency": "EUR",
        "vat": 190.0,
        "iban": "DE89370400440532013000",
        "emails": ["billing@globex.example"],
        "reference": "INV-2026-0042",
    }
    assert result.missing == ["po_number"]
    assert result.rejected == {}


def test_month_first_is_the_default_for_slashes() -> None:
    schema = {"type": "object", "properties": {"due_date": {"type": "string", "format": "date"}}}
    assert extract_fields(INVOICE, schema).data == {"due_date": "2026-03-04"}


def test_values_that_break_the_schema_are_dropped_with_the_reason() -> None:
    schema = {
        "type": "object",
        "properties": {
            "total": {"type": "number", "maximum": 1000},
            "customer": {"type": "string", "maxLength": 5},
            "vat": {"type": "number"},
        },
        "required": ["total"],
    }
    result = validate(extract_fields(INVOICE, schema), schema)
    assert result.data == {"vat": 190.0}
    assert result.missing == ["total"]
    assert "1190.0 is greater than the maximum of 1000" in result.rejected["total"]
    assert "is too long" in result.rejected["customer"]


def test_nested_objects_and_amount_objects() -> None:
    schema = {
        "type": "object",
        "properties": {
            "total": {
                "type": "object",
                "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}},
            },
            "vendor": {
                "type": "object",
                "properties": {"email": {"type": "string"}, "vat_id": {"type": "string"}},
                "required": ["vat_id"],
            },
        },
    }
    result = validate(extract_fields(INVOICE, schema), schema)
    assert result.data["total"] == {"amount": 1190.0, "currency": "EUR"}
    assert result.data["vendor"] == {"email": "billing@globex.example"}
    assert result.missing == ["vendor.vat_id"]


def test_an_unlabelled_amount_is_the_largest_and_enums_match_literally() -> None:
    text = "Thanks for your purchase of $12.00 and $1,250.00. Priority: HIGH"
    schema = {
        "type": "object",
        "properties": {"amount": {"type": "number"}, "priority": {"enum": ["low", "high"]}},
    }
    assert extract_fields(text, schema).data == {"amount": 1250.0, "priority": "high"}


def test_enum_values_come_from_enum_or_from_a_one_of_of_consts() -> None:
    assert enum_values({"enum": ["a", "b"]}) == {"a": None, "b": None}
    described = {"oneOf": [{"const": "a", "description": "first"}, {"const": "b", "title": "B"}]}
    assert enum_values(described) == {"a": "first", "b": "B"}
    assert enum_values({"oneOf": [{"const": "a"}, {"type": "string"}]}) == {}
    assert field_kind("team", described) == "enum"


def test_missing_and_nulls() -> None:
    schema = {"type": "object", "properties": {"a": {}, "b": {}}, "required": ["a", "b"]}
    assert missing_required({"a": 1, "b": None}, schema) == ["b"]
    assert without_nulls({"a": 1, "b": None, "c": {"d": None}}) == {"a": 1, "c": {}}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([], "schema must be a JSON Schema object, not a list"),
        ({"type": "array", "items": {}}, "schema must describe an object (type: object)"),
        ({"type": "object"}, "schema needs properties"),
        ({"type": "object", "properties": {}}, "schema needs properties"),
        ({"properties": {"a": {}}, "required": "a"}, "schema.required must be a list"),
        ({"properties": {"a": {}}, "required": ["b"]}, "do not exist: ['b']"),
        (
            {"properties": {"a": {"type": 12}}},
            "schema is not valid JSON Schema at properties/a/type",
        ),
    ],
)
def test_a_schema_that_is_no_object_schema_is_refused(schema: Any, message: str) -> None:
    with pytest.raises(ValueError, match="schema") as caught:
        check_schema(schema)
    assert message in str(caught.value)


# -- in workflows -----------------------------------------------------------------------------


INTAKE = """
name: invoice-intake
inputs:
  text: {type: string, required: true}
steps:
  - id: fields
    uses: ai.extract
    with:
      text: "${{ inputs.text }}"
      dayfirst: true
      schema:
        type: object
        properties:
          invoice_number: {type: string}
          due_date: {type: string, format: date}
          total: {type: number}
          currency: {type: string, enum: [EUR, USD, GBP]}
          po_number: {type: string}
        required: [invoice_number, total, po_number]
  - id: large
    if: ${{ steps.fields.outputs.data.total > 1000 }}
    run: echo "large invoice ${{ steps.fields.outputs.data.invoice_number }}"
"""


async def test_extract_in_a_workflow_feeds_later_steps(tmp_path: Path) -> None:
    result = await run(tmp_path, INTAKE, {"text": INVOICE})
    assert result.success, result.error
    outputs = result.step("fields").outputs or {}
    assert outputs["data"] == {
        "invoice_number": "INV-2026-0042",
        "due_date": "2026-04-03",
        "total": 1190.0,
        "currency": "EUR",
    }
    assert outputs["missing"] == ["po_number"]
    assert outputs["model"] == "patterns"  # no enum needed the model
    assert result.step("large").status == "succeeded"


MAIL_SCHEMA = """
name: triage-mail
inputs:
  text: {type: string}
steps:
  - id: fields
    uses: ai.extract
    with:
      text: "${{ inputs.text }}"
      schema:
        type: object
        properties:
          sentiment: {enum: [happy, neutral, angry]}
          team:
            oneOf:
              - {const: sales, description: "quotes, prices, licences and new customers"}
              - {const: legal, description: "contracts, clauses, privacy law and lawyers"}
              - {const: engineering, description: "outages, servers, databases and bugs"}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The customer is furious and threatens to cancel.", {"sentiment": "angry"}),
        (
            "Clause 4.2 of our contract breaks the GDPR; our lawyers need to look at it.",
            {"team": "legal"},
        ),
        (
            "The production database is down and nobody can log in, fix it right now!",
            {"team": "engineering"},  # the model is not sure of a sentiment: left out
        ),
    ],
)
async def test_enum_fields_the_text_does_not_name_are_matched_by_meaning(
    tmp_path: Path, text: str, expected: dict[str, str]
) -> None:
    embeddings.load()
    result = await run(tmp_path, MAIL_SCHEMA, {"text": text})
    assert result.success, result.error
    outputs = result.step("fields").outputs or {}
    assert outputs["data"] == expected
    assert outputs["model"] == "all-MiniLM-L6-v2"


BAD_SCHEMA = """
name: bad-schema
inputs:
  schema: {type: object}
steps:
  - id: fields
    uses: ai.extract
    with: {text: "Invoice INV-1", schema: "${{ inputs.schema }}"}
"""


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "array", "items": {"type": "string"}}, "schema must describe an object"),
        ({"type": "object", "properties": {}}, "schema needs properties"),
        ({"properties": {"a": {"type": "text"}}}, "not valid JSON Schema at properties/a/type"),
    ],
)
async def test_a_bad_schema_fails_the_step_clearly(
    tmp_path: Path, schema: dict[str, Any], message: str
) -> None:
    result = await run(tmp_path, BAD_SCHEMA, {"schema": schema})
    step = result.step("fields")
    assert step.status == "failed"
    assert "with.schema" in (step.error or "")
    assert message in (step.error or "")


def test_a_bad_schema_written_in_the_file_is_reported_at_its_line() -> None:
    source = """
name: bad
steps:
  - id: fields
    uses: ai.extract
    with:
      text: hello
      schema: {type: string}
"""
    with pytest.raises(ValidationError) as caught:
        load_workflow(source, "bad.yaml", ActionRegistry().input_models())
    assert "bad.yaml:8:" in str(caught.value)
    assert "schema must describe an object (type: object), not type 'string'" in str(caught.value)
