"""Analysis of a checked network, without tensors: parameters, MACs and
activation sizes per module (``counts``), the layer table (``table``), the
difference between two networks (``diff``), diagrams (``graph``), and the
comparison of a built model with a reference (``compare``, behind ``netdsl verify``).
"""

from __future__ import annotations


def __getattr__(name: str):
    # The names of the flat `netdsl.analysis` module this package replaced.
    import importlib

    if name.startswith("__"):
        raise AttributeError(name)
    counts = importlib.import_module(f"{__name__}.counts")
    try:
        return getattr(counts, name)
    except AttributeError:
        raise AttributeError(f"module 'netdsl.analysis' has no attribute {name!r}") from None
