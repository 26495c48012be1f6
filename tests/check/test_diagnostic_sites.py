"""Every place in netdsl that reports a diagnostic (a *site*) has a fixture that
gives that site's code at the position its diagnostic is reported at.

One fixture per code is not enough: a code is reported from many places, and a
mutation that swapped the code of one of them (the empty `concat`'s E0302 for
E0301) passed every test, because another place that reports E0302 held the
code's only fixture. So:

1. :func:`scan` finds every site statically: a call in netdsl/ to a maker of
   diagnostics (``Diagnostic``, ``LayerError`` and ``ShapeError``, and every
   helper that passes its own ``code`` parameter on to one of them) whose code
   argument is a literal ``"E0xxx"``, recorded as (file, line of the literal,
   code). A call whose code is computed is listed in :data:`COMPUTED` with its
   reason (the literals it picks from are sites too), or the test fails.
2. :class:`Recorder` wraps the constructors of ``Diagnostic`` and ``LayerError``
   so that each remembers the site that made it, carried through the copies
   that add notes or turn a ``LayerError`` into a diagnostic; :func:`observe`
   runs every fixture (tests/fixtures/errors and tests/fixtures/sites) under it.
3. A site is pinned when a fixture's ``# expect: CODE at LINE:COL`` names the
   code and position of the first diagnostic it reports, and that diagnostic
   came from the site. :data:`API_CASES` pin the few sites no spec reaches (a
   Python value given to ``compile``, ``sweep --where``, ``fmt``), and
   :data:`UNREACHABLE` lists the sites nothing reaches, each with its reason.

To pin a new site: add tests/fixtures/sites/E0xxx_what.net, a minimal spec that
makes that site report, with the header of tests/errors_doc.py (``# expect:``,
optionally ``# limit:``/``# set:``/``# export:``) and one comment line saying what
it exercises. A site whose case teaches something goes to tests/fixtures/errors
with its example in netdsl/errors.md instead.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from netdsl import Limits
from netdsl.diagnostics import Diagnostic, NetdslError
from netdsl.layers.base import LayerError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import errors_doc  # noqa: E402

PACKAGE = ROOT / "netdsl"
SITE_FIXTURES = ROOT / "tests" / "fixtures" / "sites"
_CODE = re.compile(r"E\d{4}")

# The classes that carry a code (name → position of the code argument); every
# function that passes a parameter of its own as the code to one of them is found
# by the scan and joins them.
BASE_MAKERS = {("netdsl.diagnostics", "Diagnostic"): 0, ("netdsl.layers.base", "LayerError"): 0}

# Calls whose code is computed, not written at the call: (file, function, the code
# argument as written) → why. The literals of "E0xxx" in the same function that
# no other call takes are the sites such a call reports from.
COMPUTED = {
    ("netdsl/check/checker.py", "Checker.typed", "code"):
        "one check of a value's type for conditions (E0214) and counts or lists (E0206)",
    ("netdsl/check/checker.py", "Checker._foreign_ok", "problem[0]"):
        "the first problem of a Python value given to compile(): one message shape for four problems",
    ("netdsl/check/checker.py", "Checker.repeat", "code"):
        "a repetition count over the limit (E0403) or negative (E0204): one message",
    ("netdsl/check/dataflow.py", "input_shape", "'E0309' if bad < 1 else 'E0407'"):
        "an `input` dimension below 1 (E0309) or over max_dim (E0407): one message",
    ("netdsl/layers/shapes.py", "window", "code"):
        "a window larger than its input: a pool's (E0305) or a convolution's (E0304)",
}

# "E0xxx" literals that report nothing: (file, function, the expression around the
# literal as written) → why.
NOT_SITES = {
    ("netdsl/tools/ide.py", "_in_the_server", "d.code != 'E0401'"):
        "the language server's own help for a file over its size limit, given to the check's E0401",
    ("netdsl/check/checker.py", "Checker._set_value", "d.code == 'E0101'"):
        "reads the code of a diagnostic made elsewhere, to add a note to it",
    ("netdsl/syntax/parser.py", "_with_unclosed", "('E0001', 'E0004')"):
        "reads the code of a syntax error made elsewhere, to add the unclosed bracket to it",
}

# Calls to a maker whose first argument is not a code: (file, function) → why.
CODELESS = {
    ("netdsl/tools/lsp.py", "_done"):
        "the language server's report of an exception inside netdsl, which has no code",
}


@dataclass(frozen=True, order=True)
class Site:
    """A place that makes a diagnostic: the literal of its code."""

    file: str  # relative to the repository: netdsl/check/combinators.py
    line: int  # the line of the literal
    code: str
    function: str = field(compare=False)
    message: str = field(compare=False)  # the message as written, `{}` for what it fills in
    call: str = field(compare=False, repr=False, default="")  # the call that reports, as ast.unparse gives it

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.code} in {self.function}: {self.message!r}"


@dataclass(frozen=True)
class Call:
    """A call to a maker of diagnostics, and where its code comes from."""

    file: str
    function: str
    start: int
    end: int
    how: str  # "literal", "caller" (the code is a parameter), "copy" (X.code), "computed", "codeless"
    code: str  # the code argument as written
    sites: tuple[Site, ...] = ()  # "literal": its site; "computed": the sites it picks from
    source: str | None = None  # "copy": the local whose site the new object carries


def _message_text(node: ast.AST | None) -> str:
    if node is None:
        return ""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _message_text(node.left) + _message_text(node.right)
    return "{}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@dataclass
class _Module:
    path: Path
    file: str
    name: str
    tree: ast.Module
    parents: dict[ast.AST, ast.AST]
    functions: dict[ast.AST, str]  # every node → the qualified name of the function around it
    bound: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name → maker


def _module(file: str, text: str) -> _Module:
    """One module of netdsl, parsed: ``file`` relative to the repository."""
    tree = ast.parse(text, file)
    parents: dict[ast.AST, ast.AST] = {}
    functions: dict[ast.AST, str] = {}

    def visit(node: ast.AST, qual: str) -> None:
        for child in ast.iter_child_nodes(node):
            parents[child] = node
            inner = qual
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = f"{qual}.{child.name}" if qual else child.name
            functions[child] = qual if isinstance(child, ast.ClassDef) else inner
            visit(child, inner)

    visit(tree, "")
    path = ROOT / file
    return _Module(path, file, _module_name(path), tree, parents, functions)


def _modules() -> list[_Module]:
    return [_module(path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8"))
            for path in sorted(PACKAGE.rglob("*.py"))]


def _callee(m: _Module, call: ast.Call) -> tuple[str, str] | None:
    return m.bound.get(call.func.id) if isinstance(call.func, ast.Name) else None


def _code_arg(call: ast.Call, index: int) -> ast.expr | None:
    if len(call.args) > index and not any(isinstance(a, ast.Starred) for a in call.args[:index + 1]):
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == "code"), None)


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    return [p.arg for p in (*a.posonlyargs, *a.args)]


def _bind(modules: list[_Module], makers: dict[tuple[str, str], int]) -> None:
    """Which local names call which maker, in each module: its own definitions and
    its imports (``from ..layers.base import LayerError as ShapeError``), re-exports too."""
    by_name = {m.name: m for m in modules}
    for m in modules:
        m.bound = {name: (mod, name) for mod, name in makers if mod == m.name}
    changed = True
    while changed:
        changed = False
        for m in modules:
            for node in ast.walk(m.tree):
                if not isinstance(node, ast.ImportFrom):
                    continue
                source = by_name.get(_resolve(m.name, m.path.name == "__init__.py", node))
                for alias in node.names:
                    target = source.bound.get(alias.name) if source else None
                    local = alias.asname or alias.name
                    if target is not None and m.bound.get(local) != target:
                        m.bound[local] = target
                        changed = True


def _makers(modules: list[_Module]) -> dict[tuple[str, str], int]:
    """The classes that carry a code, and every function that passes a parameter of its
    own on to one of them as the code (``err``, ``fail``, ``_merge_error``): name →
    position of the code argument."""
    makers = dict(BASE_MAKERS)
    while True:
        _bind(modules, makers)
        found = {}
        for m in modules:
            for fn in ast.walk(m.tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                params = _params(fn)
                for call in ast.walk(fn):
                    target = _callee(m, call) if isinstance(call, ast.Call) else None
                    if target is None:
                        continue
                    arg = _code_arg(call, makers[target])
                    if isinstance(arg, ast.Name) and arg.id in params:
                        owner = m.parents.get(fn)
                        if fn.name == "__init__" and isinstance(owner, ast.ClassDef):
                            found[(m.name, owner.name)] = params.index(arg.id) - 1
                        else:
                            found[(m.name, fn.name)] = params.index(arg.id)
        new = {k: v for k, v in found.items() if k not in makers}
        if not new:
            return makers
        makers.update(new)


@dataclass
class Scan:
    calls: list[Call]
    sites: list[Site]
    makers: dict[tuple[str, str], int]
    stray: list[str]  # "E0xxx" literals that are neither sites nor listed
    unlisted: list[str]  # computed codes that COMPUTED does not list
    stale: list[str]  # entries of COMPUTED, NOT_SITES or CODELESS that match nothing


def scan(modules: list[_Module] | None = None) -> Scan:
    """Every site in netdsl/ (or in ``modules``), found from the source alone."""
    modules = _modules() if modules is None else modules
    makers = _makers(modules)
    calls: list[Call] = []
    claimed: set[ast.AST] = set()
    computed: list[tuple[_Module, ast.Call, int, str, str]] = []
    unlisted, used = [], set()
    for m in modules:
        for call in ast.walk(m.tree):
            target = _callee(m, call) if isinstance(call, ast.Call) else None
            if target is None:
                continue
            arg = _code_arg(call, makers[target])
            fn = m.functions.get(call, "")
            where = dict(file=m.file, function=fn, start=call.lineno, end=call.end_lineno or call.lineno)
            written = ast.unparse(arg) if arg is not None else ""
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _CODE.fullmatch(arg.value):
                claimed.add(arg)
                args = call.args
                index = makers[target] + 1
                message = _message_text(args[index] if len(args) > index else None)
                site = Site(m.file, arg.lineno, arg.value, fn, message, ast.unparse(call))
                calls.append(Call(**where, how="literal", code=written, sites=(site,)))
            elif isinstance(arg, ast.Constant) and (m.file, fn) in CODELESS:
                used.add((m.file, fn))
                calls.append(Call(**where, how="codeless", code=written))
            elif isinstance(arg, ast.Name) and _is_param(m, call, arg.id):
                calls.append(Call(**where, how="caller", code=written))
            elif (isinstance(arg, ast.Attribute) and arg.attr == "code"
                  and isinstance(arg.value, ast.Name)):
                calls.append(Call(**where, how="copy", code=written, source=arg.value.id))
            elif (m.file, fn, written) in COMPUTED:
                used.add((m.file, fn, written))
                computed.append((m, call, makers[target], fn, written))
            else:
                unlisted.append(f"{m.file}:{call.lineno} in {fn or 'the module'}: "
                                f"the code `{written}` is computed")
    stray = []
    for m in modules:
        for node in ast.walk(m.tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and _CODE.fullmatch(node.value)) or node in claimed:
                continue
            parent = m.parents[node]
            key = (m.file, m.functions.get(node, ""), ast.unparse(parent))
            if key in NOT_SITES:
                used.add(key)
                claimed.add(node)
    for m, call, index, fn, written in computed:
        sites = []
        for node in _own_nodes(m, fn):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and _CODE.fullmatch(node.value) and node not in claimed):
                parent = m.parents[node]
                if isinstance(parent, ast.Tuple) and len(parent.elts) == 2:
                    message = _message_text(parent.elts[1])  # `problem = "E0215", "..."`
                else:
                    message = _message_text(call.args[index + 1] if len(call.args) > index + 1 else None)
                sites.append(Site(m.file, node.lineno, node.value, fn, message, ast.unparse(call)))
        calls.append(Call(m.file, fn, call.lineno, call.end_lineno or call.lineno, "computed",
                          written, tuple(sites)))
    claimed.update(n for m, _, _, fn, _ in computed for n in _own_nodes(m, fn))
    for m in modules:
        for node in ast.walk(m.tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and _CODE.fullmatch(node.value) and node not in claimed):
                stray.append(f"{m.file}:{node.lineno} in {m.functions.get(node) or 'the module'}: "
                             f"`{ast.unparse(m.parents[node])}` is no call to a maker of diagnostics")
    stale = [f"{k} matches nothing" for k in [*COMPUTED, *NOT_SITES, *CODELESS] if k not in used]
    sites = sorted({s for c in calls for s in c.sites})
    return Scan(calls, sites, makers, stray, unlisted, stale)


def _is_param(m: _Module, node: ast.AST, name: str) -> bool:
    fn = m.parents.get(node)
    while fn is not None and not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        fn = m.parents.get(fn)
    return fn is not None and name in _params(fn)


def _own_nodes(m: _Module, function: str) -> Iterator[ast.AST]:
    """The nodes inside ``function`` (not inside functions nested in it)."""
    for node in ast.walk(m.tree):
        if m.functions.get(node) == function:
            yield node


# ---------------------------------------------------------------- which site made a diagnostic

_SITE = "_made_at"  # the attribute the recorder gives a Diagnostic or a LayerError
UNKNOWN = Site("?", 0, "?", "?", "")  # made inside netdsl, but at no call the scan knows


class Recorder:
    """Wraps the constructors of ``Diagnostic`` and ``LayerError`` (ShapeError is the
    same class) so that each object remembers the site that made it, found by the
    frames of its caller: a literal site is the answer; a helper's call (``err``)
    sends the search to the helper's caller; a copy (``d.with_notes``, a LayerError
    turned into a diagnostic) takes the site of what it copies.

    ``swap`` simulates a mutation of netdsl: the objects a site makes get another code.
    """

    def __init__(self, found: Scan, swap: dict[Site, str] | None = None):
        self.swap = swap or {}
        self.calls: dict[str, list[Call]] = {}
        for c in found.calls:
            self.calls.setdefault(c.file, []).append(c)
        self.files: dict[str, str | None] = {}

    def install(self, mp: pytest.MonkeyPatch) -> None:
        recorder = self

        real_diagnostic = Diagnostic.__init__
        real_layer_error = LayerError.__init__

        def diagnostic(d, *args, **kwargs):
            real_diagnostic(d, *args, **kwargs)
            site = recorder.locate(sys._getframe(1), d.code, d.message)
            object.__setattr__(d, _SITE, site)
            if site in recorder.swap:
                object.__setattr__(d, "code", recorder.swap[site])

        def layer_error(e, *args, **kwargs):
            real_layer_error(e, *args, **kwargs)
            site = recorder.locate(sys._getframe(1), e.code, e.message)
            setattr(e, _SITE, site)
            if site in recorder.swap:
                e.code = recorder.swap[site]

        mp.setattr(Diagnostic, "__init__", diagnostic)
        mp.setattr(LayerError, "__init__", layer_error)

    def _file(self, filename: str) -> str | None:
        if filename not in self.files:
            try:
                rel = Path(filename).resolve().relative_to(ROOT).as_posix()
            except ValueError:
                rel = None
            self.files[filename] = rel if rel is not None and rel.startswith("netdsl/") else None
        return self.files[filename]

    def locate(self, frame, code: str, message: str) -> Site | None:
        """The site whose call ``frame`` (the constructor's caller) is in, or None
        where the object is made outside netdsl (a test, a doctest)."""
        while frame is not None:
            file = self._file(frame.f_code.co_filename)
            if file is None:
                return None
            line = frame.f_lineno
            around = [c for c in self.calls.get(file, ()) if c.start <= line <= c.end]
            if not around:
                return UNKNOWN
            call = min(around, key=lambda c: c.end - c.start)
            if call.how == "literal":  # of another code: made by a call the scan missed
                return call.sites[0] if call.sites[0].code == code else UNKNOWN
            if call.how == "caller":
                frame = frame.f_back
                continue
            if call.how == "copy":
                return getattr(frame.f_locals.get(call.source or ""), _SITE, UNKNOWN)
            if call.how == "computed":
                return _pick(call.sites, code, message)
            return None  # codeless
        return None


def _pick(sites: tuple[Site, ...], code: str, message: str) -> Site:
    """Of the literals a computed code picks from, the one it picked: by code, and
    where two give one code, by the words of their messages."""
    fits = [s for s in sites if s.code == code]
    if len(fits) > 1:
        fits = [s for s in fits if all(part in message for part in s.message.split("{}"))]
    return fits[0] if len(fits) == 1 else UNKNOWN


# ---------------------------------------------------------------- running the fixtures


@dataclass(frozen=True)
class Observation:
    """What one fixture (or API case) expects, and what it gave."""

    source: str  # tests/fixtures/sites/E0302_empty_concat.net, or the API case's name
    expect: tuple[str, int | None, int | None]
    got: tuple[str, int | None, int | None] | None  # the first diagnostic: code, line, column
    site: Site | None  # the site that made the first diagnostic
    sites: tuple[Site | None, ...]  # those of every diagnostic reported
    rendered: str

    @property
    def pins(self) -> Site | None:
        """The site this fixture pins: its first diagnostic is what the header says, and
        came from that site with that code."""
        if self.got is None or self.got != self.expect or self.site is None:
            return None
        return self.site if self.site.code == self.got[0] else None


def _position(d: Diagnostic) -> tuple[str, int | None, int | None]:
    return (d.code, d.span.line if d.span else None, d.span.column if d.span else None)


def _observation(source: str, expect, error: NetdslError | None) -> Observation:
    if error is None or not error.diagnostics:
        return Observation(source, expect, None, None, (), "(no error)")
    first = error.diagnostics[0]
    return Observation(source, expect, _position(first), getattr(first, _SITE, None),
                       tuple(getattr(d, _SITE, None) for d in error.diagnostics), error.render())


def fixture_files() -> list[Path]:
    return sorted(errors_doc.FIXTURES.glob("E*.net")) + sorted(SITE_FIXTURES.glob("E*.net"))


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ---------------------------------------------------------------- sites no spec reaches

# Sites that report what no spec text can say: a Python value or an argument given to
# the API, an option of a command, a file that is not a spec. Each case runs the API
# as a user would and states the code and position it must give, as a fixture's
# header does; ``why`` says why no fixture can.

_SPEC = "network n(width = 8, depths = [1]) {\n    input [3, 8, 8]\n    conv2d(width, 1)\n}\n"
_NAMED = "network n() {\n    input rgb: [3, 8, 8]\n    from rgb\n    conv2d(4, 1)\n}\n"


def _lower_without_grant() -> None:
    import netdsl
    from netdsl.backend.lower import lower

    net = netdsl.compile('extern act = "torch.nn.ReLU"\nnetwork n() { input [3, 4, 4]\n act() }',
                         grant=["torch.nn"])
    lower(netdsl.ir.Network.model_validate_json(net.model_dump_json()), device="meta")


def _compile(spec=_SPEC, **kwargs) -> None:
    import netdsl

    netdsl.compile(spec, **kwargs)


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


def _stdin_over_the_limit() -> None:
    import io

    from netdsl.api import Stdin, compile_spec

    compile_spec(Stdin(io.BytesIO(_SPEC.encode())), limits=Limits(max_file_bytes=10))


def _unreadable_file() -> None:
    # A regular file whose reading fails after its stat succeeded. Root reads a file of
    # mode 000, so where /proc exists its own memory file (EIO at offset 0) stands in.
    import os
    import tempfile

    if Path("/proc/self/mem").is_file():
        _compile("/proc/self/mem")
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "n.net"
        path.write_text(_SPEC)
        path.chmod(0)
        try:
            _compile(os.fspath(path))
        finally:
            path.chmod(0o600)


def _directory_as_spec() -> None:
    import tempfile

    with tempfile.TemporaryDirectory(suffix=".net") as d:
        _compile(d)


def _format_over_the_limit() -> None:
    from netdsl.syntax.fmt import format_text

    format_text(_SPEC, limits=Limits(max_file_bytes=10))


def _sweep(where: str) -> None:
    from netdsl.tools.sweep import grid, run

    run(_SPEC, [grid("width=4,8")], where=where)


_DEEP_BODY = "block b() {\n    relu * (" + " + ".join(["1"] + ["0"] * 80) + ")\n}\n" \
             "network n() {\n    input [3, 8, 8]\n    b\n}\n"


def _out_of_stack_without_recursion() -> None:
    # Python's stack, not a limit of netdsl's, ends the check inside one block's statement:
    # called from a deep stack, with room for the block but not for its long sum. The
    # distance to that statement is about 30 frames, the sum about 150.
    _compile(_DEEP_BODY)  # parsed with the whole stack (and the parse kept)
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 100)
    try:
        _compile(_DEEP_BODY)
    finally:
        sys.setrecursionlimit(before)


@dataclass(frozen=True)
class ApiCase:
    name: str
    expect: tuple[str, int | None, int | None]
    run: Callable[[], Any]
    why: str


API_CASES = [
    ApiCase("network named by the caller", ("E0107", None, None), lambda: _compile(network="nett"),
            "`--network NAME` is an option of the command, not part of the spec"),
    ApiCase("shape for an input the network lacks", ("E0132", None, None),
            lambda: _compile(_NAMED, input={"rgb": (3, 8, 8), "dpth": (1, 8, 8)}),
            "`--input NAME=C,H,W` is an option of the command"),
    ApiCase("named shapes for an unnamed input", ("E0132", 2, 5),
            lambda: _compile(input={"rgb": (3, 8, 8)}), "`--input NAME=C,H,W` is an option of the command"),
    ApiCase("a NaN given to compile()", ("E0215", None, None), lambda: _compile(width=float("nan")),
            "`# set:` gives netdsl expressions, which have no NaN; compile() takes Python floats"),
    ApiCase("a Python int over max_int", ("E0215", None, None), lambda: _compile(width=2**70),
            "a spec's own integer is refused where it is written (E0215 sites of the evaluator)"),
    ApiCase("a Python list over max_repeat", ("E0403", None, None), lambda: _compile(depths=[1] * 10_001),
            "a spec's own list is refused where it is built (E0403 sites of the evaluator)"),
    ApiCase("a Python object given to compile()", ("E0206", None, None), lambda: _compile(width=object()),
            "only the API can pass a value that is no netdsl value"),
    ApiCase("Python lists nested past max_nesting", ("E0402", None, None), lambda: _compile(depths=_nested(150)),
            "a spec's own lists are refused where they are built (evaluate.py)"),
    ApiCase("Python lists nested past Python's stack", ("E0402", None, None),
            lambda: _compile(depths=_nested(5_000)), "only the API can pass a Python list"),
    ApiCase("standard input over max_file_bytes", ("E0401", None, None), _stdin_over_the_limit,
            "a fixture is a file; `netdsl check -` reads standard input"),
    ApiCase("spec text over max_file_bytes", ("E0401", None, None),
            lambda: _compile(_SPEC, limits=Limits(max_file_bytes=10)),
            "a fixture is a file, refused by its size before it is read (loader.py)"),
    ApiCase("spec bytes over max_file_bytes", ("E0401", None, None),
            lambda: _compile(_SPEC.encode(), limits=Limits(max_file_bytes=10)),
            "a fixture is a file, refused by its size before it is read (loader.py)"),
    ApiCase("a directory as the spec", ("E0105", None, None), _directory_as_spec,
            "a directory named like a spec among the fixtures would be read as a file by the tests that "
            "parse every fixture (tests/test_lalr.py); an import of one reaches the same site"),
    ApiCase("a device as the spec", ("E0105", None, None), lambda: _compile("/dev/null"),
            "git keeps no device or FIFO among the fixtures"),
    ApiCase("a spec file that cannot be read", ("E0105", None, None), _unreadable_file,
            "git keeps no unreadable file among the fixtures"),
    ApiCase("`netdsl fmt` of a text over max_file_bytes", ("E0401", None, None), _format_over_the_limit,
            "fmt's own check, before it parses"),
    ApiCase("`sweep --where` reads an unknown name", ("E0101", 1, 1), lambda: _sweep("mac < 1"),
            "--where is an option of `netdsl sweep`"),
    ApiCase("`sweep --where` that is not true or false", ("E0210", 1, 1), lambda: _sweep("params"),
            "--where is an option of `netdsl sweep`"),
    ApiCase("Python's stack ends the check without recursion", ("E0402", 2, 5), _out_of_stack_without_recursion,
            "where Python's stack ends depends on the caller's depth; a fixture cannot set it"),
    ApiCase("a checked network with an extern, built without its grant", ("E0121", None, None),
            _lower_without_grant, "lowering's own check of a network checked elsewhere (read from JSON)"),
]

# Sites nothing reaches today, each with the reason: (file, function, code, a part of
# the call that reports, as ast.unparse writes it) → why.
UNREACHABLE = {
    ("netdsl/syntax/parser.py", "_syntax_error", "E0004", "expected {_expected_words(e.expected)}"):
        "UnexpectedEOF: only Lark's Earley parser raises it; netdsl builds an LALR parser, which "
        "reports the end of the text as an UnexpectedToken `$END` (the E0004 site above it; "
        "test_lark_raises_what_the_parser_expects holds Lark to this)",
    ("netdsl/syntax/parser.py", "_syntax_error", "E0001", "'syntax error'"):
        "the fallback for an UnexpectedInput that is neither UnexpectedCharacters, UnexpectedToken "
        "nor UnexpectedEOF: Lark has no other",
    ("netdsl/check/checker.py", "Checker.place", "E0204", "'invalid value for"):
        "every constrained field of a layer's IR node (PosInt, NonNegInt, Prob, PosFloat) is "
        "checked first by its Arg's `min` or `unit`, or by the kind's check() or infer(); the "
        "ValidationError is the guard for a kind whose catalogue entry misses one",
}


def _names(key: tuple[str, str, str, str], site: Site) -> bool:
    file, function, code, part = key
    return (site.file, site.function, site.code) == (file, function, code) and part in site.call


def _unreachable(site: Site) -> str | None:
    for key, why in UNREACHABLE.items():
        if _names(key, site):
            return why
    return None


# ---------------------------------------------------------------- observing


def observe(found: Scan, swap: dict[Site, str] | None = None, paths: list[Path] | None = None,
            cases: list[ApiCase] | None = None) -> list[Observation]:
    """Run every fixture and API case (or those given) with the recorder installed."""
    out = []
    with pytest.MonkeyPatch.context() as mp:
        Recorder(found, swap).install(mp)
        for path in fixture_files() if paths is None else paths:
            fx = errors_doc.read_fixture(path)
            out.append(_observation(_name(path), (fx.code, fx.line, fx.column), errors_doc.compile_fixture(fx)))
        for case in API_CASES if cases is None else cases:
            try:
                case.run()
                error = None
            except NetdslError as e:
                error = e
            out.append(_observation(case.name, case.expect, error))
    return out


def pinned(observations: list[Observation]) -> dict[Site, list[str]]:
    """Each pinned site, and what pins it."""
    by: dict[Site, list[str]] = {}
    for o in observations:
        if o.pins is not None:
            by.setdefault(o.pins, []).append(o.source)
    return by


SCAN = scan()


@pytest.fixture(scope="module")
def observed() -> list[Observation]:
    return observe(SCAN)


# ---------------------------------------------------------------- the scan


def test_the_scan_finds_the_sites_of_every_stage():
    # Guards the scan: were it to find nothing, every test below would pass.
    files = {s.file for s in SCAN.sites}
    assert {"netdsl/syntax/parser.py", "netdsl/syntax/loader.py", "netdsl/check/checker.py",
            "netdsl/check/evaluate.py", "netdsl/layers/norm.py", "netdsl/api.py"} <= files
    assert len(SCAN.sites) > 200
    names = {name for _, name in SCAN.makers}
    assert {"Diagnostic", "LayerError", "err", "fail", "_merge_error"} <= names
    # The empty concat of the mutation that went unseen, beside the other E0302 sites.
    e0302 = {s.message for s in SCAN.sites if s.code == "E0302"}
    assert "`concat` has no branches" in e0302 and len(e0302) >= 3


def test_every_code_literal_is_a_site_or_says_why_not():
    assert not SCAN.stray, "\n".join(SCAN.stray)


def test_every_computed_code_is_listed_with_its_reason():
    assert not SCAN.unlisted, "add these to COMPUTED with the reason:\n" + "\n".join(SCAN.unlisted)
    assert not SCAN.stale, "\n".join(SCAN.stale)
    for call in SCAN.calls:
        if call.how == "computed":
            assert len(call.sites) >= 2, f"{call.file}:{call.start}: the literals it picks from: {call.sites}"


def test_a_new_maker_of_diagnostics_is_found():
    # A helper that passes its own `code` on to Diagnostic is a maker: the literals its
    # callers give are sites; a literal given to a callee that makes nothing is a stray.
    fake = _module("netdsl/check/fake.py", (
        "from ..diagnostics import Diagnostic\n"
        "def warn(code, msg):\n"
        "    return Diagnostic(code, msg)\n"
        "def use():\n"
        "    return warn('E0999', 'new'), print('E0998')\n"))
    found = scan(_modules() + [fake])
    assert found.makers[("netdsl.check.fake", "warn")] == 0
    assert Site("netdsl/check/fake.py", 5, "E0999", "use", "new") in found.sites
    assert [s for s in found.stray if s.startswith("netdsl/check/fake.py:5")] == [
        "netdsl/check/fake.py:5 in use: `print('E0998')` is no call to a maker of diagnostics"]


# ---------------------------------------------------------------- the fixtures


def _site_fixtures() -> list[Path]:
    return sorted(SITE_FIXTURES.glob("E*.net"))


@pytest.mark.parametrize("path", _site_fixtures(), ids=lambda p: p.name)
def test_a_site_fixture_gives_its_code_at_its_position(path, observed):
    fx = errors_doc.read_fixture(path)
    assert path.name.startswith(fx.code + "_"), "a fixture is named after the code it gives"
    o = next(o for o in observed if o.source == _name(path))
    assert o.got == o.expect, o.rendered
    assert o.site not in (None, UNKNOWN), f"no site is known to have made it:\n{o.rendered}"
    assert len(o.sites) == 1, f"a site fixture makes its site report, and nothing else:\n{o.rendered}"
    assert "Traceback" not in o.rendered
    # One comment line says what it exercises.
    comments = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
                if line.startswith("# ") and not re.match(r"# (limit|set|export): ", line)]
    assert comments, "say in a comment line what the fixture exercises"


def test_every_diagnostic_of_every_fixture_comes_from_a_known_site(observed):
    unknown = [o.source for o in observed if UNKNOWN in o.sites or None in o.sites]
    assert not unknown, f"diagnostics made where the scan knows no maker: {unknown}"


@pytest.mark.parametrize("case", API_CASES, ids=lambda c: c.name)
def test_an_api_case_gives_its_code_at_its_position(case, observed):
    o = next(o for o in observed if o.source == case.name)
    assert o.got == o.expect, o.rendered
    assert o.pins is not None, o.rendered


# ---------------------------------------------------------------- every site pinned


@pytest.mark.parametrize("site", SCAN.sites, ids=str)
def test_every_site_has_a_fixture_for_its_code_and_position(site, observed):
    by = pinned(observed)
    why = _unreachable(site)
    if why is not None:
        assert site not in by, f"listed as unreachable, but {by.get(site)} reach it: drop it from UNREACHABLE"
        return
    assert site in by, (f"no fixture pins {site}: add tests/fixtures/sites/{site.code}_....net, a minimal "
                        "spec whose first diagnostic this site makes, with `# expect: CODE at LINE:COL`")


def test_every_unreachable_entry_names_one_site():
    for key in UNREACHABLE:
        matches = [s for s in SCAN.sites if _names(key, s)]
        assert len(matches) == 1, f"{key} names {len(matches)} sites"


def test_lark_raises_what_the_parser_expects():
    # Why two sites of _syntax_error are unreachable: with the LALR parser netdsl builds,
    # Lark raises UnexpectedCharacters and UnexpectedToken; only its Earley parser raises
    # UnexpectedEOF. A Lark that changes this makes those sites reachable.
    import lark
    from lark.exceptions import UnexpectedInput

    raisers = {}
    for path in Path(lark.__file__).parent.rglob("*.py"):
        for name in re.findall(r"raise (Unexpected\w+)\(", path.read_text(encoding="utf-8")):
            raisers.setdefault(name, set()).add(path.name)
    assert raisers.get("UnexpectedEOF") == {"earley.py"}
    kinds = {cls.__name__ for cls in UnexpectedInput.__subclasses__()}
    assert kinds == {"UnexpectedCharacters", "UnexpectedToken", "UnexpectedEOF"}


# ---------------------------------------------------------------- the check catches a swap


def test_a_code_swapped_at_one_site_leaves_it_unpinned(observed):
    # Every pinned site, with the code it makes swapped for another (as a mutation of
    # netdsl would), is no longer pinned: the fixtures name codes, and only the right
    # site's code at the right position counts.
    by = pinned(observed)
    for site in by:
        other = "E0301" if site.code != "E0301" else "E0302"
        swapped = [Observation(o.source, o.expect, (other, *o.got[1:]), o.site, o.sites, o.rendered)
                   if o.site == site and o.got is not None else o for o in observed]
        assert site not in pinned(swapped), site


def test_the_unseen_mutation_of_the_empty_concat_is_caught():
    # The mutation that passed 1,168 tests: the empty concat's E0302 made E0301, run for real.
    site = next(s for s in SCAN.sites if s.message == "`concat` has no branches")
    fixtures = [p for p in fixture_files() if p.name.startswith(("E0302_", "E0301_"))]
    before = pinned(observe(SCAN, paths=fixtures, cases=[]))
    after = observe(SCAN, swap={site: "E0301"}, paths=fixtures, cases=[])
    assert site in before and site not in pinned(after)
    # The other sites of both codes stay pinned: the check names the one that broke.
    assert set(pinned(after)) == set(before) - {site}
