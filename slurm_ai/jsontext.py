"""json.loads for text that someone else wrote (a user's marks, a spool file, a record).

json.loads raises RecursionError, not ValueError, for nesting deeper than the
interpreter's recursion limit: `[[[[...]]]]` of a few thousand levels. Callers
catch ValueError for "corrupt", so without this a user's 3 kB marks file
would crash the Epilog (running as root) instead of being reported as corrupt.
"""

from __future__ import annotations

import json
import math
from typing import Any


class TooDeepError(ValueError):
    """JSON nested deeper than the parser can follow."""


def _not_a_number(_: str) -> None:
    return None


def _finite_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def loads(text: str | bytes) -> Any:
    """json.loads; nesting too deep is a ValueError like any other corrupt text.

    Python's json takes NaN, Infinity and -Infinity (not JSON) and reads 1e400 as
    inf: each of them reads as null here, a value unknown, so the rest of a record
    is kept and no non-finite number reaches a sum, a table or a JSON output."""
    try:
        return json.loads(text, parse_constant=_not_a_number, parse_float=_finite_float)
    except RecursionError:
        raise TooDeepError("JSON nested too deeply") from None


def finite(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None (unknown), recursively.

    For numbers that enter from hardware or arithmetic (a counter that wrapped, a
    division by a zero duration) on their way into a record or an output."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(value) for value in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps that always writes JSON: non-finite numbers become null (json.dumps
    would write NaN or Infinity, which no JSON reader takes)."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
