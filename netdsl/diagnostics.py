"""Diagnostics: located, coded messages about a spec, rendered like rustc's.

The front end never raises a bare Python exception for a user mistake. It
collects :class:`Diagnostic` objects and raises one :class:`NetdslError`
carrying all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .span import Span


@dataclass(frozen=True)
class Diagnostic:
    """One error, at the smallest span that shows it.

    >>> d = Diagnostic("E0101", "unknown name `widht`", Span(line=3, column=9, end_column=13),
    ...                label="not defined here", help="did you mean `width`?")
    >>> d.code
    'E0101'
    """

    code: str
    message: str
    span: Span | None = None
    label: str = ""
    help: str | None = None
    notes: tuple[str, ...] = ()

    def with_notes(self, *notes: str) -> "Diagnostic":
        return Diagnostic(self.code, self.message, self.span, self.label, self.help,
                          self.notes + tuple(notes))

    def to_dict(self) -> dict:
        span = self.span
        return {
            "code": self.code,
            "message": self.message,
            "file": span.file if span else None,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "label": self.label,
            "help": self.help,
            "notes": list(self.notes),
        }

    def render(self, sources: dict[str | None, str] | None = None) -> str:
        """Render as ``error[CODE]: message`` with the source line and a caret."""
        out = [f"error[{self.code}]: {self.message}"]
        span = self.span
        text = (sources or {}).get(span.file) if span else None
        pad = " " * (len(str(span.line)) if span else 1)
        if span is not None:
            out.append(f"{pad}--> {span.where()}")
            lines = text.splitlines() if text is not None else []
            if 0 < span.line <= len(lines):
                src = lines[span.line - 1]
                shown, col = _expand_tabs(src, span.column)
                if span.end_line in (None, span.line) and span.end_column:
                    _, end = _expand_tabs(src, span.end_column)
                    width = max(1, end - col)
                else:
                    width = max(1, len(shown.rstrip()) - col + 1)
                width = min(width, 120)
                out.append(f"{pad} |")
                out.append(f"{span.line} | {shown[:240]}")
                caret = " " * (col - 1) + "^" * width
                out.append(f"{pad} | {caret} {self.label}".rstrip())
                out.append(f"{pad} |")
            elif self.label:
                out.append(f"{pad} = {self.label}")
        elif self.label:
            out.append(f"{pad} = {self.label}")
        for note in self.notes:
            out.append(f"{pad} = note: {note}")
        if self.help:
            out.append(f"{pad} = help: {self.help}")
        return "\n".join(out)


def _expand_tabs(line: str, column: int) -> tuple[str, int]:
    """Expand tabs to 4 spaces and move a 1-based column with them."""
    shown = []
    new_col = column
    for i, ch in enumerate(line):
        if ch == "\t":
            shown.append("    ")
            if i + 1 < column:
                new_col += 3
        else:
            shown.append(ch)
    return "".join(shown), new_col


@dataclass
class NetdslError(Exception):
    """A spec could not be compiled; ``diagnostics`` says every reason found.

    >>> import netdsl
    >>> try:
    ...     netdsl.compile("network n() { input [3, 8, 8]\\n conv2d(4, 9) }")
    ... except netdsl.NetdslError as e:
    ...     print(e.diagnostics[0].code)
    E0304
    """

    diagnostics: list[Diagnostic]
    sources: dict[str | None, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics]

    def render(self) -> str:
        parts = [d.render(self.sources) for d in self.diagnostics]
        n = len(self.diagnostics)
        parts.append(f"error: could not compile the spec ({n} error{'s' if n != 1 else ''})")
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.render()


def closest(name: str, candidates) -> str | None:
    """The candidate nearest to ``name`` by edit distance, if near enough.

    >>> closest("conv2", ["conv2d", "linear"])
    'conv2d'
    """
    best, best_d = None, None
    for cand in candidates:
        d = _distance(name.lower(), cand.lower())
        if best_d is None or d < best_d:
            best, best_d = cand, d
    if best is not None and best_d <= max(1, len(name) // 3):
        return best
    return None


def _distance(a: str, b: str) -> int:
    """Edit distance counting a swap of neighbours as one edit (``widht`` → ``width``)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]
