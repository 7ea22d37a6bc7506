"""Prices and discounts: the sample project of Plait's recipes."""

from sample_app.pricing import Line, apply_discount, total

__all__ = ["Line", "apply_discount", "total"]
__version__ = "0.3.1"
