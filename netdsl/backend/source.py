"""Python source from the IR: literals, names and comments, each escaped, so that
no spec string reaches generated code as code. Used by the forward's writer
(``forward``) and by ``netdsl export --format python`` (``codegen``).
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
import unicodedata

#: netdsl's own modules a generated file copies.
HELPERS = ("StochasticDepth", "Permute", "LayerNorm2d", "Sum", "Mean", "Amax", "Narrow", "pad_same", "Conv2dSame",
           "ScaledStdConv2d")
#: What a helper calls that must be copied before it.
HELPER_NEEDS = {"Conv2dSame": ("pad_same",)}

#: Names generated code defines or imports itself; a class may not take them.
TAKEN = frozenset({"nn", "torch", "OrderedDict", "namedtuple", "F", "self", *HELPERS})


def literal(v) -> str:
    """Python source for a constructor value.

    >>> literal((3, 3)), literal(1e-05), literal("row"), literal(None)
    ('(3, 3)', '1e-05', "'row'", 'None')
    """
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        return repr(int(v))
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"no Python literal for {v!r}")
        return repr(float(v))
    if isinstance(v, str):
        return repr(str(v))
    if isinstance(v, tuple):
        inner = ", ".join(literal(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(literal(x) for x in v) + "]"
    raise TypeError(f"no Python literal for a {type(v).__name__}")


def compact(v):
    # torch's 2-D layers take one int for a square kernel, stride or padding.
    if isinstance(v, tuple) and len(v) > 1 and all(type(x) is int and x == v[0] for x in v):
        return v[0]
    return v


def is_attribute(name: str) -> bool:
    """Whether a module name can be written ``self.name``: an identifier that is no
    keyword, does not start with ``__`` (mangled in a class body) and that Python's
    NFKC normalisation of identifiers leaves as it is (``ﬁ`` would be read as ``fi``).

    >>> is_attribute("conv1"), is_attribute("é"), is_attribute("0"), is_attribute("import"), is_attribute("ﬁ")
    (True, True, False, False, False)
    """
    return (name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("__")
            and unicodedata.normalize("NFKC", name) == name)


def class_name(name: str) -> str:
    """An ASCII class name from a spec's name: letters, digits and ``_`` only,
    starting with a letter, never a keyword or a builtin.

    >>> class_name("Bottleneck"), class_name("denseblock1"), class_name("0"), class_name("Exception")
    ('Bottleneck', 'Denseblock1', 'Block0', 'ExceptionBlock')
    """
    s = re.sub(r"[^A-Za-z0-9_]", "", name)
    if s[:1].islower():
        s = s[0].upper() + s[1:]
    if not s[:1].isalpha():
        s = "Block" + s
    if keyword.iskeyword(s) or hasattr(builtins, s) or s in TAKEN:
        s += "Block"
    return s


def comment(text: str) -> str:
    """One comment line's text, escaped: nothing in it ends the line or the comment.

    >>> comment("a\\rimport os")
    'a\\\\rimport os'
    """
    if text.isprintable():
        return text  # the common case, a file name and line: no character to escape
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def module_ref(name: str, owner: str = "self") -> str:
    """The expression for a child module (or bare parameter) of ``owner`` in ``forward``."""
    if is_attribute(name):
        return f"{owner}.{name}"
    if name.isidentifier() and not keyword.iskeyword(name) and owner == "self":
        # An identifier Python would normalise or mangle: getattr with it is lint (ruff B009).
        return f"self.get_submodule({name!r})"
    return f"getattr({owner}, {name!r})"


def local_name(name: str) -> str:
    """A local variable's name for a spec's result or input name: the name itself where
    it hides nothing a forward calls (``getattr``, ``super``, ``torch``, the output type).

    >>> local_name("c3"), local_name("super"), local_name("é"), local_name("Outputs")
    ('c3', 'super_', 't', 'Outputs_')
    """
    if not (is_attribute(name) and name.isascii()):
        return "t"
    if hasattr(builtins, name) or name in TAKEN or name.endswith("Outputs"):
        return name + "_"
    return name
