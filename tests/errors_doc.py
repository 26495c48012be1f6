"""The error catalogue's examples: tests/fixtures/errors → netdsl/errors.md.

Each fixture is a failing spec whose first comment lines say what it must give::

    # expect: E0301 at 5:5            (or: # expect: E0107 (no location))
    # limit: max_nesting=4            (optional, any number: a --limit for this check)
    # set: depth=7                    (optional, any number: a --set for this check)
    # export: onnx                    (optional: the error is export's, not check's)
    # allow-module: torch.nn          (optional, any number: a grant for `extern` classes)

netdsl/errors.md holds the prose of every entry, written by hand, and between
``<!-- example: FILE -->`` and ``<!-- end example -->`` the fixture and the real
output of ``netdsl check`` on it. After changing a diagnostic or a fixture, run

    .venv/bin/python tests/errors_doc.py

to refresh those blocks and copy the file to docs/errors.md; ``--check`` only says
whether they are up to date (tests/check/test_diagnostics.py checks the same).
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "errors"
PACKAGE_DOC = ROOT / "netdsl" / "errors.md"
DOCS_DOC = ROOT / "docs" / "errors.md"

_EXPECT = re.compile(r"# expect: (E\d{4}) (?:at (\d+):(\d+)|\(no location\))\s*$")
_OPTION = re.compile(r"# (limit|set): (\w+)=(.+?)\s*$")
_EXPORT = re.compile(r"# export: (onnx)\s*$")
_GRANT = re.compile(r"# allow-module: ([\w.]+)\s*$")
_BLOCK = re.compile(r"(<!-- example: (\S+) -->\n).*?(<!-- end example -->)", re.S)


@dataclass
class Fixture:
    path: Path
    code: str
    line: int | None
    column: int | None
    limits: dict[str, int] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    export: str | None = None  # the format of `netdsl export` that reports it, where check does not
    grant: list[str] = field(default_factory=list)  # --allow-module prefixes

    @property
    def name(self) -> str:
        return self.path.name

    def command(self) -> str:
        """The ``netdsl check`` command line that reproduces the fixture's output."""
        args = [f"--limit {k}={v}" for k, v in self.limits.items()]
        args += [f"--set {k}={v}" for k, v in self.overrides.items()]
        args += [f"--allow-module {p}" for p in self.grant]
        if self.export:
            return " ".join(["netdsl export", self.name, "--format", self.export, "-o",
                             self.path.stem + "." + self.export, *args])
        return " ".join(["netdsl check", self.name, *args])


def read_fixture(path: Path) -> Fixture:
    """The expectations in a fixture's header comment (a ValueError if it has none)."""
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    m = _EXPECT.match(lines[0]) if lines else None
    if m is None:
        raise ValueError(f"{path}: the first line must be `# expect: E0xxx at LINE:COL`")
    fx = Fixture(path, m.group(1), int(m.group(2)) if m.group(2) else None,
                 int(m.group(3)) if m.group(3) else None)
    for line in lines[1:]:
        export = _EXPORT.match(line)
        if export is not None:
            fx.export = export.group(1)
            continue
        grant = _GRANT.match(line)
        if grant is not None:
            fx.grant.append(grant.group(1))
            continue
        opt = _OPTION.match(line)
        if opt is None:
            break
        kind, key, value = opt.groups()
        if kind == "limit":
            fx.limits[key] = int(value)
        else:
            fx.overrides[key] = value
    return fx


def fixtures() -> list[Fixture]:
    """Every failing-spec fixture, in code order (support/ holds files they import)."""
    return [read_fixture(p) for p in sorted(FIXTURES.glob("E*.net"))]


@contextmanager
def in_fixtures(folder: Path = FIXTURES):
    """Run with the fixture folder as the working directory, so that outputs show
    short file names and imports resolve as the CLI would resolve them there
    (``folder``: the per-site fixtures of tests/fixtures/sites run from theirs)."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def compile_fixture(fx: Fixture, source: bytes | None = None):
    """The NetdslError compiling the fixture gives (None if it compiles).

    ``source`` compiles those bytes instead of the file, with the fixture's options.
    """
    import netdsl
    from netdsl.api import compile_spec

    limits = netdsl.Limits().replace(**fx.limits)
    with in_fixtures(fx.path.parent):
        try:
            # As `netdsl check --set ...` (the command the catalogue shows) words it.
            net = compile_spec(fx.name if source is None else source, fx.overrides, limits=limits,
                               origin="cli", grant=fx.grant)
            if fx.export == "onnx":  # what `netdsl export --format onnx` refuses before writing
                from pathlib import Path as _Path

                from netdsl.backend.onnx import problems

                found = problems(net)
                if found:
                    text = _Path(fx.name).read_text(encoding="utf-8") if source is None else source.decode()
                    return netdsl.NetdslError(found, {fx.name: text})
        except netdsl.NetdslError as e:
            return e
    return None


def shown_source(fx: Fixture) -> str:
    """The fixture as the catalogue prints it; a byte that is not UTF-8 shows as ``\\xNN``."""
    return fx.path.read_bytes().decode("utf-8", "backslashreplace")


def example_block(fx: Fixture) -> str:
    error = compile_fixture(fx)
    output = error.render() if error is not None else "(compiles without error: the fixture is wrong)"
    return (f"```netdsl\n{shown_source(fx).rstrip()}\n```\n\n"
            f"```console\n$ {fx.command()}\n{output}\n```\n")


def refresh(text: str) -> str:
    """``text`` with every example block regenerated from its fixture."""
    by_name = {fx.name: fx for fx in fixtures()}

    def sub(m: re.Match) -> str:
        fx = by_name.get(m.group(2))
        if fx is None:
            raise ValueError(f"errors.md names a fixture that does not exist: {m.group(2)}")
        return m.group(1) + example_block(fx) + m.group(3)

    return _BLOCK.sub(sub, text)


def main(argv: list[str]) -> int:
    current = PACKAGE_DOC.read_text(encoding="utf-8")
    fresh = refresh(current)
    if "--check" in argv:
        stale = [p for p, t in ((PACKAGE_DOC, current), (DOCS_DOC, None)) if
                 (t if t is not None else (p.read_text(encoding="utf-8") if p.exists() else "")) != fresh]
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date; run tests/errors_doc.py", file=sys.stderr)
        return 1 if stale else 0
    PACKAGE_DOC.write_text(fresh, encoding="utf-8")
    DOCS_DOC.write_text(fresh, encoding="utf-8")
    print(f"wrote {PACKAGE_DOC.relative_to(ROOT)} and {DOCS_DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
