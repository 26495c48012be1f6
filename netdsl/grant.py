"""Grants: which Python modules a spec's ``extern`` declarations may import.

Importing a module runs its code, so a spec that names a Python class
(``extern blur_pool = "timm.layers.BlurPool2d"``) is refused unless the person
running netdsl grants that class's module prefix: ``--allow-module timm.layers``
on the command line, ``grant=["timm.layers"]`` in the API. A grant comes only from
the one who runs netdsl, never from a file: a spec, or a setting shipped beside it,
is as untrusted as the code it would import (docs/language.md, "Extern modules").

A prefix grants itself and what lies below it by whole dotted names:
``timm.layers`` grants ``timm.layers.BlurPool2d`` and ``timm.layers.blur_pool.X``,
never ``timm.layers_extra.X``.

>>> g = Grant.of(["timm.layers"])
>>> g.allows("timm.layers.BlurPool2d"), g.allows("timm.layers_extra.X"), g.allows("timm.Y")
(True, False, False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# A dotted Python name: identifiers joined by dots.
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*\Z")


def is_dotted(text: str) -> bool:
    """Whether ``text`` is a dotted Python name (``timm.layers``), ASCII only.

    >>> is_dotted("timm.layers.BlurPool2d"), is_dotted("../x"), is_dotted("a..b"), is_dotted("")
    (True, False, False, False)
    """
    return bool(_DOTTED.match(text))


@dataclass(frozen=True)
class Grant:
    """The module prefixes granted; empty grants nothing (the default)."""

    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, value: Grant | Iterable[str] | str | None) -> Grant:
        """A grant from what the API takes: None, one prefix, or an iterable of them.
        A prefix that is no dotted Python name is a ValueError; another type a TypeError."""
        if value is None:
            return cls()
        if isinstance(value, Grant):
            return value
        items = [value] if isinstance(value, str) else value
        try:
            prefixes = tuple(items)
        except TypeError:
            raise TypeError(f"grant must be a module prefix (str) or a list of them, not "
                            f"{type(value).__name__}") from None
        for p in prefixes:
            if not isinstance(p, str):
                raise TypeError(f"grant: each module prefix must be a str, not {type(p).__name__}")
            if not is_dotted(p):
                raise ValueError(f"grant: {p!r} is not a Python module name such as timm.layers")
        return cls(tuple(dict.fromkeys(prefixes)))

    def allows(self, target: str) -> bool:
        """Whether ``target`` (a dotted class path) lies under a granted prefix."""
        return any(target == p or target.startswith(p + ".") for p in self.prefixes)

    def __bool__(self) -> bool:
        return bool(self.prefixes)
