"""What an editor asks about a spec while it is being written: its diagnostics,
the modules a line emits (or the values a ``let`` takes, the parameters an ``init``
sets), where a name is defined, and what may be typed next.

Positions are netdsl's own: 1-based lines and columns counted in characters.
The language server (lsp.py) converts them to the protocol's; keeping the
answers free of it lets them be tested without a client, and nothing here
imports torch or pygls.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from .. import api, ir
from ..analysis.counts import analyse, counted, layer_macs, layer_params, merge_macs, scope_type, type_name
from ..check.checker import Checker
from ..check.values import POISON, show
from ..diagnostics import Diagnostic, NetdslError
from ..grant import Grant
from ..ir.walk import children
from ..layers import LAYERS, REQUIRED
from ..limits import Limits
from ..span import Span
from ..syntax import ast
from ..syntax.loader import STDLIB_PREFIX, Program, check_nesting, decode, load, read_source, stdlib_dir
from ..syntax.parser import parse

# ---------------------------------------------------------------- diagnostics


@dataclass
class Checked:
    """One document checked: the networks that passed, and every diagnostic found.

    ``module`` is the document's own syntax tree (None where it did not parse), which
    ``index`` then needs not parse again; ``program`` what the document loaded as
    (None where loading failed), for the lines that name a block or a network;
    ``lets`` the values of its own ``let``s, from the networks that passed (and, in a
    library of blocks, its top-level ones); ``counts`` those of its repetition counts
    (``unit(64) * (depths[i] - 1)``), named ``*``.
    """

    networks: list[ir.Network]
    diagnostics: list[Diagnostic]
    module: ast.Module | None = None
    program: Program | None = None
    lets: list[LetValues] = field(default_factory=list)
    counts: list[LetValues] = field(default_factory=list)


@dataclass
class LetValues:
    """The values a ``let`` (or a repetition count) took, as the spec writes them, in the
    order first seen: a ``let`` in a block has one per distinct instance, in a loop one
    per turn."""

    name: str
    span: Span
    values: dict[str, None] = field(default_factory=dict)  # a set that keeps its order
    more: bool = False  # there were more than MAX_HOVER_ROWS

    def add(self, shown: str) -> None:
        if shown not in self.values:
            if len(self.values) < MAX_HOVER_ROWS:
                self.values[shown] = None
            else:
                self.more = True


class _Recorder(Checker):
    """A checker that also keeps the values of the ``let``s and repetition counts it is
    given (keyed by the identity of their expression), as it evaluates them."""

    def __init__(self, program: Program, limits: Limits, lets: dict[int, ast.Let | ast.Repeat],
                 memo_table: dict, grant: Grant | None = None):
        self.watched = lets
        self.seen: dict[int, LetValues] = {}
        super().__init__(program, limits, grant=grant)  # which evaluates the top-level lets
        # A table of this check's own: the shared one replays an instance checked before,
        # in an earlier check of the same text, without evaluating its lets again.
        self._memo = memo_table

    def value(self, expr, env, init: bool = False):
        v = super().value(expr, env, init)
        let = self.watched.get(id(expr))
        if let is not None and v is not POISON:
            kept = self.seen.get(id(let))
            if kept is None:
                kept = self.seen[id(let)] = (LetValues(let.name, let.span) if isinstance(let, ast.Let)
                                             else LetValues("*", let.span))
            kept.add(show(v))
        return v


def _lets_of(program: Program, filename: str | None) -> dict[int, ast.Let | ast.Repeat]:
    """The ``let`` statements and repetitions written in ``filename``, at the top level and
    in every body, by the identity of their expression (a repetition's count)."""
    todo: list = [d for d in (*program.lets, *program.blocks.values(), *program.networks.values())
                  if d.span.file == filename]
    found: dict[int, ast.Let | ast.Repeat] = {}
    while todo:
        node = todo.pop()
        if isinstance(node, (list, tuple)):
            todo.extend(node)
        elif isinstance(node, ast.Let):
            found[id(node.value)] = node
        elif isinstance(node, ast.Repeat):
            if not isinstance(node.count, ast.Number):  # `* 3` says its count already
                found[id(node.count)] = node
            todo.append(node.unit)
        elif is_dataclass(node) and not isinstance(node, (ast.Expr, Span)):
            todo.extend(getattr(node, f.name) for f in fields(node))
    return found


def _merge(into: dict[int, LetValues], recorded: dict[int, LetValues]) -> None:
    for key, got in recorded.items():
        kept = into.setdefault(key, LetValues(got.name, got.span))
        for shown in got.values:
            kept.add(shown)
        kept.more |= got.more


def check(text: str, filename: str | None, base: Path, limits: Limits | None = None,
          grant: Grant | None = None) -> Checked:
    """Check a document's text as ``netdsl check`` checks the saved file (``grant``:
    as ``--allow-module`` gives it, for the spec's externs).

    It is ``netdsl.compile`` on text that is not on disk yet, with imports relative
    to ``base``. Two cases differ, on purpose: a file with no network (a library
    of blocks) has each of its blocks checked without an input shape
    (``Checker.library``), where ``check`` would only say E0107; a file with several
    networks has each checked, where ``check`` would ask which one.

    >>> c = check("network n() { input [3, 8, 8]\\n conv2d(4, 9) }", "n.net", Path("."))
    >>> [(d.code, d.span.line, d.span.column) for d in c.diagnostics]
    [('E0304', 2, 12)]
    """
    limits = limits or Limits()
    with api._gc_paused():
        module = None
        try:
            # As read_source would: the size limit and NUL bytes are refused here too.
            text = decode(text.encode("utf-8", "surrogatepass"), filename, limits)
            # The document alone first, as load() parses it (which then finds it in the
            # parser's cache): a text that does not parse is parsed once, not again by index().
            check_nesting(text, filename, limits)
            module = parse(text, filename, limits)
            program = load(text, filename, base, limits)
        except NetdslError as e:
            return Checked([], [_in_the_server(d) for d in e.diagnostics], module)
        nets: list[ir.Network] = []
        diags: dict[tuple, Diagnostic] = {}
        watched = _lets_of(program, filename)
        lets: dict[int, LetValues] = {}
        memo_table: dict = {}
        for name in program.root_networks:
            checker = _Recorder(program, limits, watched, memo_table, grant)
            try:
                net = checker.network(name)
                api.check_limits(net, limits, program.sources)
                nets.append(net)
                _merge(lets, checker.seen)
            except NetdslError as e:
                # Networks sharing a block repeat its errors; say each once.
                for d in e.diagnostics:
                    diags.setdefault(_key(d), d)
        if not program.root_networks:
            # A library: its top-level lets are known without a network, and its blocks'
            # mistakes that no input shape decides (Checker.library).
            checker = _Recorder(program, limits, watched, memo_table, grant)
            if not checker.diags:
                _merge(lets, checker.seen)
            for d in checker.library(filename):
                diags.setdefault(_key(d), d)
    kept = list(lets.values())
    return Checked(nets, list(diags.values()), module, program, [v for v in kept if v.name != "*"],
                   [v for v in kept if v.name == "*"])


def _in_the_server(d: Diagnostic) -> Diagnostic:
    """``d`` with a help the language server can stand by: E0401's says to raise the size
    limit with ``--limit``, which ``netdsl check`` takes and the server does not."""
    if d.code != "E0401":
        return d
    return replace(d, help="the language server keeps to this limit (max_file_bytes); on the command line, "
                           "`netdsl check --limit max_file_bytes=N` checks a larger file")


def _key(d: Diagnostic) -> tuple:
    s = d.span
    where = (s.file, s.line, s.column, s.end_line, s.end_column) if s else None
    return (d.code, d.message, where, d.label, d.help, d.notes)


@dataclass(frozen=True)
class Placed:
    """A diagnostic placed in the edited document.

    ``span`` is where it shows there (None: at the start of the document);
    ``elsewhere`` is its own span when that lies in another file, whose import
    is then ``span``.
    """

    diagnostic: Diagnostic
    span: Span | None
    elsewhere: Span | None = None

    @property
    def message(self) -> str:
        """The message, then its label, notes and help, one to a line.

        >>> Placed(Diagnostic("E0101", "unknown name `x`", None, "not defined", "define it"), None).message
        'unknown name `x`\\nnot defined\\nhelp: define it'
        """
        d = self.diagnostic
        first = f"{self.elsewhere.where()}: {d.message}" if self.elsewhere else d.message
        lines = [first] + ([d.label] if d.label else []) + [f"note: {n}" for n in d.notes]
        return "\n".join(lines + ([f"help: {d.help}"] if d.help else []))


def place(diagnostics: list[Diagnostic], filename: str | None, index: Index | None) -> list[Placed]:
    """Put each diagnostic on the edited document: those in an imported file go
    on the import that brings that file in, or at the start if none is known.

    >>> d = Diagnostic("E0101", "unknown name", Span(file="lib.net", line=3, column=5))
    >>> p = place([d], "main.net", None)[0]
    >>> p.span is None, p.elsewhere.line
    (True, 3)
    """
    out = []
    for d in diagnostics:
        span = d.span
        if span is None or _same_file(span.file, filename):
            out.append(Placed(d, span))
        else:
            via = index.origin.get(_resolve(span.file)) if index and span.file else None
            out.append(Placed(d, via, span))
    return out


def _same_file(a: str | None, b: str | None) -> bool:
    if a == b:
        return True
    return a is not None and b is not None and _resolve(a) == _resolve(b)


def _resolve(name: str) -> Path:
    try:
        return Path(name).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL in the name
        return Path(name)


# ---------------------------------------------------------------- hover


@dataclass(frozen=True)
class Row:
    """One module (or combinator) of a checked network, for a hover."""

    name: str
    type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int | None  # None: fvcore counts nothing for this op
    span: Span | None


def rows_at(net: ir.Network, filename: str | None, line: int) -> list[Row]:
    """Every module and combinator of ``net`` written on ``line`` of ``filename``,
    with its dotted name, shapes, parameters and MACs (a scope's are its totals).

    A line inside a block gives one row per instance of the block.

    >>> import netdsl
    >>> net = netdsl.compile("network n() { input [3, 8, 8]\\n stem: conv2d(4, 3) }")
    >>> [(r.name, r.type, r.out_shape, r.params) for r in rows_at(net, None, 2)]
    [('stem', 'Conv2d', (4, 6, 6), 112)]
    """
    return [_row(node, name) for node, name in _walk(net)
            if node.span is not None and node.span.line == line and node.span.file == filename]


def _walk(net: ir.Network):
    """Every node of ``net``, itself first, in spec order, with the dotted name it is shown by."""
    todo: list[tuple[ir.Node, str]] = [(net, "")]
    while todo:
        node, name = todo.pop()
        yield node, name
        todo.extend(reversed(_children(node, name)))


def _children(node: ir.Node, name: str) -> list[tuple[ir.Node, str]]:
    """The nodes directly under ``node``, each with the dotted name it is shown by."""
    inner = name + "." if name else ""
    if isinstance(node, ir.Network):
        return [(n, _name(n, "")) for n in node.body]
    if isinstance(node, ir.Scope):
        return [(n, _name(n, inner)) for n in node.body]
    # Combinators open no scope: their modules are named in the enclosing one.
    prefix = name.rpartition("(")[0]
    return [(n, _name(n, prefix)) for n in children(node)]


def _name(node, prefix: str) -> str:
    # A reused module or a called function is no row of the module table: shown apart.
    if isinstance(node, ir.Layer) and node.reuse:
        return f"{prefix}{node.name} (again)"
    if isinstance(node, ir.Layer) and node.functional:
        return f"{prefix}({node.kind})"
    if isinstance(node, (ir.Layer, ir.Scope)):
        return prefix + node.name
    what = f"side {node.name}" if isinstance(node, ir.Side) else node.kind
    return f"{prefix}({what})"


def _row(node, name: str) -> Row:
    if isinstance(node, ir.Network):
        # The totals of `netdsl check`, in eval mode: a side head's MACs are left out.
        a = analyse(node)
        return Row(node.name, f"network {node.cls}", a.input, a.output_shape, a.params, a.macs,
                   node.span)
    if isinstance(node, ir.Layer):
        kind = type_name(node)
    elif isinstance(node, ir.Scope):
        kind = scope_type(node)
    else:
        kind = node.kind
    leaves = list(_leaves(node))
    layers = [n for n in leaves if isinstance(n, ir.Layer)]
    merges = sum(merge_macs(n) for n in leaves if isinstance(n, ir.Merge))
    is_counted = any(counted(n) for n in layers) or merges > 0
    macs = sum(layer_macs(n) for n in layers) + merges if is_counted else None
    return Row(name, kind, tuple(node.in_shape), tuple(node.out_shape),
               sum(layer_params(n) for n in layers), macs, node.span)


def _leaves(node):
    """The layers and merges under ``node``: what does the work a row counts."""
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, (ir.Layer, ir.Merge)):
            yield n
        else:
            todo.extend(child for child, _ in _children(n, ""))


MAX_HOVER_ROWS = 12


def hover(checked: Checked, filename: str | None, line: int) -> str | None:
    """Markdown for a hover on ``line`` of ``filename``, from what checking it found; None
    where that says nothing of the line.

    A line that emits modules shows them from the first network that has any there:
    each one's dotted name, type, shapes, parameters and MACs (one row per instance
    of a block). The line that names a network shows its totals, also for a variant
    (``network resnet50 = resnet(depth = 50)``); a block's header, its instances; a
    ``let``, the values it took; an ``init``, the parameters it sets.

    >>> c = check("network n() { input [3, 8, 8]\\n stem: conv2d(4, 3) }", None, Path("."))
    >>> print(hover(c, None, 2))
    network `n`
    <BLANKLINE>
    | module | type | input → output | params | MACs |
    |---|---|---|--:|--:|
    | `stem` | Conv2d | [3, 8, 8] → [4, 6, 6] | 112 | 3,888 |
    """
    for net in checked.networks:
        rows = rows_at(net, filename, line) or _headed(checked.program, net, filename, line)
        if rows:
            return _table(net, rows)
    lets = [v for v in checked.lets if v.span.line == line and v.span.file == filename]
    if lets:
        return "\n\n".join(_let(v) for v in lets)
    for net in checked.networks:
        inits = [(f"{name}.{param}", type_name(node), scheme)
                 for node, name in _walk(net) if isinstance(node, ir.Layer)
                 for param, scheme in node.init.items()
                 if scheme.span is not None and scheme.span.line == line and scheme.span.file == filename]
        if inits:
            return _initialised(net, inits)
    return None


def _headed(program: Program | None, net: ir.Network, filename: str | None, line: int) -> list[Row]:
    """The rows of the definition whose header is ``line``: a network's totals, or a
    block's instances in ``net``."""
    if program is None:
        return []
    named = program.networks.get(net.name)
    if named is not None and named.span.line == line and named.span.file == filename:
        return [_row(net, net.name)]
    blocks = {name for name, b in program.blocks.items() if b.span.line == line and b.span.file == filename}
    return [_row(node, name) for node, name in _walk(net) if isinstance(node, ir.Scope) and node.block in blocks]


def _table(net: ir.Network, rows: list[Row]) -> str:
    out = [f"network `{net.name}`", "", "| module | type | input → output | params | MACs |",
           "|---|---|---|--:|--:|"]
    for r in rows[:MAX_HOVER_ROWS]:
        macs = "—" if r.macs is None else f"{r.macs:,}"
        out.append(f"| `{r.name}` | {r.type} | {_shape(r.in_shape)} → {_shape(r.out_shape)} "
                   f"| {r.params:,} | {macs} |")
    return "\n".join(out) + _more(len(rows))


def _more(n: int) -> str:
    return f"\n\n… and {n - MAX_HOVER_ROWS} more ({n} in all)" if n > MAX_HOVER_ROWS else ""


def _let(v: LetValues) -> str:
    if len(v.values) == 1 and not v.more:
        return f"`{v.name}` = `{next(iter(v.values))}`"
    more = ["- …"] if v.more else []
    return "\n".join([f"`{v.name}` takes {'these' if v.more else len(v.values)} values:", ""]
                     + [f"- `{shown}`" for shown in v.values] + more)


def _initialised(net: ir.Network, inits: list[tuple[str, str, ir.InitScheme]]) -> str:
    schemes = list(dict.fromkeys(f"{s.fn}({', '.join(f'{k} = {show(a)}' for k, a in s.args.items())})"
                                 for _, _, s in inits))
    out = [f"network `{net.name}`: this `init` sets {len(inits)} parameter{'s' if len(inits) > 1 else ''}"
           + (f" with `{schemes[0]}`" if len(schemes) == 1 else ""), "", "| parameter | type |", "|---|---|"]
    for name, kind, _ in inits[:MAX_HOVER_ROWS]:
        out.append(f"| `{name}` | {kind} |")
    return "\n".join(out) + _more(len(inits))


def _shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


MAX_DIFF_LINES = 5_000


def line_before(old: str, new: str, line: int) -> int | None:
    """The line of ``old`` that ``line`` of ``new`` was before an edit made one from the
    other; None if that line is new or was changed.

    >>> old = "a\\nb\\nc"
    >>> line_before(old, "a\\nx\\nb\\nc", 3), line_before(old, "a\\nx\\nb\\nc", 2), line_before(old, "a\\nB\\nc", 3)
    (2, None, 3)
    """
    a, b = old.split("\n"), new.split("\n")
    if not 0 < line <= len(b):
        return None
    head, tail = _unchanged_ends(a, b)
    if line <= head:
        return line
    if line > len(b) - tail:
        return line - len(b) + len(a)
    at = line - 1 - head
    for i, j, n in _matching(a[head:len(a) - tail], b[head:len(b) - tail]):
        if j <= at < j + n:
            return head + i + at - j + 1
    return None


def lines_kept(old: str, new: str) -> dict[int, int]:
    """Every line of ``old`` that an edit left as it was, mapped to where it is in ``new``
    (1-based): ``line_before`` the other way round, for all lines at once.

    >>> lines_kept("a\\nb\\nc", "a\\nx\\nb\\nC")
    {1: 1, 2: 3}
    """
    a, b = old.split("\n"), new.split("\n")
    head, tail = _unchanged_ends(a, b)
    kept = {n: n for n in range(1, head + 1)}
    kept.update((len(a) - k, len(b) - k) for k in range(tail))
    for i, j, n in _matching(a[head:len(a) - tail], b[head:len(b) - tail]):
        kept.update((head + i + k + 1, head + j + k + 1) for k in range(n))
    return kept


def _unchanged_ends(a: list[str], b: list[str]) -> tuple[int, int]:
    """How many lines at the start, and then at the end, two texts share: an edit leaves
    the lines before and after it as they were, and only those between are compared."""
    head, most = 0, min(len(a), len(b))
    while head < most and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < most - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, tail


def _matching(a: list[str], b: list[str]) -> list[tuple[int, int, int]]:
    if len(a) > MAX_DIFF_LINES or len(b) > MAX_DIFF_LINES:
        return []  # a rewrite, not an edit: too slow to follow, and little would match
    return [(m.a, m.b, m.size) for m in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()]


# ---------------------------------------------------------------- definitions


@dataclass(frozen=True)
class Definition:
    """A top-level name: a block, a network or a ``let``, where it is defined and
    its parameters as written (``stride = 1``)."""

    name: str
    kind: str
    span: Span
    params: tuple[str, ...] = ()


@dataclass
class Index:
    """The names a document can use, from itself and everything it imports.

    Unlike loading, indexing goes on past errors: a broken imported file only
    hides its own names. ``origin`` maps every imported file to the import in
    the document that brings it in, directly or not.
    """

    definitions: dict[str, Definition]
    imports: list[tuple[Span, Path]]
    origin: dict[Path, Span]


def index(text: str, filename: str | None, base: Path, limits: Limits | None = None,
          module: ast.Module | None = None) -> Index | None:
    """Index a document and its imports; None if the document itself does not parse.
    ``module``: the document's syntax tree, where the caller has it already.

    >>> idx = index("block unit(c, stride = 1) { conv2d(c, 3) }", None, Path("."))
    >>> idx.definitions["unit"].params
    ('c', 'stride = 1')
    """
    limits = limits or Limits()
    module = module if module is not None else _parse(text, filename, limits)
    if module is None:
        return None
    idx = Index({}, [], {})
    own: dict[str, Definition] = {}
    lines = text.splitlines()
    for item in module.items:
        if isinstance(item, ast.Import):
            target = _target(item.path, base)
            idx.imports.append((item.span, target))
            _visit(target, item.span, idx, limits, 1)
        else:
            _define(own, item, lines)
    idx.definitions.update(own)  # the document's own names win over imported ones
    return idx


def parse_or_none(text: str, filename: str | None, limits: Limits | None = None) -> ast.Module | None:
    """The syntax tree of a document, or None where it does not parse or is over the
    size limit (which is not read through).

    >>> parse_or_none("network n() {", None) is None, len(parse_or_none("let a = 1", None).items)
    (True, 1)
    """
    return _parse(text, filename, limits or Limits())


def _parse(text: str, filename: str | None, limits: Limits) -> ast.Module | None:
    if _too_big(text, limits):
        return None  # `check` refuses it (E0401); indexing it would stall every request
    try:
        check_nesting(text, filename, limits)
        return parse(text, filename, limits)
    except (NetdslError, RecursionError):
        return None


def _too_big(text: str, limits: Limits) -> bool:
    """Whether ``text`` is over ``max_file_bytes`` in UTF-8, without encoding a text
    that is over it in characters already."""
    return len(text) > limits.max_file_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_file_bytes


def _target(path: str, base: Path) -> Path:
    if path.startswith(STDLIB_PREFIX):
        return _resolve(str(stdlib_dir() / path[len(STDLIB_PREFIX):]))
    return _resolve(str(base / path))


def _visit(path: Path, via: Span, idx: Index, limits: Limits, depth: int) -> None:
    if path in idx.origin or depth > limits.max_import_depth or path.suffix != ".net":
        return
    idx.origin[path] = via
    try:
        text = read_source(path, limits)
    except NetdslError:
        return
    module = _parse(text, str(path), limits)
    if module is None:
        return
    lines = text.splitlines()
    for item in module.items:
        if isinstance(item, ast.Import):
            _visit(_target(item.path, path.parent), via, idx, limits, depth + 1)
        elif item.name not in idx.definitions:
            _define(idx.definitions, item, lines)


def _define(table: dict, item, lines: list[str]) -> None:
    if isinstance(item, ast.Let):
        table.setdefault(item.name, Definition(item.name, "let", item.span))
        return
    kind = "block" if isinstance(item, ast.BlockDef) else "network"
    params = tuple(_written(p, lines) for p in getattr(item, "params", ()))
    table.setdefault(item.name, Definition(item.name, kind, item.span, params))


def _written(param: ast.Param, lines: list[str]) -> str:
    if param.default is None:
        return param.name
    # ast.Expr (netdsl/syntax) does not declare the span each expression class has;
    # unused-ignore keeps this line clean once it does.
    s = param.default.span  # type: ignore[attr-defined, unused-ignore]
    if s.end_line == s.line and s.end_column and 0 < s.line <= len(lines):
        return f"{param.name} = " + " ".join(lines[s.line - 1][s.column - 1:s.end_column - 1].split())
    return f"{param.name} = …"


def definition(text: str, idx: Index, line: int, column: int) -> Span | None:
    """Where the name under the cursor is defined; on an import, the imported file.

    >>> text = "block unit(c) { conv2d(c, 3) }\\nnetwork n() { input [3, 8, 8]\\n unit(4) }"
    >>> definition(text, index(text, None, Path(".")), 3, 3).line
    1
    """
    for span, target in idx.imports:
        if span.line == line:
            return Span(file=str(target), line=1, column=1, end_line=1, end_column=1)
    if in_comment(text, line, column):
        return None
    word = word_at(text, line, column)
    found = idx.definitions.get(word) if word else None
    return found.span if found else None


def in_comment(text: str, line: int, column: int) -> bool:
    """Whether a position is in a comment: a word there names nothing.

    >>> in_comment('relu  # see "unit"', 1, 12), in_comment('f("#") # x', 1, 5), in_comment("relu", 9, 1)
    (True, False, False)
    """
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return False
    code, i = lines[line - 1], 0
    while i < len(code) and i < column - 1:
        if code[i] == "#":
            return True
        if code[i] == '"':
            i += 1
            while i < len(code) and code[i] != '"':
                i += 2 if code[i] == "\\" else 1
        i += 1
    return False


_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def word_at(text: str, line: int, column: int) -> str | None:
    """The identifier at (or just before) a position.

    >>> word_at("  bottleneck(64)", 1, 5), word_at("  bottleneck(64)", 1, 13), word_at("a  b", 1, 3)
    ('bottleneck', 'bottleneck', None)
    """
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    for m in _WORD.finditer(lines[line - 1]):
        if m.start() < column <= m.end() + 1 and not m.group().isdigit():
            return m.group()
    return None


# ---------------------------------------------------------------- completion


@dataclass(frozen=True)
class Completion:
    """One completion: ``kind`` is layer, block, function, argument, value, variable,
    label or keyword; ``sort`` its place in the list ("" after the others)."""

    label: str
    kind: str
    detail: str = ""
    doc: str = ""
    insert: str | None = None
    sort: str = ""


def completions(text: str, idx: Index | None, line: int, column: int,
                limits: Limits | None = None) -> list[Completion]:
    """What may be typed at a position (complete.py, without the names in scope): inside
    a layer's or block's parentheses the arguments not given yet, in signature order,
    and everywhere the layers, blocks and functions. In a text over
    ``max_file_bytes``, which ``check`` refuses, the parentheses are not looked for:
    that reads the text from its start, on every keystroke.

    >>> [c.label for c in completions("conv2d(8, ", None, 1, 11)][:3]
    ['kernel_size', 'stride', 'padding']
    """
    from .complete import completions as complete  # which reads this module

    return complete(text, idx, line, column, limits)


def signature(kind: str) -> str:
    """A layer's signature as the language reference writes it.

    >>> signature("dropout")
    'dropout(p = 0.5, inplace = false)'
    """
    args = [a.name if a.default is REQUIRED else f"{a.name} = {_show(a.default)}"
            for a in LAYERS[kind].args]
    return f"{kind}({', '.join(args)})"


def _show(v) -> str:
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "none"}[v]
    return f'"{v}"' if isinstance(v, str) else repr(v)


def open_call(text: str, line: int, column: int) -> str | None:
    """The name whose argument list the position is directly inside, if any.

    >>> open_call("conv2d(8, [3, 3], ", 1, 19), open_call("conv2d(8, [3, ", 1, 15)
    ('conv2d', None)
    >>> open_call('f("(", # (\\n a', 2, 3)
    'f'
    """
    found = call_before(text, line, column)
    return found[0] if found else None


def call_before(text: str, line: int, column: int) -> tuple[str | None, str, str] | None:
    """The innermost bracket open at a position: the name before it (None for a bracket
    that is not a call's), the text from just after it to the position, and the bracket;
    None outside any bracket.

    >>> call_before("conv2d(8, [3, 3], stride = ", 1, 28)
    ('conv2d', '8, [3, 3], stride = ', '(')
    """
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    head = "\n".join(lines[:line - 1] + [lines[line - 1][:max(0, column - 1)]])
    stack: list[tuple[str | None, int]] = []
    i, n = 0, len(head)
    while i < n:
        ch = head[i]
        if ch == "#":
            end = head.find("\n", i)
            i = n if end < 0 else end
        elif ch == '"':
            i += 1
            while i < n and head[i] not in '"\n':
                i += 2 if head[i] == "\\" else 1
        elif ch == "(":
            m = re.search(r"([A-Za-z_][A-Za-z_0-9]*)\s*$", head[max(0, i - 200):i])
            stack.append((m.group(1) if m else None, i + 1))
        elif ch in "[{":
            stack.append((None, i + 1))
        elif ch in ")]}" and stack:
            stack.pop()
        i += 1
    if not stack:
        return None
    name, after = stack[-1]
    return name, head[after:], head[after - 1]
