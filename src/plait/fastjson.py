"""``json.dumps`` with its default settings, minus the cost of building a C encoder on
every call (``json.dumps`` does; a step's transition encodes about ten small values and
checks its outputs twice, each several times dearer than the encoding itself).

The output is exactly ``json.dumps(value)`` (``allow_nan=False`` for
:func:`dumps_strict`); anything unusual — a circular value, recursion too deep, no C
accelerator — goes to ``json.dumps`` itself, for its exact behaviour and errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def _encoder(*, allow_nan: bool) -> Callable[[Any], str]:
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return lambda value: json.dumps(value, allow_nan=allow_nan)
    encode = make(
        None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii,
        None, ": ", ", ", False, False, allow_nan,
    )  # fmt: skip

    def dumps(value: Any) -> str:
        if not value and type(value) is dict:
            return "{}"
        try:
            return "".join(encode(value, 0))
        except RecursionError:
            return json.dumps(value, allow_nan=allow_nan)

    return dumps


#: ``json.dumps(value)``
dumps = _encoder(allow_nan=True)
#: ``json.dumps(value, allow_nan=False)``: NaN and infinities are a ValueError
dumps_strict = _encoder(allow_nan=False)
