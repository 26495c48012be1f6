"""Reading spec files and resolving ``import``: source text → a Program of
definitions. This is the only place netdsl touches the file system, and it
only reads ``.net`` files that an import names, and only under the root spec's
directory, the standard library or a directory of the import path. Each look it
takes at the file system is reported to the installed observer (``observer``),
which is how the cache of ``netdsl check`` learns what a run depended on."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..diagnostics import Diagnostic, NetdslError, by_position, short
from ..grant import is_dotted
from ..limits import Limits
from ..span import Span
from . import ast, observer
from .parser import parse

STDLIB_PREFIX = "std/"


@dataclass
class Program:
    """Everything a root spec defines or imports, in dependency order."""

    root: str | None
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    networks: dict[str, ast.NetworkDef | ast.NetworkAlias] = field(default_factory=dict)
    lets: list[ast.Let] = field(default_factory=list)
    # `extern NAME = "pkg.Class"`: Python classes, imported only where granted.
    externs: dict[str, ast.Extern] = field(default_factory=dict)
    root_networks: list[str] = field(default_factory=list)
    sources: dict[str | None, str] = field(default_factory=dict)


def stdlib_dir() -> Path:
    return Path(str(resources.files("netdsl").joinpath("stdlib")))


def read_source(path: Path, limits: Limits, at: Span | None = None) -> str:
    """Read one spec file as UTF-8 text, or raise a diagnostic saying why not."""
    shown = _shown(path)

    def fail(code: str, msg: str, label: str = "", help: str | None = None, span=at):
        raise NetdslError([Diagnostic(code, msg, span, label, help)])

    info = _stat(path)
    if isinstance(info, OSError):
        # Path.exists() says False for a symlink loop and raises for a name too long.
        why = {errno.ENOENT: ("spec file not found", "no such file"),
               errno.ENOTDIR: ("spec file not found", "no such file"),
               errno.ELOOP: ("symbolic links in a loop", "a symlink loop"),
               errno.ENAMETOOLONG: ("file name too long", "name too long")}.get(
            info.errno or 0, (f"cannot read the spec: {info.strerror or info}", "cannot be read"))
        fail("E0105", f"{why[0]}: {shown}", why[1] if at else "",
             "check the path; imports are looked up next to the importing file, then in each "
             "--import-path directory" if at else "check the path")
    if stat.S_ISDIR(info.st_mode):
        fail("E0105", f"{shown} is a directory, not a spec file", "a directory" if at else "",
             "name a .net file")
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or a device such as /dev/zero would be read for ever.
        fail("E0105", f"{shown} is not a regular file", "not a file" if at else "", "name a .net file")
    if info.st_size > limits.max_file_bytes:
        fail("E0401", f"{shown} is {info.st_size} bytes, over the limit of {limits.max_file_bytes}",
             help="raise it with --limit max_file_bytes=N if this is really a spec")
    try:
        data = path.read_bytes()
    except OSError as e:
        fail("E0105", f"cannot read {shown}: {e.strerror or e}")
    observer.seen("read", path, data)
    return decode(data, str(path), limits)


def _stat(path: Path):
    """``os.stat`` of ``path``, or the OSError that says why there is none."""
    info: os.stat_result | OSError
    try:
        info = path.stat()
    except OSError as e:
        info = e
    except ValueError as e:  # a NUL in the name
        info = OSError(errno.ENOENT, str(e))
    observer.seen("stat", path, info)
    return info


def _real(path: Path) -> Path | None:
    """``path`` made absolute with its symlinks and ``..`` resolved, as far as they go.

    Unlike ``Path.resolve``, this neither stats the file (whether a file outside what
    a spec may read exists is none of its business) nor raises for a symlink loop or
    a name too long: reading the file reports those."""
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        real = None
    observer.seen("real", path, real)
    return None if real is None else Path(real)


def _shown(path: Path) -> str:
    """A path as a message quotes it: cut in the middle when very long."""
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}…{text[-40:]} ({len(text)} characters)"


def read_at_most(stream, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of a binary ``stream`` (one more tells that it is over
    the limit), read a megabyte at a time: ``read(n)`` allocates ``n`` bytes before it
    reads, so a limit raised to 2⁶³ − 1 must not be asked for at once.

    >>> import io
    >>> len(read_at_most(io.BytesIO(b"x" * 10), 2**63 - 1)), len(read_at_most(io.BytesIO(b"x" * 10), 4))
    (10, 5)
    """
    chunks, total = [], 0
    while total <= limit:
        chunk = stream.read(min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


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
    key = (text, filename, limits.max_nesting)
    if key in _NESTING_OK:
        return  # a sweep loads the same files for each of its thousands of variants
    _nesting(text, filename, limits)
    if len(_NESTING_OK) >= 64:
        _NESTING_OK.clear()
    _NESTING_OK.add(key)


_NESTING_OK: set = set()


def _nesting(text: str, filename: str | None, limits: Limits) -> None:
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


class Reach:
    """Where imports may be read from: the root spec's directory tree, the standard
    library, and the directories of the import path, each with its symlinks resolved.

    >>> reach = Reach(Path("specs"))
    >>> reach.allows(Path("specs/resnet.net").resolve()), reach.allows(Path("/etc/x.net"))
    (True, False)
    """

    def __init__(self, root_dir: Path, import_path=()):
        self.import_dirs: list[Path] = []
        for d in import_path:
            real = _real(Path(d))
            is_dir = real is not None and real.is_dir()
            if real is not None:
                observer.seen("isdir", real, is_dir)
            if not is_dir:
                raise ValueError(f"import_path: {_shown(Path(d))} is not a directory")
            self.import_dirs.append(Path(d))
        self.roots = [r for r in (_real(root_dir), _real(stdlib_dir()),
                                  *(_real(d) for d in self.import_dirs)) if r is not None]

    def allows(self, real: Path) -> bool:
        return any(real.is_relative_to(root) for root in self.roots)


def load(text: str, filename: str | None, base_dir: Path, limits: Limits, import_path=()) -> Program:
    """Parse a root spec and everything it imports, depth first.

    ``base_dir`` is the root spec's directory (the current directory for a spec
    given as text): imports may read files under it, in the standard library,
    and under the directories of ``import_path``, where an import not found next
    to the importing file is looked for, in order.

    >>> p = load("block b() { relu }", None, Path("."), Limits())
    >>> list(p.blocks)
    ['b']
    """
    prog = Program(root=filename)
    errors: list[Diagnostic] = []
    done: set[str] = set()
    reach = Reach(base_dir, import_path)

    # `visit` is handed itself for the imports (`again`): a closure that named itself would be
    # a reference cycle, freed only by the cyclic collector, which netdsl.compile pauses.
    def visit(text: str, filename: str | None, base: Path, stack: list[tuple[str, Span | None]],
              again) -> None:
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
                if not item.path.endswith(".net"):
                    errors.append(Diagnostic("E0105", f"cannot import `{short(item.path)}`", item.span,
                                             "not a .net spec file",
                                             "imports name spec files ending in .net"))
                    continue
                found = _locate(item, base, reach)
                if isinstance(found, Diagnostic):
                    errors.append(found)
                    continue
                target, key = found
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
                again(sub, _display(target), target.parent, stack + [(key, item.span)], again)
            elif isinstance(item, ast.BlockDef):
                _define(prog.blocks, item, errors, prog.networks, prog.externs)
            elif isinstance(item, (ast.NetworkDef, ast.NetworkAlias)):
                _define(prog.networks, item, errors, prog.blocks, prog.externs)
                if not stack[1:]:
                    prog.root_networks.append(item.name)
            elif isinstance(item, ast.Let):
                prog.lets.append(item)
            elif isinstance(item, ast.Extern):
                if not is_dotted(item.target) or "." not in item.target:
                    errors.append(Diagnostic(
                        "E0122", f"`{short(item.target)}` is not a Python class path", item.target_span,
                        "not a dotted name such as timm.layers.BlurPool2d",
                        "an extern names a class by its module and its name, joined by dots: "
                        "`extern blur_pool = \"timm.layers.BlurPool2d\"`"))
                    continue
                _define(prog.externs, item, errors, prog.blocks, prog.networks)

    root_key = str(_real(Path(filename)) or filename) if filename else "<spec>"
    done.add(root_key)
    visit(text, filename, base_dir, [(root_key, None)], visit)
    if errors:
        raise NetdslError(by_position(errors), prog.sources)
    return prog


def _define(table: dict, item, errors: list, *others: dict) -> None:
    first = table.get(item.name) or next((o[item.name] for o in others if item.name in o), None)
    if first is not None:
        errors.append(Diagnostic("E0104", f"`{short(item.name)}` is defined twice", item.span,
                                 "defined again here",
                                 f"the first definition is at {first.span.where()}; rename one"))
        return
    table[item.name] = item


def _locate(item: ast.Import, base: Path, reach: Reach) -> tuple[Path, str] | Diagnostic:
    """The file an import names, and its key (the resolved path), or why it cannot be read.

    Like a compiler's include path: next to the importing file first, then in each
    import-path directory; ``std/...`` in the standard library. Whichever is found
    must lie, symlinks resolved, where ``reach`` allows, or any ``*.net`` on the
    machine could be read and quoted in an error."""
    path = item.path
    if path.startswith(STDLIB_PREFIX):
        candidates = [stdlib_dir() / path[len(STDLIB_PREFIX):]]
    elif Path(path).is_absolute():
        return _outside(item, "an absolute path")
    else:
        candidates = [base / path] + [d / path for d in reach.import_dirs]
    outside = False
    for target in candidates:
        # Where a candidate leads is decided from its name and the links on the way, before
        # anything there is opened: whether a file exists outside is none of the spec's business.
        real = _real(target)
        if real is None or not reach.allows(real):
            outside = True
            continue
        info = _stat(target)
        if isinstance(info, OSError) and info.errno in (errno.ENOENT, errno.ENOTDIR):
            continue
        return target, str(real)
    if outside:
        return _outside(item, "outside the spec's directory")
    searched = "" if not reach.import_dirs else " or in " + ", ".join(map(_shown, reach.import_dirs))
    return Diagnostic("E0105", f"spec file not found: {_shown(candidates[0])}", item.span, "no such file",
                      "check the path; imports are looked up next to the importing file" + searched
                      + (", then in each --import-path directory" if not searched else ""))


def _outside(item: ast.Import, what: str) -> Diagnostic:
    return Diagnostic("E0114", f"import outside the import path: `{short(item.path)}`", item.span, what,
                      "imports read files under the root spec's directory, the standard library "
                      "(`std/...`) and --import-path directories; add the file's directory with "
                      "--import-path DIR (API: import_path=[DIR]) and import it by a relative path")


def _display(path: Path) -> str:
    # Not recorded for the check cache: the path was just located (its realpath and
    # stat are recorded), and the working directory is part of the cache's key.
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError, RuntimeError):
        return str(path)
