"""Values an expression can have, beyond Python's int, float, bool, str, None
and tuple (netdsl lists are immutable tuples)."""

from __future__ import annotations

from dataclasses import dataclass

from ..syntax import ast


@dataclass(frozen=True)
class BlockRef:
    """A ``block`` definition used as a value: ``resnet(unit = bottleneck)``."""

    name: str
    defn: ast.BlockDef

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class LayerRef:
    """A built-in layer used as a value: ``conv_bn_act(64, act = silu)``."""

    kind: str

    def __repr__(self) -> str:
        return self.kind


@dataclass(frozen=True)
class ExternRef(LayerRef):
    """An ``extern`` declaration used as a layer or a value: ``blur_pool``. Its ``kind``
    is ``"extern"``; ``name`` is the spec's name for it."""

    name: str
    defn: ast.Extern

    def __repr__(self) -> str:
        return self.name


class _Poison:
    """The value of an expression that already produced a diagnostic.

    Operations on it give Poison again without reporting, so one mistake is
    reported once, and checking goes on to find the next one."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<error>"


POISON = _Poison()


def type_name(v) -> str:
    """The name of a value's type, as diagnostics say it.

    >>> type_name(3), type_name([1]), type_name(2.5)
    ('int', 'list', 'float')
    """
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (tuple, list)):
        return "list"
    if v is None:
        return "none"
    if isinstance(v, BlockRef):
        return "block"
    if isinstance(v, LayerRef):
        return "layer"
    from ..ir import InitScheme
    if isinstance(v, InitScheme):
        return "init scheme"
    return type(v).__name__


def show(v) -> str:
    """A value as the spec would write it, shortened to fit in a message.

    >>> show((1, 2.5, "a", True)), show(tuple(range(100)))
    ('[1, 2.5, "a", true]', '[0, 1, 2, 3, 4, 5, 6, 7, … 92 more]')
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        # A diagnostic quotes a value to show it, not to reproduce a 10,000-character string.
        return f'"{v}"' if len(v) <= 60 else f'"{v[:60]}…" ({len(v)} characters)'
    if isinstance(v, (tuple, list)):
        more = f", … {len(v) - 8} more" if len(v) > 8 else ""
        return "[" + ", ".join(show(x) for x in v[:8]) + more + "]"
    return repr(v)


def to_json(v):
    """A value in JSON form (blocks and layers by name)."""
    if isinstance(v, (tuple, list)):
        return [to_json(x) for x in v]
    if isinstance(v, (BlockRef, LayerRef)):
        return repr(v)
    return v
