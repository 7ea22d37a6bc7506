"""Functions the benchmarks run as `uses: python` steps."""


def noop() -> None:
    """Does nothing: what is measured is everything around it."""
