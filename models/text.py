"""What text the engine accepts: one rule for the API's edge and the workflows' validators.

Postgres cannot store NUL, lone surrogates cannot be encoded as UTF-8, and other control
characters and bidirectional overrides (which make a text display differently from what it
says) have no place in a proposal, a reason or an id. Text fields may hold tabs and line
breaks; identifiers, query parameters and path segments may not.
"""

from __future__ import annotations

import re

_CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_LINE_BREAKS_AND_TABS = "\t\n\r"
_BIDI_OVERRIDES = "\u202a-\u202e\u2066-\u2069"
_SURROGATES = "\ud800-\udfff"

_UNWRITABLE_TEXT = re.compile(f"[{_CONTROLS}{_BIDI_OVERRIDES}{_SURROGATES}]")
_UNWRITABLE_TOKEN = re.compile(
    f"[{_CONTROLS}{_LINE_BREAKS_AND_TABS}{_BIDI_OVERRIDES}{_SURROGATES}]"
)


def unwritable_reason(value: str, *, single_line: bool = False) -> str | None:
    """Why `value` may not be stored or used (None if it may): names the first bad character."""
    found = (_UNWRITABLE_TOKEN if single_line else _UNWRITABLE_TEXT).search(value)
    if found is None:
        return None
    return (
        f"must not contain control characters, bidirectional overrides or lone surrogates "
        f"(found U+{ord(found.group()):04X} at position {found.start()})"
    )
