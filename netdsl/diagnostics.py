"""Diagnostics: located, coded messages about a spec, rendered like rustc's.

The front end never raises a bare Python exception for a user mistake. It
collects :class:`Diagnostic` objects and raises one :class:`NetdslError`
carrying all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .span import Span


@dataclass(frozen=True)
class Fix:
    """An edit that does what a diagnostic's help proposes: ``text`` in place of what
    ``span`` covers (a span that covers nothing, ``end_column == column``, inserts), so
    that an editor can offer it as a quick fix without reading the help's words.

    >>> Fix.replacing("width", Span(line=3, column=9, end_column=14)).title
    'change to `width`'
    """

    title: str
    span: Span
    text: str

    @classmethod
    def replacing(cls, text: str, span: Span) -> Fix:
        return cls(f"change to `{text}`", span, text)


def rename(near: str | None, span: Span | None) -> tuple[Fix, ...]:
    """The fix of a did-you-mean: ``near`` in place of the name ``span`` covers, where
    there is a suggestion and a place (a name given on the command line has none).

    >>> rename(None, Span(line=1, column=1, end_column=3)), rename("a", None)
    ((), ())
    """
    if near is None or span is None or span.end_column is None or span.end_line not in (None, span.line):
        return ()
    return (Fix.replacing(near, span),)


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
    # The help as edits, where it proposes one; not part of what the diagnostic says.
    fixes: tuple[Fix, ...] = field(default=(), compare=False)

    def with_notes(self, *notes: str) -> Diagnostic:
        return Diagnostic(self.code, self.message, self.span, self.label, self.help,
                          self.notes + tuple(notes), self.fixes)

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
        r"""Render as ``error[CODE]: message`` with the source line and a caret.

        Control characters from the spec are shown escaped, so a spec cannot
        drive the terminal it is checked in:

        >>> print(Diagnostic("E0101", "unknown name `a\x1b[2Jb`").render())
        error[E0101]: unknown name `a\x1b[2Jb`
        """
        return self._render(_Lines(sources or {}))

    def _render(self, lines: _Lines) -> str:
        out = [f"error[{self.code}]: {escape(self.message)}"]
        span = self.span
        label = escape(self.label)
        pad = " " * (len(str(span.line)) if span else 1)
        if span is not None:
            out.append(f"{pad}--> {escape(span.where())}")
            src = lines.get(span.file, span.line)
            if src is not None:
                shown, col = _displayed(src, span.column)
                if span.end_line in (None, span.line) and span.end_column:
                    _, end = _displayed(src, span.end_column)
                    width = max(1, end - col)
                else:
                    width = max(1, len(shown.rstrip()) - col + 1)
                width = min(width, 120)
                if col > 160:  # far along a long line: show the part around the caret
                    cut = col - 80
                    shown, col = "…" + shown[cut:], col - cut + 1
                out.append(f"{pad} |")
                out.append(f"{span.line} | {shown[:240]}")
                caret = " " * (col - 1) + "^" * width
                out.append(f"{pad} | {caret} {label}".rstrip())
                out.append(f"{pad} |")
            elif label:
                out.append(f"{pad} = {label}")
        elif label:
            out.append(f"{pad} = {label}")
        for note in self.notes:
            out.append(f"{pad} = note: {escape(note)}")
        if self.help:
            out.append(f"{pad} = help: {escape(self.help)}")
        return "\n".join(out)


# What a terminal acts on rather than shows: C0 controls, DEL, C1 controls (a
# lone 0x9b is CSI to some terminals) and the Unicode direction overrides that
# make a line read other than it is. Spec strings and lines reach messages.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\n": r"\n", "\r": r"\r", "\t": r"\t"}


def _escaped(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def escape(text: str) -> str:
    r"""``text`` with control characters written as escapes (``\x1b``), never raw.

    >>> print(escape("bell\x07 esc\x1b[31m csi\x9b line\n"))
    bell\x07 esc\x1b[31m csi\x9b line\n
    """
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: _escaped(m.group()), text)


def _displayed(line: str, column: int) -> tuple[str, int]:
    r"""A source line as shown, and where a 1-based column of it moves to.

    A tab is shown as 4 spaces and a control character as its escape, so a
    caret under the text after them moves right with it.

    >>> _displayed("\ta\x1bb", 4)
    ('    a\\x1bb', 10)
    """
    if not _CONTROL.search(line):
        return line, column
    shown = []
    new_col = column
    for i, ch in enumerate(line):
        part = "    " if ch == "\t" else _escaped(ch) if _CONTROL.match(ch) else ch
        shown.append(part)
        if i + 1 < column:
            new_col += len(part) - 1
    return "".join(shown), new_col


_LINE_BREAK = re.compile("\r\n|\r|\n")


def source_lines(text: str) -> list[str]:
    r"""The lines of a spec as the parser numbers them: split at LF, CRLF or a lone CR.

    (``str.splitlines`` also splits at form feeds and other separators, and
    would put a caret on the wrong line.)

    >>> source_lines("a\r\nb\x0cc\rd\n")
    ['a', 'b\x0cc', 'd']
    """
    lines = _LINE_BREAK.split(text)
    if lines[-1] == "" and len(lines) > 1:
        lines.pop()  # the break that ends the last line starts none
    return lines


class _Lines:
    """Source lines by file, each file split once however many diagnostics quote it."""

    def __init__(self, sources: dict[str | None, str]):
        self.sources = sources
        self.split: dict[str | None, list[str]] = {}

    def get(self, file: str | None, line: int) -> str | None:
        lines = self.split.get(file)
        if lines is None:
            text = self.sources.get(file)
            lines = self.split[file] = source_lines(text) if text is not None else []
        return lines[line - 1] if 0 < line <= len(lines) else None


def by_position(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """``diagnostics`` in the order of the text: by line and column within each file,
    the files in the order they first come up; those with no location last. Stable,
    so errors at one place keep the order they were found in.

    The checker finds errors in the order it expands the network, which jumps
    between a block's definition and its uses; a reader goes down the file.

    >>> at = lambda line, col=1: Span(line=line, column=col)
    >>> ds = [Diagnostic("E0204", "a", at(30)), Diagnostic("E0107", "b"),
    ...       Diagnostic("E0101", "c", at(17, 9)), Diagnostic("E0101", "d", at(17, 5))]
    >>> [d.message for d in by_position(ds)]
    ['d', 'c', 'a', 'b']
    """
    files: dict[str | None, int] = {}
    for d in diagnostics:
        if d.span is not None:
            files.setdefault(d.span.file, len(files))

    def key(d: Diagnostic):
        s = d.span
        return (1, 0, 0, 0) if s is None else (0, files[s.file], s.line, s.column)

    return sorted(diagnostics, key=key)


#: Diagnostics rendered in full; the rest are counted, as compilers do: after
#: fifty errors the first is what to fix, and rendering a quarter of a million
#: would take longer than checking.
MAX_RENDERED = 50


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
        # Rendered when shown, not here: an error is often caught and merged into another.
        super().__init__(self.diagnostics)

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics]

    def render(self) -> str:
        """Every diagnostic (the first :data:`MAX_RENDERED` of them), then the count.

        >>> e = NetdslError([Diagnostic("E0101", f"unknown name `x{i}`") for i in range(60)])
        >>> e.render().splitlines()[-3:]
        ['... and 10 more errors', '', 'error: could not compile the spec (60 errors)']
        """
        lines = _Lines(self.sources)
        parts = [d._render(lines) for d in self.diagnostics[:MAX_RENDERED]]
        n = len(self.diagnostics)
        if n > MAX_RENDERED:
            more = n - MAX_RENDERED
            parts.append(f"... and {more} more error{'s' if more != 1 else ''}")
        parts.append(f"error: could not compile the spec ({n} error{'s' if n != 1 else ''})")
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.render()


#: Names quoted in messages are cut to this many characters.
SHOWN_NAME = 40


def short(name: str) -> str:
    """A name as a message quotes it: whole if readable, else its start and its length.

    >>> short("width")
    'width'
    >>> short("w" * 5000)
    'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww… (5000 characters)'
    """
    if len(name) <= SHOWN_NAME:
        return name
    return f"{name[:32]}… ({len(name)} characters)"


#: Names longer than this get no suggestion: nobody misspells a name this long
#: by a few letters, and comparing long names costs their product.
_MAX_SUGGESTED = 64


def closest(name: str, candidates) -> str | None:
    """The candidate nearest to ``name`` by edit distance, if near enough.

    >>> closest("conv2", ["conv2d", "linear"])
    'conv2d'

    It costs at most ``64 × 85`` steps per candidate whatever the lengths:

    >>> closest("w" * 16000, ["w" * 15999 + "x"]) is None
    True
    """
    if len(name) > _MAX_SUGGESTED:
        return None
    low = name.lower()
    best, best_d = None, max(1, len(name) // 3) + 1
    for cand in candidates:
        # The difference in length is a lower bound of the distance.
        if abs(len(cand) - len(name)) >= best_d:
            continue
        d = _distance(low, cand.lower(), best_d - 1)
        if d < best_d:
            best, best_d = cand, d
    return best


def related(name: str, candidates, limit: int = 3) -> list[str]:
    """Candidates that share a run of four or more letters with ``name``, most shared
    first: what to suggest when none is a near misspelling (:func:`closest`), as a
    layer torch has but netdsl does not is often named after one it has.

    >>> related("hardsigmoid", ["conv2d", "sigmoid", "hardswish", "relu"])
    ['sigmoid', 'hardswish']
    """
    if len(name) > _MAX_SUGGESTED:
        return []
    grams = _grams(name.lower())
    scored = []
    for i, cand in enumerate(candidates):
        if len(cand) > _MAX_SUGGESTED or cand == name:
            continue
        shared = len(grams & _grams(cand.lower()))
        if shared:
            scored.append((-shared, i, cand))
    return [cand for _, _, cand in sorted(scored)[:limit]]


def _grams(text: str) -> set[str]:
    return {text[i:i + 4] for i in range(len(text) - 3)}


def listing(names) -> str:
    """Names in backquotes, joined as a sentence joins them.

    >>> listing(["a"]), listing(["a", "b", "c"])
    ('`a`', '`a`, `b` and `c`')
    """
    quoted = [f"`{short(n)}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _distance(a: str, b: str, bound: int) -> int:
    """Edit distance counting a swap of neighbours as one edit (``widht`` → ``width``),
    or ``bound + 1`` as soon as it must be over ``bound``.

    >>> _distance("widht", "width", 3), _distance("abcdef", "uvwxyz", 2)
    (1, 3)
    """
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d = min(d, prev2[j - 2] + 1)
            row[j] = d
        if min(row) > bound:  # every later row is at least this row's minimum
            return bound + 1
        prev2, prev = prev, row
    return min(prev[len(b)], bound + 1)
