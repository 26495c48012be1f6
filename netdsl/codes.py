"""The error catalogue: what each diagnostic code means, an example and the fix.

The entries live in ``errors.md`` inside the package (docs/errors.md is the
same file), so ``netdsl explain E0301`` works wherever netdsl is installed.
``explain`` gives an entry as Markdown, ``render`` turns it into text for a
terminal, ``titles`` lists the codes.
"""

from __future__ import annotations

import functools
import re
import textwrap
from importlib import resources

_ENTRY = re.compile(r"^## (E\d{4})\b.*?(?=^## |\Z)", re.M | re.S)
_TITLE = re.compile(r"^## (E\d{4}): (.*)$", re.M)
_MARKER = re.compile(r"^<!-- .* -->\n", re.M)
# An example's first lines tell tests/errors_doc.py what the fixture must give.
_HEADER = re.compile(r"^<!-- example: (\S+) -->\n```netdsl\n((?:# (?:expect|limit|set|export): .*\n)+)", re.M)
_SAID = {"limit": "# checked with --limit {}", "set": "# checked with --set {}",
         "export": "# exported with --format {}"}


def _reader_header(m: re.Match) -> str:
    """An example's test header as a reader's comments, one line for each: the file's
    name, then the options its command takes. Each keeps its line, so that the line
    numbers of the diagnostic shown below it stay true of the example shown.

    >>> text = "<!-- example: E0402_deep.net -->\\n```netdsl\\n# expect: E0402 at 6:11\\n# limit: max_nesting=4\\n"
    >>> print(_HEADER.sub(_reader_header, text), end="")
    <!-- example: E0402_deep.net -->
    ```netdsl
    # E0402_deep.net
    # checked with --limit max_nesting=4
    """
    lines = [f"# {m.group(1)}"]
    for line in m.group(2).splitlines()[1:]:
        key, value = line[2:].split(": ", 1)
        lines.append(_SAID[key].format(value))
    return f"<!-- example: {m.group(1)} -->\n```netdsl\n" + "".join(f"{line}\n" for line in lines)


@functools.lru_cache(maxsize=1)
def _text() -> str:
    return resources.files(__package__).joinpath("errors.md").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def entries() -> dict[str, str]:
    """Code → its catalogue entry (Markdown), for every documented code.

    >>> "E0301" in entries()
    True
    """
    # The markers and the examples' headers only tell tests/errors_doc.py where the
    # generated examples go and what they must give.
    text = _HEADER.sub(_reader_header, _text())
    return {m.group(1): _MARKER.sub("", m.group(0)).rstrip() + "\n" for m in _ENTRY.finditer(text)}


def titles() -> dict[str, str]:
    """Code → its one-line title, in the catalogue's order.

    >>> titles()["E0301"]
    'residual add needs equal shapes'
    """
    return {m.group(1): m.group(2).strip() for m in _TITLE.finditer(_text())}


def explain(code: str) -> str | None:
    """The catalogue entry for ``code`` (any case), or None for a code netdsl does not have.

    >>> explain("e0301").splitlines()[0]
    '## E0301: residual add needs equal shapes'
    >>> explain("E9999") is None
    True
    """
    return entries().get(code.strip().upper())


_FENCE = re.compile(r"^\s*```")
_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_STRONG = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_NBSP = "\u00a0"


def _inline(text: str) -> str:
    """Markdown's inline marks dropped, except code spans: their backticks stay, as in
    netdsl's diagnostics, which quote names and code the same way; their spaces are made
    unbreakable for the wrapper (restored by ``_wrap``)."""
    spans: list[str] = []

    def keep(m):
        spans.append(m.group(0).replace(" ", _NBSP))
        return f"\0{len(spans) - 1}\0"

    text = _CODE_SPAN.sub(keep, text)
    text = _LINK.sub(lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} ({m.group(2)})",
                     text)
    text = _STRONG.sub(lambda m: m.group(1) or m.group(2), text)
    text = _EMPHASIS.sub(r"\1", text)
    return re.sub(r"\0(\d+)\0", lambda m: spans[int(m.group(1))], text)


def _wrap(text: str, width: int, first: str = "", rest: str = "") -> list[str]:
    lines = textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                          break_long_words=False, break_on_hyphens=False)
    return [line.replace(_NBSP, " ") for line in lines] or [first.rstrip()]


def _table(rows: list[str]) -> list[str]:
    cells = [[_inline(c.strip()).replace(_NBSP, " ") for c in r.strip().strip("|").split("|")]
             for r in rows if not re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", r)]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in cells) for i in range(max(map(len, cells)))]
    # Not strict: a row may have fewer cells than the widest one.
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]


def render(markdown: str, width: int = 80) -> str:
    """A catalogue entry as plain text for a terminal: the title on its own line,
    paragraphs and list items wrapped to ``width``, code blocks indented by four
    spaces, tables aligned, and no Markdown syntax but the backticks of code.

    >>> print(render("## E0001: oops\\n\\nA **bad** thing, see [docs](errors.md).\\n\\n"
    ...              "```netdsl\\nrelu\\n```\\n\\n**Fix:** Add `conv2d(16, 3)`.\\n", width=30), end="")
    E0001: oops
    <BLANKLINE>
    A bad thing, see docs
    (errors.md).
    <BLANKLINE>
        relu
    <BLANKLINE>
    Fix: Add `conv2d(16, 3)`.
    """
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0

    def blank():
        if out and out[-1] != "":
            out.append("")

    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            blank()
            i += 1
            while i < len(lines) and not _FENCE.match(lines[i]):
                out.append(("    " + lines[i]).rstrip())
                i += 1
            i += 1
            blank()
        elif not line.strip():
            blank()
            i += 1
        elif line.startswith("#"):
            blank()
            out.append(_inline(line.lstrip("#").strip()).replace(_NBSP, " "))
            out.append("")
            i += 1
        elif line.lstrip().startswith("|"):
            start = i
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                i += 1
            out.extend(_table(lines[start:i]))
        elif m := _ITEM.match(line):
            indent, mark, text = m.groups()
            i += 1
            while i < len(lines) and lines[i].strip() and not _ITEM.match(lines[i]) \
                    and not _FENCE.match(lines[i]) and lines[i].startswith(" "):
                text += " " + lines[i].strip()
                i += 1
            mark = "-" if mark in "-*+" else mark
            lead = indent + mark + " "
            out.extend(_wrap(_inline(text), width, lead, " " * len(lead)))
        else:
            para = [line.strip()]
            i += 1
            while i < len(lines) and lines[i].strip() and not _FENCE.match(lines[i]) \
                    and not _ITEM.match(lines[i]) and not lines[i].startswith(("#", "|")):
                para.append(lines[i].strip())
                i += 1
            out.extend(_wrap(_inline(" ".join(para)), width))
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"
