"""json.loads for text that someone else wrote (a user's marks, a spool file, a record).

json.loads raises RecursionError, not ValueError, for nesting deeper than the
interpreter's recursion limit: `[[[[...]]]]` of a few thousand levels. Callers
catch ValueError for "corrupt", so without this a user's 3 kB marks file
would crash the Epilog (running as root) instead of being reported as corrupt.
"""

from __future__ import annotations

import json
from typing import Any


class TooDeepError(ValueError):
    """JSON nested deeper than the parser can follow."""


def loads(text: str | bytes) -> Any:
    """json.loads; nesting too deep is a ValueError like any other corrupt text."""
    try:
        return json.loads(text)
    except RecursionError:
        raise TooDeepError("JSON nested too deeply") from None
