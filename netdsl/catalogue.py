"""The error catalogue: what each diagnostic code means, an example and the fix.

The entries live in ``errors.md`` inside the package (docs/errors.md is the
same file), so ``netdsl explain E0301`` works wherever netdsl is installed.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_ENTRY = re.compile(r"^## (E\d{4})\b.*?(?=^## |\Z)", re.M | re.S)
_MARKER = re.compile(r"^<!-- .* -->\n", re.M)


@functools.lru_cache(maxsize=1)
def entries() -> dict[str, str]:
    """Code → its catalogue entry (Markdown), for every documented code.

    >>> "E0301" in entries()
    True
    """
    text = resources.files(__package__).joinpath("errors.md").read_text(encoding="utf-8")
    # The markers only tell tests/errors_doc.py where the generated examples go.
    return {m.group(1): _MARKER.sub("", m.group(0)).rstrip() + "\n" for m in _ENTRY.finditer(text)}


def explain(code: str) -> str | None:
    """The catalogue entry for ``code`` (any case), or None for a code netdsl does not have.

    >>> explain("e0301").splitlines()[0]
    '## E0301: residual add needs equal shapes'
    >>> explain("E9999") is None
    True
    """
    return entries().get(code.strip().upper())
