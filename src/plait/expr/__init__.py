"""Expression evaluation: ``${{ }}`` templates and bare conditions, sandboxed."""

from plait.expr.sandbox import (
    Analysis,
    analyze,
    analyze_value,
    contains_expression,
    evaluate,
    has_expression,
    render,
    render_string,
)

__all__ = [
    "Analysis",
    "analyze",
    "analyze_value",
    "contains_expression",
    "evaluate",
    "has_expression",
    "render",
    "render_string",
]
