"""Limits that keep a hostile or mistaken spec from exhausting time or memory.

Each limit has a default and can be changed from the API
(``netdsl.compile(spec, limits=Limits(max_params=10**9))``) and the CLI
(``--limit max_params=1e9``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Limits:
    """Upper bounds checked by the front end, each with its own diagnostic.

    >>> Limits().max_repeat
    10000
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

    def replace(self, **changes) -> "Limits":
        return replace(self, **changes)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
