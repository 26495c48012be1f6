"""Source spans: where in which file a piece of syntax came from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """A 1-based, end-inclusive range of a source file.

    Spans never take part in equality, so two IR trees built from specs that
    differ only in layout compare equal:

    >>> Span(file="a.net", line=1, column=1) == Span(file="b.net", line=9, column=4)
    True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str | None = None
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Span)

    def __hash__(self) -> int:
        return 0

    def where(self) -> str:
        """``file:line:column`` as compilers print it."""
        return f"{self.file or '<spec>'}:{self.line}:{self.column}"
