"""Reading spec files and resolving ``import``: source text → a Program of
definitions. This is the only place netdsl touches the file system, and it
only reads ``.net`` files that an import names."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from . import ast
from .diagnostics import Diagnostic, NetdslError
from .limits import Limits
from .parser import parse
from .span import Span

STDLIB_PREFIX = "std/"


@dataclass
class Program:
    """Everything a root spec defines or imports, in dependency order."""

    root: str | None
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    networks: dict[str, ast.NetworkDef | ast.NetworkAlias] = field(default_factory=dict)
    lets: list[ast.Let] = field(default_factory=list)
    root_networks: list[str] = field(default_factory=list)
    sources: dict[str | None, str] = field(default_factory=dict)


def stdlib_dir() -> Path:
    return Path(str(resources.files(__package__).joinpath("stdlib")))


def read_source(path: Path, limits: Limits, at: Span | None = None) -> str:
    """Read one spec file as UTF-8 text, or raise a diagnostic saying why not."""
    shown = str(path)

    def fail(code: str, msg: str, label: str = "", help: str | None = None, span=at):
        raise NetdslError([Diagnostic(code, msg, span, label, help)])

    if not path.exists():
        fail("E0105", f"spec file not found: {shown}", "no such file" if at else "",
             "check the path; imports are relative to the importing file")
    if path.is_dir():
        fail("E0105", f"{shown} is a directory, not a spec file", "a directory" if at else "",
             "name a .net file")
    if not path.is_file():
        # A FIFO or a device such as /dev/zero would be read for ever.
        fail("E0105", f"{shown} is not a regular file", "not a file" if at else "", "name a .net file")
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            fail("E0401", f"{shown} is {size} bytes, over the limit of {limits.max_file_bytes}",
                 help="raise it with --limit max_file_bytes=N if this is really a spec")
        data = path.read_bytes()
    except OSError as e:
        fail("E0105", f"cannot read {shown}: {e.strerror}")
    return decode(data, shown, limits)


def decode(data: bytes, filename: str | None, limits: Limits) -> str:
    """Bytes → text, refusing NUL bytes and invalid UTF-8 with a located error."""
    if len(data) > limits.max_file_bytes:
        raise NetdslError([Diagnostic("E0401", f"spec is {len(data)} bytes, over the limit of "
                                      f"{limits.max_file_bytes}", None,
                                      help="raise it with --limit max_file_bytes=N")])
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _position(data, e.start)
        # The text with the bad bytes replaced, so the message can show the line.
        sources = {filename: data.decode("utf-8", "replace")}
        raise NetdslError([Diagnostic(
            "E0006", "the spec is not valid UTF-8 text",
            Span(file=filename, line=line, column=col, end_column=col + 1),
            f"byte 0x{data[e.start]:02x} here", "save the file as UTF-8")], sources) from None
    if nul >= 0:
        line, col = _position(data, nul)
        raise NetdslError([Diagnostic("E0006", "the spec contains a NUL byte",
                                      Span(file=filename, line=line, column=col, end_column=col + 1),
                                      "a NUL byte",
                                      "spec files are text; this looks like a binary file")],
                          {filename: text})
    return text


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of byte ``offset``, the column in characters as the parser counts.

    >>> _position("aé".encode() + b"\\xff", 3)
    (1, 3)
    """
    before = data[:offset]
    line = before.count(b"\n") + 1
    col = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
    return line, col


def check_nesting(text: str, filename: str | None, limits: Limits) -> None:
    """Refuse nesting deeper than the limit before the parser recurses into it."""
    depth = 0
    line, col = 1, 0
    in_str = in_comment = False
    for ch in text:
        col += 1
        if ch == "\n":
            line, col, in_comment, in_str = line + 1, 0, False, False
            continue
        if in_comment:
            continue
        if in_str:
            in_str = ch != '"'
            continue
        if ch == "#":
            in_comment = True
        elif ch == '"':
            in_str = True
        elif ch in "{([":
            depth += 1
            if depth > limits.max_nesting:
                raise NetdslError([Diagnostic(
                    "E0402", f"nesting deeper than {limits.max_nesting} levels",
                    Span(file=filename, line=line, column=col, end_column=col + 1),
                    "too deep here", "flatten the spec, or raise --limit max_nesting=N")],
                    {filename: text})
        elif ch in "})]":
            depth = max(0, depth - 1)


def load(text: str, filename: str | None, base_dir: Path, limits: Limits) -> Program:
    """Parse a root spec and everything it imports, depth first.

    >>> p = load("block b() { relu }", None, Path("."), Limits())
    >>> list(p.blocks)
    ['b']
    """
    prog = Program(root=filename)
    errors: list[Diagnostic] = []
    done: set[str] = set()

    def visit(text: str, filename: str | None, base: Path, stack: list[tuple[str, Span | None]]):
        prog.sources[filename] = text
        check_nesting(text, filename, limits)
        try:
            module = parse(text, filename, limits)
        except NetdslError as e:
            errors.extend(e.diagnostics)
            prog.sources.update(e.sources)
            return
        for item in module.items:
            if isinstance(item, ast.Import):
                target, key = _resolve(item.path, base)
                if not item.path.endswith(".net"):
                    errors.append(Diagnostic("E0105", f"cannot import `{item.path}`", item.span,
                                             "not a .net spec file",
                                             "imports name spec files ending in .net"))
                    continue
                if key in [k for k, _ in stack]:
                    chain = " → ".join(Path(k).name for k, _ in stack[stack.index(
                        next(s for s in stack if s[0] == key)):]) + f" → {Path(key).name}"
                    errors.append(Diagnostic("E0106", "import cycle", item.span,
                                             f"imports {item.path} again",
                                             f"remove one import of the cycle {chain}"))
                    continue
                if key in done:
                    continue
                if len(stack) >= limits.max_import_depth:
                    n = limits.max_import_depth
                    errors.append(Diagnostic("E0406", f"imports nested deeper than {n} "
                                             f"file{'s' if n != 1 else ''}", item.span,
                                             "one import too many",
                                             "raise it with --limit max_import_depth=N"))
                    continue
                try:
                    sub = read_source(target, limits, item.span)
                except NetdslError as e:
                    errors.extend(e.diagnostics)
                    continue
                done.add(key)
                visit(sub, _display(target), target.parent, stack + [(key, item.span)])
            elif isinstance(item, ast.BlockDef):
                _define(prog.blocks, item, errors, prog.networks)
            elif isinstance(item, (ast.NetworkDef, ast.NetworkAlias)):
                _define(prog.networks, item, errors, prog.blocks)
                if not stack[1:]:
                    prog.root_networks.append(item.name)
            elif isinstance(item, ast.Let):
                prog.lets.append(item)

    root_key = str(Path(filename).resolve()) if filename else "<spec>"
    done.add(root_key)
    visit(text, filename, base_dir, [(root_key, None)])
    if errors:
        raise NetdslError(errors, prog.sources)
    return prog


def _define(table: dict, item, errors: list, other: dict) -> None:
    first = table.get(item.name) or other.get(item.name)
    if first is not None:
        errors.append(Diagnostic("E0104", f"`{item.name}` is defined twice", item.span,
                                 "defined again here",
                                 f"the first definition is at {first.span.where()}; rename one"))
        return
    table[item.name] = item


def _resolve(path: str, base: Path) -> tuple[Path, str]:
    if path.startswith(STDLIB_PREFIX):
        target = stdlib_dir() / path[len(STDLIB_PREFIX):]
    else:
        target = base / path
    return target, str(target.resolve())


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
