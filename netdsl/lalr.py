"""How Lark's LALR parser is set up for speed: its tables cached between
processes, and the reductions that only pass a child on made free.

Tables. Building the tables from ``grammar.lark`` takes about a quarter of a second, in
every process; loading them back takes a few milliseconds. Lark caches them
itself (``Lark(cache=path)``): the file starts with a hash of the grammar, the
options and Lark's version, a stale or unreadable file is ignored and rebuilt,
and a file that cannot be written only means the next process builds again. So
the grammar file stays the only source, an edit to it takes effect at once, and
a read-only install works, only slower.

Why not a standalone parser generated at build time: the package is installed
editable while the grammar changes, and a generated module beside the grammar
would be a second source that goes stale silently.

The cache is a pickle, so it is only read from a directory of the user's own:
``$NETDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/netdsl`` or ``~/.cache/netdsl``, else
the package's own ``__pycache__`` (whoever can write there can change the code
anyway). ``NETDSL_CACHE_DIR=""`` turns the cache off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cache_dirs() -> list[Path]:
    """The directories tried for the cache, in order.

    >>> import os; os.environ["NETDSL_CACHE_DIR"] = "/tmp/x"
    >>> str(cache_dirs()[0])
    '/tmp/x'
    >>> os.environ["NETDSL_CACHE_DIR"] = ""; cache_dirs()
    []
    >>> del os.environ["NETDSL_CACHE_DIR"]
    """
    env = os.environ.get("NETDSL_CACHE_DIR")
    if env is not None:
        return [Path(env)] if env else []
    dirs = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        dirs.append(Path(xdg) / "netdsl")
    else:
        home = os.path.expanduser("~")
        if home != "~":
            dirs.append(Path(home) / ".cache" / "netdsl")
    dirs.append(Path(__file__).parent / "__pycache__")
    return dirs


def cache_file(grammar: str, options: dict) -> str | bool:
    """The path of the tables of ``grammar`` built with ``options`` (named by their
    hash, so checkouts with different grammars share a directory without fighting),
    or False where no directory can be written.

    >>> import os; os.environ["NETDSL_CACHE_DIR"] = ""
    >>> cache_file("start: 'a'", {})
    False
    >>> del os.environ["NETDSL_CACHE_DIR"]
    """
    import hashlib  # here, not above: the check cache reads cache_dirs and needs no OpenSSL

    import lark

    key = hashlib.sha256(
        f"{grammar}\0{sorted(options.items())!r}\0{lark.__version__}\0{sys.version_info[:2]}"
        .encode()).hexdigest()[:20]
    for d in cache_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return str(d / f"lark-{key}.pickle")
        path = d / f"lark-{key}.pickle"
        if path.is_file():  # a read-only install whose cache was written when it was built
            return str(path)
    return False


def skip_unit_reductions(lark) -> int:
    """Make each reduction that only hands its one child up return it directly.

    The expression rules are a precedence ladder (``?expr: ifexp``, ``?ifexp:
    or_expr``, ... ``?postfix: atom``), so a plain ``16`` is reduced ten times on
    its way up, and Lark runs each through its tree-building wrappers (child
    filter, single-child expansion, position propagation): that was a third of
    the front end's time. For a ``?rule`` whose expansion is one kept symbol, the
    wrappers return that child unchanged with its positions as they were, so a
    function that returns it is the same parse. Returns how many rules it changed;
    on a Lark without the attribute this relies on, it changes none.

    >>> from netdsl.parser import _lark
    >>> skip_unit_reductions(_lark()) > 10
    True
    """
    callbacks = getattr(lark, "_callbacks", None)
    if not isinstance(callbacks, dict) or lark.options.keep_all_tokens:
        return 0
    changed = 0
    for rule in list(callbacks):
        opts = rule.options
        if not opts.expand1 or rule.alias or len(rule.expansion) != 1 or any(opts.empty_indices or ()):
            continue
        (sym,) = rule.expansion
        if sym.name.startswith("_") or (sym.is_term and sym.filter_out):
            continue  # an inlined rule or a dropped token: the wrappers do change these
        callbacks[rule] = _first
        changed += 1
    return changed


def _first(children):
    return children[0]
