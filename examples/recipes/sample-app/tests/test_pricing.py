import pytest

from sample_app import Line, apply_discount, total
from sample_app.pricing import format_cents


def test_total_multiplies_quantities() -> None:
    assert total([Line("a", 250, 2), Line("b", 100)]) == 600


def test_bad_lines_are_refused() -> None:
    with pytest.raises(ValueError):
        Line("a", -1)


@pytest.mark.parametrize(("code", "expected"), [(None, 1000), ("welcome10", 900), ("VIP25", 750)])
def test_discounts(code: str | None, expected: int) -> None:
    assert apply_discount(1000, code) == expected


def test_unknown_code() -> None:
    with pytest.raises(ValueError, match="unknown"):
        apply_discount(1000, "FREE")


def test_format() -> None:
    assert format_cents(1234) == "12.34 EUR"
