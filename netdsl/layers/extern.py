"""``extern``: a Python ``nn.Module`` class that netdsl does not know, used as a layer
(``extern blur_pool = "timm.layers.BlurPool2d"``). Its IR node holds the class's
dotted path and the keyword arguments it is made with, and what the checker found by
building it (``netdsl/check/extern.py``): its output shape, parameters and MACs.

It is no entry of :data:`~netdsl.layers.LAYERS`, whose names a spec writes; it is in
:data:`~netdsl.layers.KINDS`, which the stages that read IR nodes look kinds up in.
Nothing here imports the class unless a grant (:mod:`netdsl.grant`) names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Union

from typing_extensions import TypeAliasType

from .base import Kind, Layer, NonNegInt, Torch

#: A value an extern's constructor is given: what a spec's expression can be, but blocks
#: and layers (a list is a tuple, as everywhere in the IR).
if TYPE_CHECKING:
    Value = Union[bool, int, float, str, None, tuple["Value", ...]]  # noqa: UP007
else:  # pydantic reads a recursive alias declared so
    Value = TypeAliasType("Value", Union[bool, int, float, str, None, tuple["Value", ...]])  # noqa: UP007


class Extern(Layer):
    """A module of class ``target`` made with ``kwargs`` (in the order the spec gives
    them), of ``params`` parameters and ``macs`` multiply-accumulates as fvcore counts
    them (None where fvcore could not count it)."""

    kind: Literal["extern"] = "extern"
    target: str
    kwargs: tuple[tuple[str, Value], ...] = ()
    params: NonNegInt = 0
    macs: NonNegInt | None = None


class ExternKind(Kind):
    name = "extern"
    node = Extern
    doc = "a granted Python nn.Module class, made with the spec's keyword arguments"
    # Its output may be its input or a view of it, and its backward may read it: an
    # in-place layer after it is refused (E0311), never a silently wrong gradient.
    saves_output = True
    own_init = True

    def type_name(self, node) -> str:
        return node.target.rsplit(".", 1)[1]

    def is_counted(self, node) -> bool:
        return node.macs is not None

    def params(self, node) -> int:
        return node.params

    def arguments(self, node) -> dict:
        # The class and its constructor's arguments, each by name; what was found by
        # running it (parameters, MACs) is the diff's own columns.
        return {"class": node.target, **{k: python_value(v) for k, v in node.kwargs},
                **({"init": node.init} if node.init else {})}

    def macs(self, node) -> int:
        return node.macs or 0

    def torch(self, node) -> Torch:
        return Torch(node.target, dict(node.kwargs))

    def build(self, node, device):
        """The module, made by its own constructor (its own initialisation) and moved to
        ``device``; on the meta device, made there. The lowering has checked the grant."""
        import torch

        from ..backend.extern import module_class

        cls = module_class(node.target)
        kwargs = {k: python_value(v) for k, v in node.kwargs}
        if str(device) == "meta":
            with torch.device("meta"):
                return cls(**kwargs)
        m = cls(**kwargs)
        return m if str(device) == "cpu" else m.to(device)


def python_value(v):
    """A spec's list is a Python list where a constructor is given it (``[3, 3]``)."""
    return [python_value(x) for x in v] if isinstance(v, tuple) else v


KINDS = (ExternKind(),)
