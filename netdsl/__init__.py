"""netdsl: a declarative language for convolutional networks, and its compiler.

>>> import netdsl
>>> model = netdsl.build("network tiny() { input [1, 28, 28]\\n conv2d(4, 5)\\n relu\\n flatten\\n linear(10) }")
>>> type(model).__name__
'Tiny'
"""

# The names are looked up on first use (PEP 562): the command line imports this package
# before any command runs, and `netdsl explain` or `--help` need neither the parser nor
# pydantic, which are most of what importing the API costs.
_LAZY = {
    "build": "api", "compile": "api", "parse": "api",
    "Diagnostic": "diagnostics", "NetdslError": "diagnostics", "Limits": "limits",
}

__all__ = ["build", "compile", "parse", "Diagnostic", "NetdslError", "Limits"]
__version__ = "0.1.0"

# The packages are the pipeline: syntax → check → ir → backend, with layers (the
# catalogue), analysis, tools and cli beside them (docs/architecture.md). Modules
# imported by their old flat names (netdsl.lower; netdsl.modules in old pickles) are
# found where they are now.
from ._moved import install as _install_moved  # noqa: E402

_install_moved()


def __getattr__(name: str):
    from importlib import import_module

    module = _LAZY.get(name)
    if module is None:
        # `netdsl.api`, `netdsl.testing`: a submodule, as when this package imported them all.
        # `from . import ir` in a submodule also lands here (importlib asks hasattr first).
        # __import__, not import_module: it takes the interpreter's own import path, which
        # `python -X importtime` reports; import_module's is hidden in the caller's time.
        if name.startswith("_"):
            raise AttributeError(f"module 'netdsl' has no attribute {name!r}")
        try:
            __import__(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'netdsl' has no attribute {name!r}") from None
        return globals()[name]
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
