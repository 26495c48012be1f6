"""The catalogue of built-in layers. Each kind is one :class:`~netdsl.layers.base.Kind`
in one family module (conv, norm, activation, pool, reduce, resample, reshape,
regular, scale): its signature, IR class, argument checks, shape rule, torch module, MAC
rule, parameter count and init defaults. The checker, lowering and analysis read
:data:`LAYERS`; none of them switches on a kind. docs/contributing.md says how to
add one.

Input channels and features are never arguments: the checker infers them.

>>> LAYERS["conv2d"].torch_class, [a.name for a in LAYERS["linear"].args]
('torch.nn.Conv2d', ['out_features', 'bias'])
"""

from __future__ import annotations

from . import activation, conv, extern, norm, pool, reduce, regular, resample, reshape, scale
from .base import REQUIRED, Arg, ArgTypeError, Kind, LayerError, Torch

# The argument converters, for tools and tests that draw values by converter.
from .base import _bool as _bool
from .base import _float as _float
from .base import _int as _int
from .base import _pair as _pair
from .base import _pair_or_none as _pair_or_none
from .base import _str as _str

LAYERS: dict[str, Kind] = {k.name: k for family in (conv, norm, activation, pool, regular, reshape,
                                                   reduce, resample, scale) for k in family.KINDS}

# Every kind an IR layer node can have: those a spec names, and `extern`, a granted Python
# class a spec declares (netdsl/layers/extern.py). The stages that read IR nodes look
# their kinds up here.
KINDS: dict[str, Kind] = {**LAYERS, **{k.name: k for k in extern.KINDS}}

# The IR classes, one per kind (several activations share one).
NODES: tuple[type, ...] = tuple(dict.fromkeys(k.node for k in KINDS.values()))

# Parameters each layer kind owns, for `init KIND.PARAM = ...`.
PARAMETERS: dict[str, tuple[str, ...]] = {k: v.parameters for k, v in LAYERS.items() if v.parameters}

# What autograd keeps of each kind, for in-place operations. Three sets, because
# a wrong guess costs differently: one kind missing from OUTPUT_NOT_SAVED costs an
# extra tensor; one wrongly there breaks backward.
#
# Kinds whose output is their input, a view of it, or (dropout, stochastic depth in
# training) a product nothing keeps: what follows them sees the tensor before them.
PASS_THROUGH = frozenset(k for k, v in KINDS.items() if v.pass_through)

# Kinds whose backward reads their output (torch saves the result of relu, sigmoid and
# tanh, in place or not): the checker refuses an in-place op on that output, even
# through a pass-through layer (E0311).
SAVES_OUTPUT = frozenset(k for k, v in KINDS.items() if v.saves_output)

# Kinds whose output autograd never keeps (they keep their input and weights, or only
# sizes): a residual may add its shortcut into that output in place, as torchvision's
# blocks do. Activations are left out: they keep their output, or may in some torch version.
OUTPUT_NOT_SAVED = frozenset(k for k, v in KINDS.items() if v.output_not_saved)


__all__ = ["KINDS", "LAYERS", "NODES", "PARAMETERS", "PASS_THROUGH", "SAVES_OUTPUT", "OUTPUT_NOT_SAVED",
           "REQUIRED", "Arg", "ArgTypeError", "Kind", "LayerError", "Torch"]
