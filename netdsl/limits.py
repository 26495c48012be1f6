"""Limits that keep a hostile or mistaken spec from exhausting time or memory.

Each limit has a default and can be changed from the API
(``netdsl.compile(spec, limits=Limits(max_params=10**9))``) and the CLI
(``--limit max_params=1e9``), up to a cap: the depth limits only as far as
every stage still works at that depth, and every limit at most 2⁶³ − 1.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

#: The largest value any limit takes: torch counts sizes in int64.
INT64_MAX = 2**63 - 1

#: How far each limit can be raised, and why not further. The depths were measured
#: with Python's default recursion limit of 1,000 frames (docs/robustness.md): the
#: evaluator takes about 2 frames per level of an expression and fails near 450
#: levels, the loader 1 frame per import and fails near 950; the cap leaves the
#: rest of the stack to the caller. Modules nest at most as deep as the checked IR
#: can be written as JSON and read back (pydantic reads 200 levels), about 98
#: levels, whatever these say.
CAPS: dict[str, tuple[int, str]] = {
    "max_nesting": (150, "evaluating an expression recurses about twice per level, "
                         "and Python's stack ends near 450 levels"),
    "max_block_depth": (150, "each block instance is a level of modules and of the checker's "
                             "recursion, like max_nesting"),
    "max_import_depth": (200, "reading imports recurses once per file, and Python's stack ends "
                              "near 950 files"),
    "max_int": (INT64_MAX, "torch's integers are 64 bits"),
}


@dataclass(frozen=True)
class Limits:
    """Upper bounds checked by the front end, each with its own diagnostic.

    >>> Limits().max_repeat
    10000

    Each is a non-negative ``int``, at most its cap:

    >>> Limits(max_nesting=100_000)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
      ...
    ValueError: Limits.max_nesting must be between 0 and 150, got 100000: evaluating an expression
    recurses about twice per level, and Python's stack ends near 450 levels
    """

    max_file_bytes: int = 500_000        # E0401: size of one spec file (parsing runs at ~150 kB/s)
    max_nesting: int = 100               # E0402: depth of { ( [, operator chains, else-if chains, lists in lists
    max_repeat: int = 10_000             # E0403: a repetition count, loop length, range size, list or string length
    max_nodes: int = 200_000             # E0404: steps to expand a network (layers, statements, list items)
    max_block_depth: int = 64            # E0405: blocks instantiating blocks (recursion)
    max_import_depth: int = 32           # E0406: imports importing imports
    max_dim: int = 1_000_000             # E0407: any one dimension (channels, height, width, features)
    max_params: int = 2_000_000_000      # E0408: total parameters (8 GB in float32), counted before allocation
    max_activation_bytes: int = 512 * 2**20  # E0409: the largest tensor one sample's forward makes (float32)
    max_int: int = 2**63 - 1             # E0215: magnitude of any integer value
    max_sweep_variants: int = 100_000    # netdsl sweep: combinations of a grid, refused before any is checked

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # bool is an int to Python, but `max_nesting=True` is a mistake.
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"Limits.{f.name} must be an int, got {type(value).__name__} {value!r}")
            cap, why = CAPS.get(f.name, (INT64_MAX, "torch's integers are 64 bits"))
            if not 0 <= value <= cap:
                got = value if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
                raise ValueError(f"Limits.{f.name} must be between 0 and {cap:,}, got {got}: {why}")

    def replace(self, **changes) -> Limits:
        return replace(self, **changes)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
