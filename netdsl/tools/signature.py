"""Where the cursor is in a call, and the signature an editor shows there.

``typing`` reads the arguments typed so far (the text after the call's ``(``):
how many positional ones, which keywords, and whether the cursor is in the value
of a ``name = ``. ``signature_help`` gives the callee's parameters, in order, each
with its default, and the one being typed: for a layer (from the catalogue), a
block or network (as the file or its imports define it), an init scheme and a
function. Nothing here reads more than the text before the cursor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..check.evaluate import BUILTINS, INIT_SCHEMES, SIGNATURES, scheme_args
from ..layers import LAYERS, REQUIRED
from ..limits import Limits
from .ide import Index, _show, _too_big, call_before

_KEYWORD = re.compile(r"\s*([A-Za-z_][A-Za-z_0-9]*)\s*=(?!=)")


@dataclass(frozen=True)
class Typing:
    """The arguments of a call typed so far: ``positional`` given before the one being
    typed, the keywords ``given`` before it, and ``keyword`` the name of the ``name =``
    whose value is being typed (None: not after one)."""

    positional: int
    given: frozenset[str]
    keyword: str | None


def typing(args: str) -> Typing:
    """What the text after a call's ``(`` says of its arguments.

    >>> typing('8, [3, 3], stride = 2, padding = ')
    Typing(positional=2, given=frozenset({'stride'}), keyword='padding')
    >>> typing('8, f(a, b), "x, y", 2 == 3, ')
    Typing(positional=4, given=frozenset(), keyword=None)
    """
    parts = _split(args)
    given, positional = set(), 0
    for part in parts[:-1]:
        m = _KEYWORD.match(part)
        if m:
            given.add(m.group(1))
        else:
            positional += 1
    m = _KEYWORD.match(parts[-1])
    return Typing(positional, frozenset(given), m.group(1) if m else None)


def _split(text: str) -> list[str]:
    """``text`` cut at its commas outside brackets and strings."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    return parts + [text[start:]]


@dataclass(frozen=True)
class Param:
    """One parameter as a signature shows it: ``label`` is ``stride = 1``."""

    name: str
    label: str
    doc: str = ""


@dataclass(frozen=True)
class Signature:
    label: str
    params: tuple[Param, ...]
    active: int | None
    doc: str = ""


def params_of(callee: str, idx: Index | None) -> tuple[Param, ...] | None:
    """The parameters of what ``callee`` names, in order; None where it names nothing
    with parameters known here (a function takes its own forms, ``SIGNATURES``).

    >>> [p.label for p in params_of("dropout", None)]
    ['p = 0.5', 'inplace = false']
    """
    defs = idx.definitions if idx else {}
    if callee in defs and defs[callee].kind in ("block", "network"):
        return tuple(Param(p.partition("=")[0].strip(), p) for p in defs[callee].params)
    if callee in LAYERS:
        return tuple(Param(a.name, a.name if a.default is REQUIRED else f"{a.name} = {_show(a.default)}", a.doc)
                     for a in LAYERS[callee].args)
    if callee in INIT_SCHEMES:
        return tuple(Param(name, name if default is None else f"{name} = {_show(default)}",
                           "one of " + ", ".join(f'"{c}"' for c in takes) if isinstance(takes, tuple) else "")
                     for name, default, takes in scheme_args(callee))
    return None


def signature_help(text: str, idx: Index | None, line: int, column: int,
                   limits: Limits | None = None) -> Signature | None:
    """The signature of the call the position is in, with the parameter being typed.

    >>> s = signature_help("conv2d(8, 3, stride = 2, ", None, 1, 26)
    >>> s.label[:40], s.active
    ('conv2d(out_channels, kernel_size, stride', None)
    >>> signature_help("conv2d(8, 3, padding = ", None, 1, 24).params[3].label
    'padding = 0'
    >>> signature_help("conv2d(8, 3, padding = ", None, 1, 24).active
    3
    """
    if _too_big(text, limits or Limits()):
        return None
    found = call_before(text, line, column)
    if found is None or found[0] is None:
        return None
    callee, args = found[0], found[1]
    params = params_of(callee, idx)
    if params is None:
        if callee in BUILTINS:
            return Signature(SIGNATURES.get(callee, callee), (), None)
        return None
    typed = typing(args)
    names = [p.name for p in params]
    if typed.keyword is not None:
        active = names.index(typed.keyword) if typed.keyword in names else None
    else:
        free = [i for i, n in enumerate(names) if n not in typed.given]
        active = free[typed.positional] if not typed.given and typed.positional < len(free) else None
    defs = idx.definitions if idx else {}
    doc = LAYERS[callee].doc if callee in LAYERS and callee not in defs else ""
    if callee in defs:
        doc = f"{defs[callee].kind} defined at {defs[callee].span.where()}"
    return Signature(f"{callee}({', '.join(p.label for p in params)})", params, active, doc)
