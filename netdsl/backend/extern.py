"""Extern modules on the torch side: importing a granted class, and finding what a
module of it does to an input (its output shape, parameters and MACs) by building
and running it. Only the checker's extern rule (``netdsl/check/extern.py``) and a
granted lowering call here, after :mod:`netdsl.grant` allowed the class's path.
"""

from __future__ import annotations

import importlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

# The largest input (elements of one sample) a module is run on the CPU for: fvcore's count,
# and a module that cannot run on the meta device (64 MiB of float32).
_CPU_ELEMENTS = 1 << 24


class ExternError(Exception):
    """Why a class cannot serve as an extern module, in a sentence for a diagnostic."""


def module_class(target: str) -> type:
    """The class at the dotted path ``target`` (``timm.layers.BlurPool2d``): the module
    before the last dot, imported, and its attribute. Raises :class:`ExternError`."""
    import torch

    mod_name, _, attr = target.rpartition(".")
    try:
        with warnings.catch_warnings():  # a package's deprecation notices at import: not the spec's
            warnings.simplefilter("ignore")
            mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ExternError(f"cannot import `{mod_name}`: {_first_line(e)}") from None
    except Exception as e:  # the module's own code failed: the user's, not netdsl's
        raise ExternError(f"importing `{mod_name}` raised {type(e).__name__}: {_first_line(e)}") from None
    cls = getattr(mod, attr, None)
    if cls is None:
        raise ExternError(f"`{mod_name}` has no `{attr}`")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ExternError(f"`{target}` is a {type(cls).__name__}, not an nn.Module class")
    return cls


@dataclass(frozen=True)
class Probe:
    """What one module does to one sample: its output's shape (batch left out), its
    parameters, and whether it writes its input in place (``nn.Hardtanh(inplace=True)``)."""

    out_shape: tuple[int, ...]
    params: int
    writes_input: bool = False


def probe(cls: type, kwargs: dict[str, Any], shape: tuple[int, ...]) -> Probe:
    """Build ``cls(**kwargs)`` and run it on a batch of two samples of ``shape``, on the
    meta device (no memory, no arithmetic). Raises :class:`ExternError` where the module
    cannot be made, cannot run on that input, or gives something other than one tensor
    with the batch in front."""
    import torch

    with warnings.catch_warnings():  # what the class warns of on meta tensors is no news
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                m = cls(**kwargs)
            m.eval()
            x = torch.empty((2, *shape), device="meta")
            with torch.no_grad():
                out = m(x)
        except Exception as e:
            # Once more on the CPU, where the input is small enough: a module whose code
            # reads values cannot run on meta tensors, and torch's CPU kernels say what
            # is wrong in more words than its meta functions ("expected input[2, 8, 32,
            # 32] to have 16 channels", where meta says "Invalid channel dimensions").
            if math.prod(shape) > _CPU_ELEMENTS:
                raise ExternError(_failed(cls, e)) from None
            try:
                m = cls(**kwargs).eval()
                x = torch.zeros((2, *shape))
                with torch.no_grad():
                    out = m(x)
            except Exception as again:
                raise ExternError(_failed(cls, again)) from None
    if not isinstance(out, torch.Tensor):
        raise ExternError(f"`{cls.__name__}` returned a {type(out).__name__}, not one tensor")
    if out.dim() < 2 or out.shape[0] != 2:
        raise ExternError(f"`{cls.__name__}` changed the batch dimension: a batch of 2 gave "
                          f"{list(out.shape)}")
    params = sum(p.numel() for p in m.parameters())
    # An in-place op on the input bumps its version counter, on meta tensors too.
    return Probe(tuple(out.shape[1:]), params, writes_input=x._version > 0)


def count_macs(cls: type, kwargs: dict[str, Any], shape: tuple[int, ...], found: Probe) -> int | None:
    """fvcore's count of MACs for one sample, as it counts them in the whole model, from
    a module made on the CPU and run on zeros; None where fvcore cannot trace it, or
    where its input, output or parameters are too large to make on the CPU for a count."""
    import torch

    if max(math.prod(shape), math.prod(found.out_shape), found.params) > _CPU_ELEMENTS:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importing fvcore trips torch.jit deprecation warnings
        from fvcore.nn import FlopCountAnalysis

        try:
            with torch.no_grad():
                m = cls(**kwargs).eval()
                fca = FlopCountAnalysis(m, torch.zeros((1, *shape)))
                fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
                return int(fca.total())
        except Exception:
            return None


def _failed(cls: type, e: BaseException) -> str:
    return f"`{cls.__name__}` cannot be made and run on this input: {type(e).__name__}: {_first_line(e)}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 200 else line[:200] + "…"
