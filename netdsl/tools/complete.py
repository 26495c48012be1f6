"""What may be typed at a position, by what the text before the cursor says.

- after ``init TARGET.PARAM =``: the init schemes, with their arguments;
- after ``reuse``: the labels of the definition;
- in a call's parentheses, after ``name =``: values for that argument (its
  default, the strings it takes, ``true``/``false``), then the names in scope;
- elsewhere in a call: the arguments not given yet, in signature order (those
  filled by position are left out), then values;
- at the start of a statement: the keywords, layers, blocks and names in scope;
- in an expression: the names in scope and the functions.

Each completion carries its place in the list (``sort``), which the server sends
as it is: arguments in the order of the signature, not the alphabet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..check.evaluate import BUILTINS, INIT_SCHEMES, SIGNATURES
from ..layers import LAYERS, REQUIRED
from ..limits import Limits
from .ide import Completion, Index, _show, _too_big, call_before, signature
from .refs import Thing, keywords
from .signature import params_of, typing

_INIT_VALUE = re.compile(r"\s*init\s+[A-Za-z_][\w.]*\s*=\s*[A-Za-z_]*\Z")
_REUSE = re.compile(r"\s*reuse\s+[A-Za-z_]*\Z")
_STATEMENT = re.compile(r"\s*(?:[A-Za-z_]\w*\s*:\s*)?[A-Za-z_]*\Z")
# Keywords that are not statements: offered in expressions, not at a line's start.
_OPERATORS = {"and", "or", "not", "in", "if", "else", "true", "false", "none", "for"}


def completions(text: str, idx: Index | None, line: int, column: int, limits: Limits | None = None,
                scope: Sequence[Thing] = ()) -> list[Completion]:
    """The completions at a position; ``scope``: the names in scope there (refs.in_scope).

    >>> [c.label for c in completions("conv2d(8, ", None, 1, 11)][:3]
    ['kernel_size', 'stride', 'padding']
    >>> [c.label for c in completions("conv2d(8, 3, bias = ", None, 1, 21)][:2]
    ['true', 'false']
    >>> [c.label for c in completions("init conv2d.weight = ", None, 1, 22)][:2]
    ['constant', 'kaiming_normal']
    """
    lines = text.split("\n")
    before = lines[line - 1][:max(0, column - 1)] if 0 < line <= len(lines) else ""
    if _INIT_VALUE.match(before):
        return [_scheme(name, i) for i, name in enumerate(sorted(INIT_SCHEMES))]
    if _REUSE.match(before):
        return [Completion(t.name, "label", "label", sort=f"0{i:04d}") for i, t in enumerate(scope)
                if t.kind == "label"]
    found = None if _too_big(text, limits or Limits()) else call_before(text, line, column)
    items: list[Completion] = []
    if found is not None and found[0] is not None:
        items.extend(_in_call(found[0], found[1], idx))
        if items and items[0].kind == "value":
            return items + _names(scope, expression=True) + _functions()
        return items + _everything(idx, scope, statement=False)
    in_body = found is None or found[2] == "{"
    return items + _everything(idx, scope, statement=in_body and bool(_STATEMENT.match(before)))


def _in_call(callee: str, args: str, idx: Index | None) -> list[Completion]:
    params = params_of(callee, idx)
    if params is None:
        return []
    typed = typing(args)
    if typed.keyword is not None:
        return _values(callee, typed.keyword, idx)
    names = [p.name for p in params]
    out = []
    for i, p in enumerate(params):
        if p.name in typed.given or (not typed.given and i < typed.positional):
            continue
        out.append(Completion(p.name, "argument", f"{callee}: {p.label}", p.doc, f"{p.name} = ",
                              sort=f"0{names.index(p.name):04d}"))
    return out


def _values(callee: str, name: str, idx: Index | None) -> list[Completion]:
    """The values offered for argument ``name`` of ``callee``: its default first, then the
    strings it takes, or ``true`` and ``false``."""
    shown: list[str] = []
    if callee in LAYERS:
        arg = next((a for a in LAYERS[callee].args if a.name == name), None)
        if arg is not None:
            if arg.default is not REQUIRED:
                shown.append(_show(arg.default))
            shown.extend(f'"{c}"' for c in getattr(arg.convert, "choices", ()))
            if isinstance(arg.default, bool):
                shown.extend(["true", "false"])
    else:
        for p in params_of(callee, idx) or ():
            if p.name == name:
                default = p.label.partition("=")[2].strip()
                shown.extend([default] if default else [])
                if callee in INIT_SCHEMES and p.doc.startswith("one of "):
                    shown.extend(c.strip() for c in p.doc[len("one of "):].split(","))
    return [Completion(v, "value", f"{callee}: {name}" + (" (the default)" if i == 0 and callee in LAYERS
                                                             and v == shown[0] else ""), sort=f"0{i:04d}")
            for i, v in enumerate(dict.fromkeys(shown))]


def _everything(idx: Index | None, scope: Sequence[Thing], statement: bool) -> list[Completion]:
    out: list[Completion] = []
    if statement:
        out.extend(Completion(k, "keyword", "keyword", sort=f"3{k}") for k in sorted(keywords() - _OPERATORS))
    for kind, sig in LAYERS.items():
        out.append(Completion(kind, "layer", signature(kind), sig.doc, sort=f"2{kind}"))
    defs = idx.definitions if idx else {}
    for d in defs.values():
        if d.kind == "block":
            out.append(Completion(d.name, "block", f"block {d.name}({', '.join(d.params)})",
                                  f"defined at {d.span.where()}", sort=f"1{d.name}"))
    seen = {c.label for c in out}
    out.extend(c for c in _names(scope, expression=not statement) if c.label not in seen)
    return out + _functions()


def _names(scope: Sequence[Thing], expression: bool) -> list[Completion]:
    """The parameters, ``let``s and loop variables in scope (and, in a statement, the blocks
    and labels are offered elsewhere)."""
    kinds = ("parameter", "let", "loop variable") + (("block",) if expression else ())
    return [Completion(t.name, "variable", t.kind, sort=f"1{t.name}") for t in scope if t.kind in kinds]


def _functions() -> list[Completion]:
    return [Completion(name, "function", SIGNATURES.get(name, name), sort=f"4{name}") for name in BUILTINS]


def _scheme(name: str, i: int) -> Completion:
    params = params_of(name, None) or ()
    return Completion(name, "function", f"{name}({', '.join(p.label for p in params)})",
                      "an init scheme", sort=f"0{i:04d}")
