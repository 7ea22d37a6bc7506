"""Order totals with discount codes, in integer cents (no floating-point money)."""

from __future__ import annotations

from dataclasses import dataclass

DISCOUNTS = {"WELCOME10": 10, "VIP25": 25}


@dataclass(frozen=True)
class Line:
    sku: str
    cents: int
    quantity: int = 1

    def __post_init__(self) -> None:
        if self.cents < 0 or self.quantity < 1:
            raise ValueError(f"{self.sku}: a price is >= 0 and a quantity >= 1")


def total(lines: list[Line]) -> int:
    """The sum of the lines, in cents."""
    return sum(line.cents * line.quantity for line in lines)


def apply_discount(cents: int, code: str | None) -> int:
    """The amount after a discount code; an unknown code is refused."""
    if not code:
        return cents
    percent = DISCOUNTS.get(code.upper())
    if percent is None:
        raise ValueError(f"unknown discount code {code!r}")
    return cents - cents * percent // 100


def format_cents(cents: int, currency: str = "EUR") -> str:
    """``1234`` → ``"12.34 EUR"``."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{sign}{whole}.{rest:02d} {currency}"
